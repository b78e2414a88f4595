// The reciprocal bitsandbytes' kernels scale by. They are built with fast
// math, so `1.0f / absmax` and `__fdividef(127, absmax)` run the GPU's
// approximate reciprocal (rcp.approx.ftz.f32, MUFU.RCP; the division is that
// reciprocal times 127). It is faithful but not always correctly rounded, and
// where x * scale sits on a code's decision threshold the last bit picks the
// code. lowbit reproduces it so that its bytes are bitsandbytes' bytes.
//
// Measured on an H200 over all 2^23 f32 mantissas (x in [1, 2)): the GPU
// returns the correctly rounded 1/x for 87% of them and one ulp above or
// below for the rest; the result depends on the mantissa alone (scaling x by
// 2^e, e in [-60, 60], and negating it are exact), and __fdividef(127, x)
// equals 127 * rcp(x) rounded. The table holds the 1024 mantissas with at
// most 10 significant bits, which covers every f16 and bf16 value and so the
// absmax of every f16/bf16 tensor (the inputs of transformers' 8-bit and
// 4-bit layers in practice). Other f32 mantissas use the correctly rounded
// reciprocal: a code can then differ only where x * scale lies within one ulp
// of a threshold (tests/quant/reciprocal_ties.h counts those).
#pragma once

#include <cstdint>

#include <bit>
#include <cmath>

namespace lowbit::quant {

namespace detail {
// Bit i of word i / 32: the GPU's reciprocal of the mantissa (i << 13) is one
// ulp above (kRcpUlpUp) or below (kRcpUlpDown) the correctly rounded one.
inline constexpr uint32_t kRcpUlpUp[32] = {
    0x00160800, 0x00010000, 0x08000000, 0x00020306, 0x02180400, 0x00000000, 0x00021800, 0x10000006,
    0x00000010, 0x00030500, 0x04000000, 0x00080000, 0x03081804, 0x00800202, 0x00080462, 0x0a040102,
    0x80090380, 0x00180008, 0x00000000, 0x00080000, 0x08000d80, 0x30008018, 0x01100000, 0x00000000,
    0x002e0000, 0x008020a0, 0x00000000, 0x20005500, 0x09000000, 0x00010001, 0x18000100, 0x00000020};
inline constexpr uint32_t kRcpUlpDown[32] = {
    0x00004040, 0x40004001, 0x01c02040, 0xc0000000, 0x00000080, 0x00090001, 0x28400000, 0x00000000,
    0x80040000, 0x00000000, 0x20000020, 0x00000000, 0x80020000, 0x28000000, 0x06000000, 0x00000000,
    0x00000000, 0x00004000, 0x00000000, 0x00000040, 0x00000000, 0x00000000, 0x00000000, 0x00008000,
    0x00008000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x34400000, 0x00000020, 0x01040000};
}  // namespace detail

#ifdef __CUDACC__
#define LOWBIT_RECIPROCAL_QUALIFIERS __host__ __device__ __forceinline__
#else
#define LOWBIT_RECIPROCAL_QUALIFIERS inline
#endif

// rcp.approx.ftz.f32: on the CPU, subnormal inputs and results flush to zero.
LOWBIT_RECIPROCAL_QUALIFIERS float gpu_reciprocal(float x) {
#ifdef __CUDA_ARCH__
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
#else
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t exponent = bits >> 23 & 0xff;
  if (exponent == 0) return std::copysign(HUGE_VALF, x);  // 0 and subnormals: +-Inf
  if (exponent == 0xff) return 1.0f / x;                   // Inf -> 0, NaN -> NaN
  const float r = 1.0f / x;
  uint32_t r_bits = std::bit_cast<uint32_t>(r);
  if ((r_bits >> 23 & 0xff) == 0) return std::copysign(0.0f, x);  // subnormal result
  const uint32_t mantissa = bits & 0x7fffff;
  if ((mantissa & 0x1fff) == 0) {
    const uint32_t i = mantissa >> 13, word = i / 32, bit = 1u << (i % 32);
    // Sign and magnitude are separate fields: one ulp of the magnitude is +-1.
    if (detail::kRcpUlpUp[word] & bit) ++r_bits;
    if (detail::kRcpUlpDown[word] & bit) --r_bits;
  }
  return std::bit_cast<float>(r_bits);
#endif
}
#undef LOWBIT_RECIPROCAL_QUALIFIERS

}  // namespace lowbit::quant
