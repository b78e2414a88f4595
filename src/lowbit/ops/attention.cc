#include "lowbit/ops/attention.h"

#include <algorithm>

#include "ops/cpu/cpu_ops.h"
#include "ops/cuda_body.h"
#include "ops/dispatch.h"

namespace lowbit::ops {

void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Position& position, Tensor& out,
               int64_t window) {
  constexpr std::string_view op = "attention";
  const int64_t past = position.value;
  LOWBIT_CHECK(q.ndim() == 3, "ops::attention: q must be [tokens, heads, head_dim], got {}", q.describe());
  // One sequence's cache, or a batch's [batch, capacity, kv_heads, head_dim]
  // whose sequence b has q's rows [b tokens, (b + 1) tokens).
  const bool batched = k_cache.ndim() == 4;
  LOWBIT_CHECK((k_cache.ndim() == 3 || batched) && k_cache.dim(-1) == q.dim(2) && k_cache.dim(0) > 0,
               "ops::attention: k_cache must be [capacity, kv_heads, {}] (or [batch, capacity, kv_heads, {}]), got {}",
               q.dim(2), q.dim(2), k_cache.describe());
  detail::expect_shape(op, "v_cache", v_cache, k_cache.shape());
  const int64_t batch = batched ? k_cache.dim(0) : 1, kv_heads = k_cache.dim(-2), capacity = k_cache.dim(-3);
  LOWBIT_CHECK(q.dim(0) % batch == 0, "ops::attention: {} query rows do not split into {} sequences", q.dim(0),
               batch);
  const int64_t tokens = q.dim(0) / batch;
  LOWBIT_CHECK(kv_heads > 0 && q.dim(1) % kv_heads == 0,
               "ops::attention: {} query heads are not a multiple of {} key/value heads", q.dim(1), kv_heads);
  LOWBIT_CHECK(past >= 0 && past + tokens <= capacity,
               "ops::attention: positions up to {} exceed the cache capacity {}", past + tokens, capacity);
  detail::expect_shape(op, "out", out, {q.dim(0), q.dim(1) * q.dim(2)});
  detail::expect_dtype(op, "k_cache", k_cache, q.dtype());
  detail::expect_dtype(op, "v_cache", v_cache, q.dtype());
  detail::expect_dtype(op, "out", out, q.dtype());
  if (position.on_device.defined())
    LOWBIT_CHECK(position.on_device.dtype() == DType::I32 && position.on_device.numel() == 1 &&
                     position.on_device.device() == q.device() && q.device().is_cuda() && tokens == 1,
                 "ops::attention: a device position needs one query token a sequence on the GPU and an i32 [1] "
                 "tensor there, got q {} and position {}",
                 q.describe(), position.on_device.describe());
  detail::on_device(
      op, detail::common_device(op, {&q, &k_cache, &v_cache, &out}),
      [&] {
        for (int64_t b = 0; b < batch; ++b) {
          Tensor out_b = out.rows(b * tokens, (b + 1) * tokens);
          cpu::attention(q.rows(b * tokens, (b + 1) * tokens), detail::sequence_cache(k_cache, b),
                         detail::sequence_cache(v_cache, b), past, out_b, window);
        }
      },
      LOWBIT_CUDA_BODY(cuda::attention(q, k_cache, v_cache, position, out, window)));
}

void rope_attention_decode(const Tensor& qkv, const RopeTables& tables, const Position& position, Tensor& k_cache,
                           Tensor& v_cache, Tensor& out, int64_t window) {
  constexpr std::string_view op = "rope_attention_decode";
  // [capacity, kv_heads, head_dim], or [batch, capacity, kv_heads, head_dim]
  // for a batch of sequences (one token each).
  const bool batched = k_cache.ndim() == 4;
  const int64_t batch = batched ? k_cache.dim(0) : 1;
  LOWBIT_CHECK((k_cache.ndim() == 3 || batched) && k_cache.dim(-2) > 0 && k_cache.dim(-1) > 0 &&
                   k_cache.dim(-1) % 2 == 0 && batch > 0,
               "ops::rope_attention_decode: k_cache must be [capacity, kv_heads, head_dim] (or [batch, capacity, "
               "kv_heads, head_dim]) with an even head_dim, got {}",
               k_cache.describe());
  detail::expect_shape(op, "v_cache", v_cache, k_cache.shape());
  const int64_t kv_heads = k_cache.dim(-2), dim = k_cache.dim(-1), capacity = k_cache.dim(-3);
  LOWBIT_CHECK(out.ndim() == 2 && out.dim(0) == batch && out.dim(1) % dim == 0 &&
                   (out.dim(1) / dim) % kv_heads == 0,
               "ops::rope_attention_decode: out must be [{}, q_heads * {}] with q_heads a multiple of {}, got {}",
               batch, dim, kv_heads, out.describe());
  const int64_t heads = out.dim(1) / dim;
  detail::expect_shape(op, "qkv", qkv, {batch, (heads + 2 * kv_heads) * dim});
  for (const Tensor* t : {&k_cache, &v_cache, &out}) detail::expect_dtype(op, "the caches and out", *t, qkv.dtype());
  LOWBIT_CHECK(tables.cos.ndim() == 2 && tables.cos.dim(1) * 2 == dim,
               "ops::rope_attention_decode: tables must be [positions, {}], got {}", dim / 2, tables.cos.describe());
  LOWBIT_CHECK(position.value >= 0 && position.value < std::min(tables.cos.dim(0), capacity),
               "ops::rope_attention_decode: position {} is outside the table's {} positions or the cache's {} rows",
               position.value, tables.cos.dim(0), capacity);
  if (position.on_device.defined())
    LOWBIT_CHECK(position.on_device.dtype() == DType::I32 && position.on_device.numel() == 1 &&
                     position.on_device.device() == qkv.device(),
                 "ops::rope_attention_decode: a device position must be an i32 [1] tensor on qkv's GPU, got {}",
                 position.on_device.describe());
  // The CPU runs the two ops a sequence (the fused form saves GPU launches).
  detail::on_device(
      op, detail::common_device(op, {&qkv, &tables.cos, &tables.sin, &k_cache, &v_cache, &out}),
      [&] {
        for (int64_t s = 0; s < batch; ++s) {
          const Tensor qkv_s = qkv.rows(s, s + 1);
          Tensor k_s = detail::sequence_cache(k_cache, s), v_s = detail::sequence_cache(v_cache, s);
          Tensor out_s = out.rows(s, s + 1);
          Tensor q = Tensor::empty({1, heads, dim}, qkv.dtype());
          rope_qkv(qkv_s, tables, position.value, q, k_s, v_s);
          attention(q, k_s, v_s, position.value, out_s, window);
        }
      },
      LOWBIT_CUDA_BODY(cuda::rope_attention_decode(qkv, tables, position, k_cache, v_cache, out, window)));
}

}  // namespace lowbit::ops
