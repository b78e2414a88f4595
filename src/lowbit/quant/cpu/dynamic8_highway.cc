// Vectorized dynamic 8-bit kernels (Highway, per-target, dispatched at run
// time). Bit-identical to dynamic8_ref.cc.
//
// Quantize: bitsandbytes' dQuantize is a binary search that ends on an even
// pivot and then picks the nearer neighbour by midpoint; that is "count the
// midpoints below x", where a value exactly on a midpoint counts it when the
// midpoint's left index is odd (the tie goes to the even code). With
// thresholds thr[k] = mid_k (k even) or the float just below mid_k (k odd),
// code = #{k : x > thr[k]}. A 65536-entry table indexed by the top 16 bits of
// x gives the count at the start of x's bucket and the low bits of the one
// threshold inside it (the dynamic map is coarse enough that there is at most
// one; checked when the table is built), so one gather and an integer compare
// of x's low bits finish it.
//
// Dequantize: for blocks of 256 or more, the 256 outputs code[q] * absmax
// are computed and rounded once per block, then looked up per byte.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/cpu/dynamic8_highway.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cfloat>

#include "lowbit/core/half.h"
#include "quant/cpu/convert-inl.h"
#include "quant/cpu/dynamic8_highway.h"
#include "quant/cpu/reference.h"
#include "quant/reciprocal.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::quant::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR
template <typename T>
void quantize_run(const T* x, int64_t n, const DynamicSearch& search, int blocksize, uint8_t* codes, float* absmax) {
  ref::quantize_dynamic8(x, n, search.code, blocksize, codes, absmax);
}
template <typename T>
void dequantize_run(const uint8_t* codes, const float* absmax, const float* code, int64_t n, int blocksize, T* out) {
  ref::dequantize_dynamic8(codes, absmax, code, n, blocksize, out);
}
#else

template <typename T>
float quantize_block(const T* x, int blocksize, const DynamicSearch& search, uint8_t* codes) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const int N = int(hn::Lanes(df));
  auto acc = hn::Set(df, -FLT_MAX);
  for (int i = 0; i < blocksize; i += N) {
    const auto a = hn::Abs(load_f32(df, x + i));
    acc = hn::IfThenElse(hn::Gt(a, acc), a, acc);
  }
  const float absmax = hn::GetLane(hn::MaxOfLanes(df, acc));
  const auto scale = hn::Set(df, gpu_reciprocal(absmax));
  for (int i = 0; i < blocksize; i += N) {
    const auto v = hn::Mul(load_f32(df, x + i), scale);
    const auto bits = hn::BitCast(du, v);
    const auto entry = hn::GatherIndex(di, search.bucket.data(), hn::BitCast(di, hn::ShiftRight<16>(bits)));
    // Low 16 bits of x, flipped for negative x so that larger means larger.
    const auto flip = hn::ShiftRight<16>(hn::BitCast(du, hn::ShiftRight<31>(hn::BitCast(di, bits))));
    const auto low = hn::BitCast(di, hn::Xor(hn::And(bits, hn::Set(du, 0xffffu)), flip));
    const auto passed = hn::Gt(low, hn::And(entry, hn::Set(di, 0xffff)));
    auto code = hn::Sub(hn::ShiftRight<16>(entry), hn::VecFromMask(di, passed));
    code = hn::IfThenZeroElse(hn::RebindMask(di, hn::Ne(v, v)), code);
    hn::StoreU(hn::DemoteTo(d8, code), d8, codes + i);
  }
  return absmax;
}

template <typename T>
void quantize_run(const T* x, int64_t n, const DynamicSearch& search, int blocksize, uint8_t* codes, float* absmax) {
  const hn::ScalableTag<float> df;
  const int64_t full = search.usable && blocksize % int64_t(hn::Lanes(df)) == 0 ? n / blocksize : 0;
  for (int64_t b = 0; b < full; ++b) absmax[b] = quantize_block(x + b * blocksize, blocksize, search, codes + b * blocksize);
  if (full * blocksize < n)
    ref::quantize_dynamic8(x + full * blocksize, n - full * blocksize, search.code, blocksize, codes + full * blocksize,
                           absmax + full);
}

