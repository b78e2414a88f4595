// Dense linear on the CPU. f32 weights go straight to OpenBLAS; 16-bit weights
// are widened to f32 tile by tile (exact), and a single token runs a GEMV that
// reads the 16-bit weight directly, so it moves half the bytes of f32.
#include "lowbit/core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/cpu/gemv_kernels.h"
#include "ops/dispatch.h"

namespace lowbit::ops::cpu {
namespace {

// Rounds weight values to the compute dtype C when it is narrower than the
// weight's dtype (torch casts the weight to the input's dtype first).
template <typename W, typename C>
void widen_rows(const W* w, int64_t k, int64_t first, int64_t last, float* dst) {
  for (int64_t r = first; r < last; ++r)
    for (int64_t i = 0; i < k; ++i) dst[(r - first) * k + i] = detail::round_to<C>(detail::load(w[r * k + i]));
}

template <typename W, typename C>
void gemv_rows(const W* w, const float* x, int64_t k, int64_t n, float* out) {
  parallel_for(0, size_t(n), gemv_row_grain(k), [&](size_t lo, size_t hi) {
    for (size_t r = lo; r < hi; ++r) {
      const W* row = w + r * size_t(k);
      // Widening without rounding: the vector kernels.
      if constexpr (std::is_same_v<C, float> && std::is_same_v<W, bf16>) {
        out[r] = dot_bf16(row, x, k);
        continue;
      } else if constexpr (std::is_same_v<C, float> && std::is_same_v<W, f16>) {
        out[r] = dot_f16(row, x, k);
        continue;
      }
      float acc[8] = {};
      int64_t i = 0;
      for (; i + 8 <= k; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += x[i + j] * detail::round_to<C>(detail::load(row[i + j]));
      float sum = 0.0f;
      for (; i < k; ++i) sum += x[i] * detail::round_to<C>(detail::load(row[i]));
      for (float a : acc) sum += a;
      out[r] = sum;
    }
  });
}

}  // namespace

void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  const std::vector<float> xf = to_f32_vector(x);
  std::vector<float> acc(static_cast<size_t>(tokens * n));
  detail::dispatch_float("linear", weight.dtype(), [&]<typename W>(W) {
    detail::dispatch_float("linear", x.dtype(), [&]<typename C>(C) {
      const W* w = weight.data<W>();
      // Widening (or same-type) conversions are exact: skip the rounding.
      constexpr bool exact = std::is_same_v<W, C> || std::is_same_v<C, float>;
      if constexpr (std::is_same_v<W, float> && std::is_same_v<C, float>) {
        gemm_f32(xf.data(), tokens, k, n, w, acc.data());
      } else if (tokens == 1) {
        gemv_rows<W, std::conditional_t<exact, float, C>>(w, xf.data(), k, n, acc.data());
      } else {
        gemm_tiled(xf.data(), tokens, k, n,
                   [&](int64_t first, int64_t last, float* dst) {
                     widen_rows<W, std::conditional_t<exact, float, C>>(w, k, first, last, dst);
                   },
                   acc.data());
      }
    });
  });
  store_output(acc.data(), bias, out);
}

}  // namespace lowbit::ops::cpu
