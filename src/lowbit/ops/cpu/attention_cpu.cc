// Attention on the CPU: one (token, query head) pair per work item; scores,
// softmax and the weighted sum of values in f32, as fused attention kernels
// (PyTorch's SDPA) compute them, rounded to the output dtype at the end.
#include <cmath>
#include <vector>

#include "lowbit/core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/dispatch.h"

namespace lowbit::ops::cpu {

void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t past, Tensor& out,
               int64_t window) {
  const int64_t tokens = q.dim(0), heads = q.dim(1), dim = q.dim(2), kv_heads = k_cache.dim(1);
  const int64_t group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(float(dim));
  detail::dispatch_float("attention", q.dtype(), [&]<typename T>(T) {
    const T* qp = q.data<T>();
    const T* kp = k_cache.data<T>();
    const T* vp = v_cache.data<T>();
    T* op = out.data<T>();
    parallel_for(0, size_t(tokens * heads), 1, [&](size_t lo, size_t hi) {
      std::vector<float> scores, qf(static_cast<size_t>(dim)), acc(static_cast<size_t>(dim));
      for (size_t item = lo; item < hi; ++item) {
        const int64_t t = int64_t(item) / heads, h = int64_t(item) % heads, kvh = h / group;
        const int64_t last = past + t;  // inclusive: causal
        const int64_t first = window > 0 ? std::max<int64_t>(0, last - window + 1) : 0;
        const T* qv = qp + (t * heads + h) * dim;
        for (int64_t i = 0; i < dim; ++i) qf[size_t(i)] = to_f32(qv[i]);
        scores.resize(size_t(last - first + 1));
        float mx = -INFINITY;
        for (int64_t s = first; s <= last; ++s) {
          const T* kv = kp + (s * kv_heads + kvh) * dim;
          float dot = 0.0f;
          for (int64_t i = 0; i < dim; ++i) dot += qf[size_t(i)] * to_f32(kv[i]);
          dot *= scale;
          scores[size_t(s - first)] = dot;
          mx = std::max(mx, dot);
        }
        float sum = 0.0f;
        for (float& s : scores) {
          s = std::exp(s - mx);
          sum += s;
        }
        const float inv = 1.0f / sum;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t s = first; s <= last; ++s) {
          const float p = scores[size_t(s - first)] * inv;
          const T* vv = vp + (s * kv_heads + kvh) * dim;
          for (int64_t i = 0; i < dim; ++i) acc[size_t(i)] += p * to_f32(vv[i]);
        }
        T* o = op + t * heads * dim + h * dim;
        for (int64_t i = 0; i < dim; ++i) o[i] = from_f32<T>(acc[size_t(i)]);
      }
    });
  });
}

}  // namespace lowbit::ops::cpu
