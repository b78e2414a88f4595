#include "lowbit/core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/dispatch.h"

namespace lowbit::ops::cpu {

using detail::round_to;

void apply_rope(Tensor& x, const RopeTables& tables, int64_t first_position) {
  const int64_t tokens = x.dim(0), heads = x.dim(1), dim = x.dim(2), half = dim / 2;
  detail::dispatch_float("apply_rope", x.dtype(), [&]<typename T>(T) {
    T* xp = x.data<T>();
    parallel_for(0, size_t(tokens), 8, [&](size_t lo, size_t hi) {
      for (size_t t = lo; t < hi; ++t) {
        const float* cs = tables.cos.data<float>() + (first_position + int64_t(t)) * half;
        const float* sn = tables.sin.data<float>() + (first_position + int64_t(t)) * half;
        for (int64_t h = 0; h < heads; ++h) {
          T* v = xp + (int64_t(t) * heads + h) * dim;
          for (int64_t i = 0; i < half; ++i) {
            const float c = round_to<T>(cs[i]), s = round_to<T>(sn[i]);
            const float a = detail::load(v[i]), b = detail::load(v[i + half]);
            // q * cos + rotate_half(q) * sin, where rotate_half(q) = [-b, a].
            v[i] = detail::store<T>(round_to<T>(a * c) + round_to<T>(-b * s));
            v[i + half] = detail::store<T>(round_to<T>(b * c) + round_to<T>(a * s));
          }
        }
      }
    });
  });
}

}  // namespace lowbit::ops::cpu
