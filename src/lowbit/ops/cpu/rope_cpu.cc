#include <cstring>

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

void rope_qkv(const Tensor& qkv, const RopeTables& tables, int64_t first_position, Tensor& q_out, Tensor& k_cache,
              Tensor& v_cache) {
  const int64_t tokens = q_out.dim(0), q_dim = q_out.dim(1) * q_out.dim(2);
  const int64_t kv_dim = k_cache.dim(1) * k_cache.dim(2), row = q_dim + 2 * kv_dim;
  const size_t elem = element_size(qkv.dtype());
  Tensor k = k_cache.rows(first_position, first_position + tokens);
  Tensor v = v_cache.rows(first_position, first_position + tokens);
  const auto* src = static_cast<const char*>(qkv.raw_data());
  for (int64_t t = 0; t < tokens; ++t) {
    const char* r = src + size_t(t * row) * elem;
    std::memcpy(static_cast<char*>(q_out.raw_data()) + size_t(t * q_dim) * elem, r, size_t(q_dim) * elem);
    std::memcpy(static_cast<char*>(k.raw_data()) + size_t(t * kv_dim) * elem, r + size_t(q_dim) * elem,
                size_t(kv_dim) * elem);
    std::memcpy(static_cast<char*>(v.raw_data()) + size_t(t * kv_dim) * elem, r + size_t(q_dim + kv_dim) * elem,
                size_t(kv_dim) * elem);
  }
  cpu::apply_rope(q_out, tables, first_position);
  cpu::apply_rope(k, tables, first_position);
}

}  // namespace lowbit::ops::cpu
