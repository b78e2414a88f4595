#include "ops/cpu/gemm_f32.h"

#include <algorithm>
#include <cblas.h>

#include "lowbit/core/thread_pool.h"
#include "ops/cpu/gemv_kernels.h"
#include "ops/dispatch.h"

namespace lowbit::ops::cpu {

namespace {

constexpr int64_t kMinParallelWork = int64_t(1) << 18;

// OpenBLAS runs single-threaded inside lowbit: lowbit's pool splits the work,
// so the two thread pools never spin against each other on the same cores.
const bool openblas_single_threaded = [] {
  openblas_set_num_threads(1);
  return true;
}();

// Output columns a work item takes: at least 2^18 multiply-adds (a waking
// worker costs more than that on small layers) and enough for sgemm to run at
// full speed.
int64_t column_grain(int64_t tokens, int64_t k) {
  return std::max<int64_t>(16, kMinParallelWork / std::max<int64_t>(1, k * tokens));
}

}  // namespace

void gemm_f32(const float* x, int64_t tokens, int64_t k, int64_t n, const float* w, float* out) {
  (void)openblas_single_threaded;
  parallel_for(0, size_t(n), size_t(column_grain(tokens, k)), [&](size_t lo, size_t hi) {
    const int64_t cols = int64_t(hi - lo);
    if (tokens == 1 && n * k < (int64_t(1) << 22)) {
      // Small layers: a Highway dot per row (OpenBLAS' sgemv costs more on
      // these); large ones stream at memory speed with sgemv.
      for (size_t r = lo; r < hi; ++r) out[r] = dot_f32(w + r * size_t(k), x, k);
    } else if (tokens == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, int(cols), int(k), 1.0f, w + lo * size_t(k), int(k), x, 1, 0.0f,
                  out + lo, 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(cols), int(k), 1.0f, x, int(k),
                  w + lo * size_t(k), int(k), 0.0f, out + lo, int(n));
    }
  });
}

void gemm_tiled(const float* x, int64_t tokens, int64_t k, int64_t n, const WeightRowFill& fill, float* out) {
  // About 4 MiB of f32 weight a tile: large enough for OpenBLAS to run at full
  // speed, small enough to stay in the last-level cache.
  const int64_t tile = std::max<int64_t>(64, std::min<int64_t>(n, (int64_t(1) << 20) / std::max<int64_t>(k, 1)));
  std::vector<float> buffer(static_cast<size_t>(tile * k));
  for (int64_t n0 = 0; n0 < n; n0 += tile) {
    const int64_t rows = std::min(tile, n - n0);
    // Each work item dequantizes its rows and multiplies them at once, while
    // they are still in its core's cache.
    parallel_for(0, size_t(rows), size_t(column_grain(tokens, k)), [&](size_t lo, size_t hi) {
      float* rows_f32 = buffer.data() + lo * size_t(k);
      fill(n0 + int64_t(lo), n0 + int64_t(hi), rows_f32);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(hi - lo), int(k), 1.0f, x, int(k),
                  rows_f32, int(k), 0.0f, out + n0 + int64_t(lo), int(n));
    });
  }
}

std::vector<float> to_f32_vector(const Tensor& x) {
  std::vector<float> v(static_cast<size_t>(x.numel()));
  detail::dispatch_float("linear", x.dtype(), [&]<typename T>(T) {
    const T* p = x.data<T>();
    parallel_for(0, v.size(), 1 << 14, [&](size_t lo, size_t hi) {
      for (size_t i = lo; i < hi; ++i) v[i] = detail::load(p[i]);
    });
  });
  return v;
}

void store_output(const float* acc, const Tensor& bias, Tensor& out) {
  const int64_t tokens = out.dim(0), n = out.dim(1);
  std::vector<float> b;
  if (bias.defined()) b = to_f32_vector(bias);
  detail::dispatch_float("linear", out.dtype(), [&]<typename T>(T) {
    T* o = out.data<T>();
    parallel_for(0, size_t(tokens), size_t(std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(n, 1))),
                 [&](size_t lo, size_t hi) {
                   for (size_t t = lo; t < hi; ++t)
                     for (int64_t j = 0; j < n; ++j) {
                       const float v = acc[t * n + j] + (b.empty() ? 0.0f : b[size_t(j)]);
                       o[t * n + j] = detail::store<T>(v);
                     }
                 });
  });
}

}  // namespace lowbit::ops::cpu
