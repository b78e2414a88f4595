// LLM.int8 linear on the CPU, step for step what bitsandbytes' MatMul8bitLt
// computes on a GPU (f16 compute):
//  1. x is cast to f16 and quantized row-wise: codes = rint(x * 127 / absmax),
//     absmax over the row's |x| < threshold; columns holding any |x| >=
//     threshold (the outliers) get code 0 in every row.
//  2. int8 x int8 products accumulate in int32; each output is
//     f16(fma(acc * row_stat * SCB, 1/127^2, bias)).
//  3. With outliers, the f16 outlier columns of x times the dequantized f16
//     weight columns (code * SCB / 127) are added to that in f32 and rounded
//     to f16 once more (torch's addmm).
#include <cmath>

#include "lowbit/core/thread_pool.h"
#include "lowbit/quant/kernels.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/int8_dot.h"
#include "ops/dispatch.h"

namespace lowbit::ops::cpu {
namespace {

// bitsandbytes' MM_DEQUANT_CONST, the f32 constant it uses for 1 / (127 * 127).
constexpr float kDequantScale = 6.200012e-05f;
// bitsandbytes' int8_vectorwise_dequant factor (1 / 127 as written there).
constexpr float kInv127 = 7.874015718698502e-3f;

struct QuantizedRows {
  std::vector<int8_t> codes;       // [tokens, k]
  std::vector<float> row_stats;    // [tokens]
  std::vector<int64_t> outliers;   // column indices, ascending
};

// Row-wise int8 codes of the f16 input (quant's bit-exact kernel), then the
// outlier columns zeroed in every row.
QuantizedRows quantize_rows(const std::vector<f16>& xh, int64_t tokens, int64_t k, float threshold) {
  QuantizedRows q;
  q.codes.resize(size_t(tokens * k));
  q.row_stats.resize(size_t(tokens));
  quant::cpu::int8_vectorwise_quant<f16>(xh.data(), tokens, k, threshold, q.codes.data(), q.row_stats.data());
  if (threshold > 0.0f) {
    std::vector<char> is_outlier(static_cast<size_t>(k), 0);
    for (int64_t i = 0; i < tokens * k; ++i)
      if (std::fabs(f16_to_f32(xh[size_t(i)])) >= threshold) is_outlier[size_t(i % k)] = 1;
    for (int64_t i = 0; i < k; ++i)
      if (is_outlier[size_t(i)]) q.outliers.push_back(i);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t c : q.outliers) q.codes[size_t(t * k + c)] = 0;
  }
  return q;
}

}  // namespace

void linear_int8(const Tensor& x, const Tensor& codes, const Tensor& scb, const Tensor& bias, float threshold,
                 Tensor& out) {
  const int64_t tokens = x.dim(0), k = x.dim(1), n = codes.dim(0);
  // Step 1: f16 input and its row-wise int8 codes.
  std::vector<f16> xh16(static_cast<size_t>(tokens * k));
  std::vector<float> xh(xh16.size());
  detail::dispatch_float("linear_int8", x.dtype(), [&]<typename T>(T) {
    const T* p = x.data<T>();
    for (size_t i = 0; i < xh.size(); ++i) {
      xh16[i] = from_f32<f16>(to_f32(p[i]));
      xh[i] = f16_to_f32(xh16[i]);
    }
  });
  const QuantizedRows q = quantize_rows(xh16, tokens, k, threshold);

  std::vector<float> b(size_t(n), 0.0f);
  if (bias.defined())
    detail::dispatch_float("linear_int8", bias.dtype(), [&]<typename T>(T) {
      for (int64_t j = 0; j < n; ++j) b[size_t(j)] = detail::round_to<f16>(to_f32(bias.data<T>()[j]));
    });
  const int8_t* w = codes.data<int8_t>();
  const float* s = scb.data<float>();

  // Outlier weight columns, dequantized to f16: [n, outliers].
  const size_t n_out = q.outliers.size();
  std::vector<float> sub_w(size_t(n) * n_out);
  for (int64_t j = 0; j < n; ++j)
    for (size_t c = 0; c < n_out; ++c)
      sub_w[size_t(j) * n_out + c] = detail::round_to<f16>(float(w[j * k + q.outliers[c]]) * s[j] * kInv127);

  std::vector<float> result(static_cast<size_t>(tokens * n));
  // Steps 2 and 3, one output row block per work item.
  parallel_for(0, size_t(n), 32, [&](size_t lo, size_t hi) {
    for (int64_t t = 0; t < tokens; ++t) {
      const int8_t* a = q.codes.data() + t * k;
      const float* xrow = xh.data() + t * k;
      for (size_t j = lo; j < hi; ++j) {
        const int32_t acc = dot_i8(a, w + j * size_t(k), k);
        float v = detail::round_to<f16>(std::fma(float(acc) * q.row_stats[size_t(t)] * s[j], kDequantScale, b[j]));
        if (n_out) {
          float extra = 0.0f;
          for (size_t c = 0; c < n_out; ++c) extra += xrow[q.outliers[c]] * sub_w[j * n_out + c];
          v = detail::round_to<f16>(v + extra);
        }
        result[size_t(t * n) + j] = v;
      }
    }
  });
  detail::dispatch_float("linear_int8", out.dtype(), [&]<typename T>(T) {
    T* o = out.data<T>();
    for (size_t i = 0; i < result.size(); ++i) o[i] = from_f32<T>(result[i]);
  });
}

}  // namespace lowbit::ops::cpu