template <typename T>
void dequantize_run(const uint8_t* codes, const float* absmax, const float* code, int64_t n, int blocksize, T* out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const int64_t N = int64_t(hn::Lanes(df));
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint16_t>;
  HWY_ALIGN Bits table[256];
  for (int64_t lo = 0; lo < n; lo += blocksize) {
    const int64_t hi = std::min<int64_t>(n, lo + blocksize);
    const float a = absmax[lo / blocksize];
    if (hi - lo >= 256) {
      // Round the 256 possible outputs once, then look each byte up (a
      // scalar loop beats gathers here).
      for (int j = 0; j < 256; j += int(N)) store_as(df, hn::Mul(hn::LoadU(df, code + j), hn::Set(df, a)), reinterpret_cast<T*>(table + j));
      Bits* o = reinterpret_cast<Bits*>(out);
      for (int64_t i = lo; i < hi; ++i) o[i] = table[codes[i]];
    } else {
      int64_t i = lo;
      for (; i + N <= hi; i += N) {
        const auto q = hn::PromoteTo(di, hn::LoadU(d8, codes + i));
        store_as(df, hn::Mul(hn::GatherIndex(df, code, q), hn::Set(df, a)), out + i);
      }
      for (; i < hi; ++i) out[i] = from_f32<T>(code[codes[i]] * a);
    }
  }
}

#endif  // HWY_TARGET == HWY_SCALAR

void quantize_run_f32(const float* x, int64_t n, const DynamicSearch& s, int bs, uint8_t* codes, float* absmax) {
  quantize_run(x, n, s, bs, codes, absmax);
}
void quantize_run_f16(const f16* x, int64_t n, const DynamicSearch& s, int bs, uint8_t* codes, float* absmax) {
  quantize_run(x, n, s, bs, codes, absmax);
}
void quantize_run_bf16(const bf16* x, int64_t n, const DynamicSearch& s, int bs, uint8_t* codes, float* absmax) {
  quantize_run(x, n, s, bs, codes, absmax);
}
void dequantize_run_f32(const uint8_t* c, const float* a, const float* code, int64_t n, int bs, float* out) {
  dequantize_run(c, a, code, n, bs, out);
}
void dequantize_run_f16(const uint8_t* c, const float* a, const float* code, int64_t n, int bs, f16* out) {
  dequantize_run(c, a, code, n, bs, out);
}
void dequantize_run_bf16(const uint8_t* c, const float* a, const float* code, int64_t n, int bs, bf16* out) {
  dequantize_run(c, a, code, n, bs, out);
}

}  // namespace lowbit::quant::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::quant::cpu {

HWY_EXPORT(quantize_run_f32);
HWY_EXPORT(quantize_run_f16);
HWY_EXPORT(quantize_run_bf16);
HWY_EXPORT(dequantize_run_f32);
HWY_EXPORT(dequantize_run_f16);
HWY_EXPORT(dequantize_run_bf16);

void quantize_dynamic8_run(const float* x, int64_t n, const DynamicSearch& s, int bs, uint8_t* codes, float* absmax) {
  HWY_DYNAMIC_DISPATCH(quantize_run_f32)(x, n, s, bs, codes, absmax);
}
void quantize_dynamic8_run(const f16* x, int64_t n, const DynamicSearch& s, int bs, uint8_t* codes, float* absmax) {
  HWY_DYNAMIC_DISPATCH(quantize_run_f16)(x, n, s, bs, codes, absmax);
}
void quantize_dynamic8_run(const bf16* x, int64_t n, const DynamicSearch& s, int bs, uint8_t* codes, float* absmax) {
  HWY_DYNAMIC_DISPATCH(quantize_run_bf16)(x, n, s, bs, codes, absmax);
}
void dequantize_dynamic8_run(const uint8_t* c, const float* a, const float* code, int64_t n, int bs, float* out) {
  HWY_DYNAMIC_DISPATCH(dequantize_run_f32)(c, a, code, n, bs, out);
}
void dequantize_dynamic8_run(const uint8_t* c, const float* a, const float* code, int64_t n, int bs, f16* out) {
  HWY_DYNAMIC_DISPATCH(dequantize_run_f16)(c, a, code, n, bs, out);
}
void dequantize_dynamic8_run(const uint8_t* c, const float* a, const float* code, int64_t n, int bs, bf16* out) {
  HWY_DYNAMIC_DISPATCH(dequantize_run_bf16)(c, a, code, n, bs, out);
}

}  // namespace lowbit::quant::cpu
#endif  // HWY_ONCE
