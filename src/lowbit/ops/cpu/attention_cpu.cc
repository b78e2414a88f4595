// Attention on the CPU: scores, softmax and the weighted sum of values in f32,
// as fused attention kernels (PyTorch's SDPA) compute them, rounded to the
// output dtype at the end.
// - Several queries (a prompt): per query head, scores = Q K^T and out = P V
//   are two single-threaded sgemm calls; heads are spread over the threads.
//   The causal upper triangle is computed and then masked: simpler than
//   tiling, and the products are a small part of a forward pass.
// - One query (decoding): a dot product per cached key, per head.
#include <cblas.h>

#include <cmath>
#include <vector>

#include "lowbit/core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/dispatch.h"

namespace lowbit::ops::cpu {
namespace {

// Softmax of row[first..last] in place (f32); entries outside become 0.
void masked_softmax(float* row, int64_t length, int64_t first, int64_t last) {
  float mx = -INFINITY;
  for (int64_t s = first; s <= last; ++s) mx = std::max(mx, row[s]);
  float sum = 0.0f;
  for (int64_t s = first; s <= last; ++s) {
    row[s] = std::exp(row[s] - mx);
    sum += row[s];
  }
  const float inv = 1.0f / sum;
  for (int64_t s = 0; s < length; ++s) row[s] = (s >= first && s <= last) ? row[s] * inv : 0.0f;
}

template <typename T>
const float* as_f32(const T* p, int64_t n, std::vector<float>& buffer) {
  if constexpr (std::is_same_v<T, float>) {
    return p;
  } else {
    buffer.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) buffer[size_t(i)] = detail::load(p[i]);
    return buffer.data();
  }
}

}  // namespace

void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t past, Tensor& out,
               int64_t window) {
  const int64_t tokens = q.dim(0), heads = q.dim(1), dim = q.dim(2), kv_heads = k_cache.dim(1);
  const int64_t keys = past + tokens, group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(float(dim));
  detail::dispatch_float("attention", q.dtype(), [&]<typename T>(T) {
    std::vector<float> qbuf, kbuf, vbuf;
    const float* qf = as_f32(q.data<T>(), tokens * heads * dim, qbuf);
    const float* kf = as_f32(k_cache.data<T>(), keys * kv_heads * dim, kbuf);
    const float* vf = as_f32(v_cache.data<T>(), keys * kv_heads * dim, vbuf);
    T* op = out.data<T>();
    // Heads in parallel only when there is enough work to pay for it.
    const size_t grain = tokens * keys * dim * heads < (int64_t(1) << 18) ? size_t(heads) : 1;
    parallel_for(0, size_t(heads), grain, [&](size_t lo, size_t hi) {
      std::vector<float> scores(static_cast<size_t>(tokens * keys)), acc(static_cast<size_t>(tokens * dim));
      for (size_t h = lo; h < hi; ++h) {
        const int64_t kvh = int64_t(h) / group;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(keys), int(dim), scale,
                    qf + h * dim, int(heads * dim), kf + kvh * dim, int(kv_heads * dim), 0.0f, scores.data(),
                    int(keys));
        for (int64_t t = 0; t < tokens; ++t) {
          const int64_t last = past + t;
          const int64_t first = window > 0 ? std::max<int64_t>(0, last - window + 1) : 0;
          masked_softmax(scores.data() + t * keys, keys, first, last);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(tokens), int(dim), int(keys), 1.0f,
                    scores.data(), int(keys), vf + kvh * dim, int(kv_heads * dim), 0.0f, acc.data(), int(dim));
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t i = 0; i < dim; ++i) op[(t * heads + int64_t(h)) * dim + i] = detail::store<T>(acc[size_t(t * dim + i)]);
      }
    });
  });
}

}  // namespace lowbit::ops::cpu
