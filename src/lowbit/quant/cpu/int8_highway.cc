// Vectorized LLM.int8 row kernels (Highway, per-target, dispatched at run
// time). Bit-identical to int8_ref.cc: the row absmax is a max (any order),
// codes are nearest-even roundings of a * (127 * (1/absmax)), NaN codes 0.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/cpu/int8_highway.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cmath>

#include "lowbit/core/half.h"
#include "quant/cpu/convert-inl.h"
#include "quant/cpu/int8_highway.h"
#include "quant/cpu/reference.h"
#include "quant/cpu/scalar.h"
#include "quant/reciprocal.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::quant::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR
template <typename T>
void quant_rows(const T* a, int64_t rows, int64_t cols, float threshold, int8_t* codes, float* row_stats) {
  ref::int8_vectorwise_quant(a, rows, cols, threshold, codes, row_stats);
}
template <typename T>
void dequant_rows(const int8_t* codes, const float* row_stats, int64_t rows, int64_t cols, T* out) {
  ref::int8_vectorwise_dequant(codes, row_stats, rows, cols, out);
}
#else

template <typename T>
void quant_rows(const T* a, int64_t rows, int64_t cols, float threshold, int8_t* codes, float* row_stats) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const int64_t N = int64_t(hn::Lanes(df));
  const bool sparse = threshold > 0.0f;
  const auto thr = hn::Set(df, threshold);
  // With a threshold, |a| >= threshold is left out of the absmax and codes 0.
  const auto inlier = [&](auto abs_v) { return sparse ? hn::Lt(abs_v, thr) : hn::Eq(abs_v, abs_v); };
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = a + r * cols;
    int8_t* out = codes + r * cols;
    // Lanes that are NaN or (with a threshold) outliers never win the `>`.
    auto acc = hn::Zero(df);
    int64_t c = 0;
    for (; c + N <= cols; c += N) {
      const auto v = hn::Abs(load_f32(df, row + c));
      acc = hn::IfThenElse(sparse ? hn::And(hn::Gt(v, acc), hn::Lt(v, thr)) : hn::Gt(v, acc), v, acc);
    }
    float m = hn::GetLane(hn::MaxOfLanes(df, acc));
    for (; c < cols; ++c) {
      const float v = std::fabs(to_f32(row[c]));
      if (v > m && (!sparse || v < threshold)) m = v;
    }
    row_stats[r] = m;
    const float scale_s = 127.0f * gpu_reciprocal(m);
    const auto scale = hn::Set(df, scale_s);
    for (c = 0; c + N <= cols; c += N) {
      const auto v = load_f32(df, row + c);
      const auto q = hn::Round(hn::Mul(v, scale));
      // NaN (and, with a threshold, |a| >= threshold) codes 0.
      const auto keep = hn::And(hn::Eq(q, q), inlier(hn::Abs(v)));
      const auto code = hn::ConvertTo(di, hn::IfThenElseZero(keep, q));
      hn::StoreU(hn::DemoteTo(d8, code), d8, out + c);
    }
    for (; c < cols; ++c) {
      const float v = to_f32(row[c]);
      out[c] = (!sparse || std::fabs(v) < threshold) ? scalar::float_to_int8_rn(v * scale_s) : int8_t(0);
    }
  }
}

template <typename T>
void dequant_rows(const int8_t* codes, const float* row_stats, int64_t rows, int64_t cols, T* out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const int64_t N = int64_t(hn::Lanes(df));
  constexpr float kInv127 = 7.874015718698502e-3f;
  for (int64_t r = 0; r < rows; ++r) {
    const auto stat = hn::Set(df, row_stats[r]);
    int64_t c = 0;
    for (; c + N <= cols; c += N) {
      const auto v = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, codes + r * cols + c)));
      store_as(df, hn::Mul(hn::Mul(v, stat), hn::Set(df, kInv127)), out + r * cols + c);
    }
    for (; c < cols; ++c) out[r * cols + c] = from_f32<T>(float(codes[r * cols + c]) * row_stats[r] * kInv127);
  }
}

#endif  // HWY_TARGET == HWY_SCALAR

void quant_rows_f32(const float* a, int64_t rows, int64_t cols, float thr, int8_t* codes, float* stats) {
  quant_rows(a, rows, cols, thr, codes, stats);
}
void quant_rows_f16(const f16* a, int64_t rows, int64_t cols, float thr, int8_t* codes, float* stats) {
  quant_rows(a, rows, cols, thr, codes, stats);
}
void quant_rows_bf16(const bf16* a, int64_t rows, int64_t cols, float thr, int8_t* codes, float* stats) {
  quant_rows(a, rows, cols, thr, codes, stats);
}
void dequant_rows_f32(const int8_t* codes, const float* stats, int64_t rows, int64_t cols, float* out) {
  dequant_rows(codes, stats, rows, cols, out);
}
void dequant_rows_f16(const int8_t* codes, const float* stats, int64_t rows, int64_t cols, f16* out) {
  dequant_rows(codes, stats, rows, cols, out);
}
void dequant_rows_bf16(const int8_t* codes, const float* stats, int64_t rows, int64_t cols, bf16* out) {
  dequant_rows(codes, stats, rows, cols, out);
}

}  // namespace lowbit::quant::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::quant::cpu {

HWY_EXPORT(quant_rows_f32);
HWY_EXPORT(quant_rows_f16);
HWY_EXPORT(quant_rows_bf16);
HWY_EXPORT(dequant_rows_f32);
HWY_EXPORT(dequant_rows_f16);
HWY_EXPORT(dequant_rows_bf16);

void int8_quant_rows(const float* a, int64_t rows, int64_t cols, float thr, int8_t* codes, float* stats) {
  HWY_DYNAMIC_DISPATCH(quant_rows_f32)(a, rows, cols, thr, codes, stats);
}
void int8_quant_rows(const f16* a, int64_t rows, int64_t cols, float thr, int8_t* codes, float* stats) {
  HWY_DYNAMIC_DISPATCH(quant_rows_f16)(a, rows, cols, thr, codes, stats);
}
void int8_quant_rows(const bf16* a, int64_t rows, int64_t cols, float thr, int8_t* codes, float* stats) {
  HWY_DYNAMIC_DISPATCH(quant_rows_bf16)(a, rows, cols, thr, codes, stats);
}
void int8_dequant_rows(const int8_t* codes, const float* stats, int64_t rows, int64_t cols, float* out) {
  HWY_DYNAMIC_DISPATCH(dequant_rows_f32)(codes, stats, rows, cols, out);
}
void int8_dequant_rows(const int8_t* codes, const float* stats, int64_t rows, int64_t cols, f16* out) {
  HWY_DYNAMIC_DISPATCH(dequant_rows_f16)(codes, stats, rows, cols, out);
}
void int8_dequant_rows(const int8_t* codes, const float* stats, int64_t rows, int64_t cols, bf16* out) {
  HWY_DYNAMIC_DISPATCH(dequant_rows_bf16)(codes, stats, rows, cols, out);
}

}  // namespace lowbit::quant::cpu
#endif  // HWY_ONCE
