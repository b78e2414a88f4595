#include "lowbit/ops/attention.h"

#include "ops/cpu/cpu_ops.h"
#include "ops/cuda_body.h"
#include "ops/dispatch.h"

namespace lowbit::ops {

void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Position& position, Tensor& out,
               int64_t window) {
  constexpr std::string_view op = "attention";
  const int64_t past = position.value;
  LOWBIT_CHECK(q.ndim() == 3, "ops::attention: q must be [tokens, heads, head_dim], got {}", q.describe());
  LOWBIT_CHECK(k_cache.ndim() == 3 && k_cache.dim(2) == q.dim(2),
               "ops::attention: k_cache must be [capacity, kv_heads, {}], got {}", q.dim(2), k_cache.describe());
  detail::expect_shape(op, "v_cache", v_cache, k_cache.shape());
  LOWBIT_CHECK(k_cache.dim(1) > 0 && q.dim(1) % k_cache.dim(1) == 0,
               "ops::attention: {} query heads are not a multiple of {} key/value heads", q.dim(1), k_cache.dim(1));
  LOWBIT_CHECK(past >= 0 && past + q.dim(0) <= k_cache.dim(0),
               "ops::attention: positions up to {} exceed the cache capacity {}", past + q.dim(0), k_cache.dim(0));
  detail::expect_shape(op, "out", out, {q.dim(0), q.dim(1) * q.dim(2)});
  detail::expect_dtype(op, "k_cache", k_cache, q.dtype());
  detail::expect_dtype(op, "v_cache", v_cache, q.dtype());
  detail::expect_dtype(op, "out", out, q.dtype());
  if (position.on_device.defined())
    LOWBIT_CHECK(position.on_device.dtype() == DType::I32 && position.on_device.numel() == 1 &&
                     position.on_device.device() == q.device() && q.device().is_cuda() && q.dim(0) == 1,
                 "ops::attention: a device position needs one query token on the GPU and an i32 [1] tensor there, "
                 "got q {} and position {}",
                 q.describe(), position.on_device.describe());
  detail::on_device(op, detail::common_device(op, {&q, &k_cache, &v_cache, &out}),
                    [&] { cpu::attention(q, k_cache, v_cache, past, out, window); },
                    LOWBIT_CUDA_BODY(cuda::attention(q, k_cache, v_cache, position, out, window)));
}

}  // namespace lowbit::ops
