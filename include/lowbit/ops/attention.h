// Causal scaled dot-product attention over a key/value cache, with grouped
// query attention (several query heads share one key/value head).
#pragma once

#include <cstdint>

#include "lowbit/core/tensor.h"
#include "lowbit/ops/position.h"
#include "lowbit/ops/rope.h"

namespace lowbit::ops {

// q: [tokens, q_heads, head_dim], the queries of positions
// [past, past + tokens). k_cache, v_cache: [capacity, kv_heads, head_dim], whose
// first past + tokens rows are filled. out: [tokens, q_heads * head_dim].
// q_heads must be a multiple of kv_heads. Scores are q.k / sqrt(head_dim),
// causal (and limited to the last `window` keys when window > 0); the softmax
// and the weighted sum run in f32 and the result is rounded to out's dtype.
// A position on the device (Position::on_device, one query token) is read when
// the kernel runs: the work is split for the whole cache capacity then.
void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Position& past, Tensor& out,
               int64_t window = 0);

// One decoding step of attention straight from the stacked q/k/v projection
// qkv [1, (q_heads + 2 kv_heads) * head_dim]: the same values as rope_qkv
// (q rotated, k rotated and v written to cache row `position`) followed by
// attention, in one pass (the rotated q is not stored). out: [1, q_heads *
// head_dim]; the caches as for attention. A batch of B sequences at the same
// position in one call: qkv [B, ...], out [B, ...] and the caches [B,
// capacity, kv_heads, head_dim], row b of each for sequence b.
void rope_attention_decode(const Tensor& qkv, const RopeTables& tables, const Position& position, Tensor& k_cache,
                           Tensor& v_cache, Tensor& out, int64_t window = 0);

}  // namespace lowbit::ops
