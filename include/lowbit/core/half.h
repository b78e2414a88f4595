// IEEE half (f16) and bfloat16 storage types with exact conversions.
//
// Conversions round to nearest-even and keep NaN/Inf, as PyTorch and CUDA do, so
// values cast here are bit-identical to the reference data. These are the
// scalar definitions; vector kernels must agree with them bit for bit.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "lowbit/core/dtype.h"

namespace lowbit {

struct bf16 {
  uint16_t bits = 0;
  constexpr bf16() = default;
  static constexpr bf16 from_bits(uint16_t b) { bf16 h; h.bits = b; return h; }
};

struct f16 {
  uint16_t bits = 0;
  constexpr f16() = default;
  static constexpr f16 from_bits(uint16_t b) { f16 h; h.bits = b; return h; }
};

template <> struct dtype_of<bf16> { static constexpr DType value = DType::BF16; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::F16; };

inline float bf16_to_f32(bf16 h) { return std::bit_cast<float>(uint32_t(h.bits) << 16); }

inline bf16 f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16::from_bits(uint16_t((u >> 16) | 0x40));  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16::from_bits(uint16_t(u >> 16));
}

inline float f16_to_f32(f16 h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1fu;
  const uint32_t mant = h.bits & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: value = mant * 2^-24, exact in f32.
    const float mag = float(mant) * 0x1p-24f;
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(mag));
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

inline f16 f32_to_f16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return f16::from_bits(uint16_t(sign | 0x7e00u | ((abs >> 13) & 0x3ffu)));
  if (abs >= 0x477ff000u) return f16::from_bits(uint16_t(sign | 0x7c00u));  // rounds to Inf
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: round abs * 2^24 to an integer, nearest-even.
    const float mag = std::bit_cast<float>(abs);
    const float scaled = mag * 0x1p24f;  // exact: only the exponent changes
    const uint32_t whole = uint32_t(scaled);
    const float frac = scaled - float(whole);
    uint32_t r = whole;
    if (frac > 0.5f || (frac == 0.5f && (whole & 1u))) ++r;
    return f16::from_bits(uint16_t(sign | r));
  }
  uint32_t v = abs - (112u << 23);
  v += 0xfffu + ((v >> 13) & 1u);
  return f16::from_bits(uint16_t(sign | (v >> 13)));
}

// Generic load/store between storage types and f32 for templated kernels.
template <typename T> inline float to_f32(T v) { return float(v); }
template <> inline float to_f32<bf16>(bf16 v) { return bf16_to_f32(v); }
template <> inline float to_f32<f16>(f16 v) { return f16_to_f32(v); }

template <typename T> inline T from_f32(float v) { return T(v); }
template <> inline bf16 from_f32<bf16>(float v) { return f32_to_bf16(v); }
template <> inline f16 from_f32<f16>(float v) { return f32_to_f16(v); }

}  // namespace lowbit
