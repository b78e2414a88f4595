// LLM.int8 linear on the CPU, step for step what bitsandbytes' MatMul8bitLt
// computes on a GPU (f16 compute):
//  1. x is cast to f16 and quantized row-wise: codes = rint(x * 127 / absmax),
//     absmax over the row's |x| < threshold; columns holding any |x| >=
//     threshold (the outliers) get code 0 in every row.
//  2. int8 x int8 products accumulate exactly (int32); each output is
//     f16(fma(acc * row_stat * SCB, 1/127^2, bias)).
//  3. With outliers, the f16 outlier columns of x times the dequantized f16
//     weight columns (code * SCB / 127) are added to that in f32 and rounded
//     to f16 once more (torch's addmm).
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "lowbit/core/thread_pool.h"
#include "lowbit/quant/kernels.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/cpu/gemv_kernels.h"
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
// outlier columns zeroed in every row. xh holds the f16 values widened to f32:
// bitsandbytes computes in f32 after loading the halves, so the codes agree.
QuantizedRows quantize_rows(std::span<const float> xh, int64_t tokens, int64_t k, float threshold) {
  QuantizedRows q;
  q.codes.resize(size_t(tokens * k));
  q.row_stats.resize(size_t(tokens));
  quant::cpu::int8_vectorwise_quant<float>(xh.data(), tokens, k, threshold, q.codes.data(), q.row_stats.data());
  if (threshold > 0.0f) {
    std::vector<char> is_outlier(static_cast<size_t>(k), 0);
    for (int64_t i = 0; i < tokens * k; ++i)
      if (std::fabs(xh[size_t(i)]) >= threshold) is_outlier[size_t(i % k)] = 1;
    for (int64_t i = 0; i < k; ++i)
      if (is_outlier[size_t(i)]) q.outliers.push_back(i);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t c : q.outliers) q.codes[size_t(t * k + c)] = 0;
  }
  return q;
}

// A buffer of n values kept for this thread and slot across calls: a prompt
// runs the op layer after layer with the same sizes, and fresh multi-megabyte
// vectors each cost a page fault per 4 KB plus a memset (a third of the int8
// perplexity run's time). Contents are left as they were.
template <typename T, int kSlot>
std::span<T> reused_buffer(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return {buffer.data(), n};
}

}  // namespace

void linear_int8(const Tensor& x, const Tensor& codes, const Tensor& scb, const Tensor& bias, float threshold,
                 Tensor& out) {
  const int64_t tokens = x.dim(0), k = x.dim(1), n = codes.dim(0);
  // Step 1: f16 input and its row-wise int8 codes.
  const std::span<float> xh = reused_buffer<float, 0>(size_t(tokens * k));
  detail::dispatch_float("linear_int8", x.dtype(), [&]<typename T>(T) {
    const T* p = x.data<T>();
    parallel_for(0, xh.size(), 1 << 14, [&](size_t lo, size_t hi) {
      for (size_t i = lo; i < hi; ++i) xh[i] = detail::round_to<f16>(detail::load(p[i]));
    });
  });
  const QuantizedRows q = quantize_rows(xh, tokens, k, threshold);

  std::vector<float> b(size_t(n), 0.0f);
  if (bias.defined())
    detail::dispatch_float("linear_int8", bias.dtype(), [&]<typename T>(T) {
      for (int64_t j = 0; j < n; ++j) b[size_t(j)] = detail::round_to<f16>(detail::load(bias.data<T>()[j]));
    });
  const int8_t* w = codes.data<int8_t>();
  const float* s = scb.data<float>();

  // Outlier weight columns, dequantized to f16: [n, outliers].
  const size_t n_out = q.outliers.size();
  const std::span<float> sub_w = reused_buffer<float, 1>(size_t(n) * n_out);
  for (int64_t j = 0; j < n; ++j)
    for (size_t c = 0; c < n_out; ++c)
      sub_w[size_t(j) * n_out + c] = detail::round_to<f16>(float(w[j * k + q.outliers[c]]) * s[j] * kInv127);

  // int32 products, computed exactly: one token by an int8 dot product, more
  // tokens by f32 GEMMs over chunks of at most 1024 columns, where every
  // partial sum of int8 x int8 products stays below 2^24 and is exact in f32.
  const std::span<int32_t> acc = reused_buffer<int32_t, 2>(size_t(tokens * n));
  std::fill(acc.begin(), acc.end(), 0);
  if (tokens == 1) {
    parallel_for(0, size_t(n), gemv_row_grain(k), [&](size_t lo, size_t hi) {
      for (size_t j = lo; j < hi; ++j) acc[j] = dot_i8(q.codes.data(), w + j * size_t(k), k);
    });
  } else {
    constexpr int64_t kExactChunk = 1024;  // 1024 * 127 * 127 < 2^24
    const std::span<float> partial = reused_buffer<float, 3>(size_t(tokens * n));
    for (int64_t c0 = 0; c0 < k; c0 += kExactChunk) {
      const int64_t width = std::min(kExactChunk, k - c0);
      const std::span<float> a_chunk = reused_buffer<float, 5>(size_t(tokens * width));
      parallel_for(0, size_t(tokens), 16, [&](size_t lo, size_t hi) {
        for (size_t t = lo; t < hi; ++t)
          for (int64_t i = 0; i < width; ++i) a_chunk[t * width + i] = float(q.codes[t * k + c0 + i]);
      });
      gemm_tiled(a_chunk.data(), tokens, width, n,
                 [&](int64_t first, int64_t last, float* dst) {
                   for (int64_t r = first; r < last; ++r)
                     for (int64_t i = 0; i < width; ++i) dst[(r - first) * width + i] = float(w[r * k + c0 + i]);
                 },
                 partial.data());
      parallel_for(0, acc.size(), 1 << 14, [&](size_t lo, size_t hi) {
        for (size_t i = lo; i < hi; ++i) acc[i] += int32_t(partial[i]);
      });
    }
  }

  const std::span<float> result = reused_buffer<float, 4>(size_t(tokens * n));
  parallel_for(0, size_t(n), 64, [&](size_t lo, size_t hi) {
    for (int64_t t = 0; t < tokens; ++t) {
      const float* xrow = xh.data() + t * k;
      for (size_t j = lo; j < hi; ++j) {
        const float scaled = float(acc[size_t(t * n) + j]) * q.row_stats[size_t(t)] * s[j];
        float v = detail::round_to<f16>(std::fma(scaled, kDequantScale, b[j]));
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
    parallel_for(0, result.size(), 1 << 14, [&](size_t lo, size_t hi) {
      for (size_t i = lo; i < hi; ++i) o[i] = detail::store<T>(result[i]);
    });
  });
}

}  // namespace lowbit::ops::cpu
