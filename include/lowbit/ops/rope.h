// Rotary position embeddings (RoPE), with the scalings Llama-family models use.
#pragma once

#include <string>

#include "lowbit/core/tensor.h"

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

}  // namespace lowbit::ops
