// Rotary position embeddings (RoPE), with the scalings Llama-family models use.
#pragma once

#include <string>

#include "lowbit/core/tensor.h"
#include "lowbit/ops/position.h"

namespace lowbit::ops {

struct RopeConfig {
  int head_dim = 0;
  float theta = 10000.0f;
  // "default" or "llama3" (frequency-dependent scaling of Llama 3.1+), or
  // "linear" (positions divided by `factor`).
  std::string type = "default";
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position = 8192;
};

// The inverse frequencies [head_dim / 2], computed in f32 in the order
// transformers uses (so that positions far out still agree).
Tensor rope_inverse_frequencies(const RopeConfig& config);

// cos and sin tables, f32 [positions, head_dim / 2]: angle = position * inv_freq
// (rounded to f32, as the reference computes it), times the attention scaling
// of the rope type (1 for the supported types).
struct RopeTables {
  Tensor cos;
  Tensor sin;
};
RopeTables rope_tables(const RopeConfig& config, int64_t positions);

// Rotates x [tokens, heads, head_dim] in place (rotate-half layout); token t
// has position `first_position + t`. cos/sin are rounded to x's dtype and each
// product and the sum are rounded to it, as `q * cos + rotate_half(q) * sin`
// does in PyTorch.
void apply_rope(Tensor& x, const RopeTables& tables, int64_t first_position);

// Splits a fused q/k/v projection qkv [tokens, (heads + 2 kv_heads) * head_dim]
// (q, then k, then v columns): q rotated into q_out [tokens, heads, head_dim],
// k rotated into rows [first_position, first_position + tokens) of k_cache
// [capacity, kv_heads, head_dim], v copied into the same rows of v_cache.
// Same values as apply_rope on separate projections. A position on the device
// (Position::on_device) is read when the kernel runs (captured decoding).
void rope_qkv(const Tensor& qkv, const RopeTables& tables, const Position& first_position, Tensor& q_out,
              Tensor& k_cache, Tensor& v_cache);

}  // namespace lowbit::ops
