// Exact conversions between f32 vectors and lowbit's storage types, shared
// by the vectorized quantization kernels. Highway's own f32 -> bf16 demotion
// truncates, and its f16 emulation (targets without F16C) is not exact, so
// both directions are written here with round-to-nearest-even and the same
// NaN handling as core/half.h.
//
// Per-target header: included from files that use foreach_target.
#if defined(LOWBIT_QUANT_CPU_CONVERT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LOWBIT_QUANT_CPU_CONVERT_INL_H_
#undef LOWBIT_QUANT_CPU_CONVERT_INL_H_
#else
#define LOWBIT_QUANT_CPU_CONVERT_INL_H_
#endif

#include <hwy/highway.h>

#include <type_traits>

#include "lowbit/core/half.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::quant::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// f32 -> bf16 bits (in u32 lanes), nearest-even; NaN becomes a quiet NaN.
template <class DF, class V>
HWY_INLINE hn::Vec<hn::RebindToUnsigned<DF>> bf16_bits(DF df, V v) {
  const hn::RebindToUnsigned<DF> du;
  const auto u = hn::BitCast(du, v);
  const auto bias = hn::Add(hn::Set(du, 0x7fffu), hn::And(hn::ShiftRight<16>(u), hn::Set(du, 1u)));
  const auto rounded = hn::ShiftRight<16>(hn::Add(u, bias));
  const auto quiet = hn::Or(hn::ShiftRight<16>(u), hn::Set(du, 0x40u));
  return hn::IfThenElse(hn::RebindMask(du, hn::Ne(v, v)), quiet, rounded);
}

// f32 -> f16 bits (in u32 lanes), nearest-even: F16C where the target has
// it, else the scalar definition lane by lane.
template <class DF, class V>
HWY_INLINE hn::Vec<hn::RebindToUnsigned<DF>> f16_bits(DF df, V v) {
  const hn::RebindToUnsigned<DF> du;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  const hn::Rebind<hwy::float16_t, DF> dh;
  const hn::Rebind<uint16_t, DF> d16;
  return hn::PromoteTo(du, hn::BitCast(d16, hn::DemoteTo(dh, v)));
#else
  HWY_ALIGN float in[64];
  HWY_ALIGN uint32_t out[64];
  hn::Store(v, df, in);
  for (size_t i = 0; i < hn::Lanes(df); ++i) out[i] = f32_to_f16(in[i]).bits;
  return hn::Load(du, out);
#endif
}

// Loads Lanes(df) values of T as f32.
template <class DF, typename T>
HWY_INLINE hn::Vec<DF> load_f32(DF df, const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(df, p);
  } else if constexpr (std::is_same_v<T, bf16>) {
    const hn::RebindToUnsigned<DF> du;
    const hn::Rebind<uint16_t, DF> d16;
    return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, reinterpret_cast<const uint16_t*>(p)))));
  } else {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
    const hn::Rebind<hwy::float16_t, DF> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
#else
    // Normal, subnormal (mantissa * 2^-24) and Inf/NaN, exactly.
    const hn::RebindToUnsigned<DF> du;
    const hn::RebindToSigned<DF> di;
    const hn::Rebind<uint16_t, DF> d16;
    const auto h = hn::PromoteTo(du, hn::LoadU(d16, reinterpret_cast<const uint16_t*>(p)));
    const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(du, 0x8000u)));
    const auto exp = hn::And(h, hn::Set(du, 0x7c00u));
    const auto mant = hn::And(h, hn::Set(du, 0x3ffu));
    const auto normal = hn::Add(hn::ShiftLeft<13>(hn::And(h, hn::Set(du, 0x7fffu))), hn::Set(du, 0x38000000u));
    const auto inf_nan = hn::Or(hn::Set(du, 0x7f800000u), hn::ShiftLeft<13>(mant));
    const auto subnormal = hn::BitCast(du, hn::Mul(hn::ConvertTo(df, hn::BitCast(di, mant)), hn::Set(df, 0x1p-24f)));
    const auto mag = hn::IfThenElse(hn::Eq(exp, hn::Zero(du)), subnormal,
                                    hn::IfThenElse(hn::Eq(exp, hn::Set(du, 0x7c00u)), inf_nan, normal));
    return hn::BitCast(df, hn::Or(sign, mag));
#endif
  }
}

// The storage bits of T for each lane (u32 lanes; f32 is its own bits).
template <typename T, class DF, class V>
HWY_INLINE hn::Vec<hn::RebindToUnsigned<DF>> storage_bits(DF df, V v) {
  if constexpr (std::is_same_v<T, float>) return hn::BitCast(hn::RebindToUnsigned<DF>(), v);
  else if constexpr (std::is_same_v<T, bf16>) return bf16_bits(df, v);
  else return f16_bits(df, v);
}

// Stores Lanes(df) f32 values as T.
template <typename T, class DF, class V>
HWY_INLINE void store_as(DF df, V v, T* p) {
  if constexpr (std::is_same_v<T, float>) {
    hn::StoreU(v, df, p);
  } else {
    const hn::Rebind<uint16_t, DF> d16;
    hn::StoreU(hn::DemoteTo(d16, hn::BitCast(hn::RebindToSigned<DF>(), storage_bits<T>(df, v))), d16,
               reinterpret_cast<uint16_t*>(p));
  }
}

}  // namespace lowbit::quant::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
