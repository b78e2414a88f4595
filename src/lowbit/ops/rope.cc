#include "lowbit/ops/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "ops/cpu/cpu_ops.h"
#include "ops/cuda_body.h"
#include "ops/dispatch.h"

namespace lowbit::ops {

Tensor rope_inverse_frequencies(const RopeConfig& c) {
  LOWBIT_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, "RoPE: head_dim must be even and positive, got {}", c.head_dim);
  const int half = c.head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  // 1 / theta^(2i / dim), each step in f32 as torch computes it.
  for (int i = 0; i < half; ++i) {
    const float exponent = float(2 * i) / float(c.head_dim);
    inv[size_t(i)] = 1.0f / std::pow(c.theta, exponent);
  }
  if (c.type == "llama3") {
    const float old_len = float(c.original_max_position);
    const float low_freq_wavelen = old_len / c.low_freq_factor;
    const float high_freq_wavelen = old_len / c.high_freq_factor;
    for (float& f : inv) {
      const float wavelen = 2.0f * float(std::numbers::pi) / f;
      const float scaled = wavelen > low_freq_wavelen ? f / c.factor : f;
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      if (medium) {
        const float smooth = (old_len / wavelen - c.low_freq_factor) / (c.high_freq_factor - c.low_freq_factor);
        f = (1.0f - smooth) * scaled / c.factor + smooth * scaled;
      } else {
        f = scaled;
      }
    }
  } else if (c.type == "linear") {
    for (float& f : inv) f /= c.factor;
  } else if (c.type != "default") {
    fail("RoPE: unsupported rope_type '{}' (supported: default, linear, llama3)", c.type);
  }
  return Tensor::from_vector(inv);
}

RopeTables rope_tables(const RopeConfig& config, int64_t positions) {
  const Tensor inv = rope_inverse_frequencies(config);
  const int64_t half = inv.numel();
  RopeTables t{Tensor::empty({positions, half}, DType::F32), Tensor::empty({positions, half}, DType::F32)};
  const float* f = inv.data<float>();
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(p) * f[i];
      t.cos.data<float>()[p * half + i] = float(std::cos(double(angle)));
      t.sin.data<float>()[p * half + i] = float(std::sin(double(angle)));
    }
  return t;
}

void apply_rope(Tensor& x, const RopeTables& tables, int64_t first_position) {
  constexpr std::string_view op = "apply_rope";
  LOWBIT_CHECK(x.ndim() == 3, "ops::apply_rope: x must be [tokens, heads, head_dim], got {}", x.describe());
  LOWBIT_CHECK(tables.cos.ndim() == 2 && tables.cos.dim(1) * 2 == x.dim(2),
               "ops::apply_rope: tables must be [positions, {}], got {}", x.dim(2) / 2, tables.cos.describe());
  LOWBIT_CHECK(first_position >= 0 && first_position + x.dim(0) <= tables.cos.dim(0),
               "ops::apply_rope: positions [{}, {}) exceed the table's {} positions", first_position,
               first_position + x.dim(0), tables.cos.dim(0));
  detail::on_device(op, detail::common_device(op, {&x, &tables.cos, &tables.sin}),
                    [&] { cpu::apply_rope(x, tables, first_position); },
                    LOWBIT_CUDA_BODY(cuda::apply_rope(x, tables, first_position)));
}

void rope_qkv(const Tensor& qkv, const RopeTables& tables, const Position& position, Tensor& q_out,
              Tensor& k_cache, Tensor& v_cache) {
  constexpr std::string_view op = "rope_qkv";
  const int64_t first_position = position.value;
  // One sequence's cache, or a batch's [batch, capacity, kv_heads, head_dim]
  // whose sequence b has the rows [b tokens, (b + 1) tokens).
  const bool batched = k_cache.ndim() == 4;
  LOWBIT_CHECK(q_out.ndim() == 3 && (k_cache.ndim() == 3 || batched) && k_cache.dim(-1) == q_out.dim(2) &&
                   k_cache.dim(0) > 0,
               "ops::rope_qkv: q_out must be [tokens, heads, head_dim] and k_cache [capacity, kv_heads, head_dim] (or "
               "[batch, capacity, kv_heads, head_dim]), got {} and {}",
               q_out.describe(), k_cache.describe());
  detail::expect_shape(op, "v_cache", v_cache, k_cache.shape());
  const int64_t batch = batched ? k_cache.dim(0) : 1, kv_heads = k_cache.dim(-2), capacity = k_cache.dim(-3);
  LOWBIT_CHECK(q_out.dim(0) % batch == 0, "ops::rope_qkv: {} rows do not split into {} sequences", q_out.dim(0),
               batch);
  const int64_t tokens = q_out.dim(0) / batch, dim = q_out.dim(2);
  detail::expect_shape(op, "qkv", qkv, {q_out.dim(0), (q_out.dim(1) + 2 * kv_heads) * dim});
  for (const Tensor* t : {&q_out, &k_cache, &v_cache}) detail::expect_dtype(op, "q_out and the caches", *t, qkv.dtype());
  LOWBIT_CHECK(tables.cos.ndim() == 2 && tables.cos.dim(1) * 2 == dim,
               "ops::rope_qkv: tables must be [positions, {}], got {}", dim / 2, tables.cos.describe());
  LOWBIT_CHECK(first_position >= 0 && first_position + tokens <= std::min(tables.cos.dim(0), capacity),
               "ops::rope_qkv: positions [{}, {}) exceed the table's {} positions or the cache's {} rows",
               first_position, first_position + tokens, tables.cos.dim(0), capacity);
  if (position.on_device.defined())
    LOWBIT_CHECK(position.on_device.dtype() == DType::I32 && position.on_device.numel() == 1 &&
                     position.on_device.device() == qkv.device() && qkv.device().is_cuda(),
                 "ops::rope_qkv: a device position must be an i32 [1] tensor on the GPU of qkv, got {}",
                 position.on_device.describe());
  detail::on_device(
      op, detail::common_device(op, {&qkv, &tables.cos, &tables.sin, &q_out, &k_cache, &v_cache}),
      [&] {
        for (int64_t b = 0; b < batch; ++b) {
          Tensor q_b = q_out.rows(b * tokens, (b + 1) * tokens);
          Tensor k_b = detail::sequence_cache(k_cache, b), v_b = detail::sequence_cache(v_cache, b);
          cpu::rope_qkv(qkv.rows(b * tokens, (b + 1) * tokens), tables, first_position, q_b, k_b, v_b);
        }
      },
      LOWBIT_CUDA_BODY(cuda::rope_qkv(qkv, tables, position, q_out, k_cache, v_cache)));
}

}  // namespace lowbit::ops
