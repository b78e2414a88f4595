// Causal scaled dot-product attention over a key/value cache, with grouped
// query attention (several query heads share one key/value head).
#pragma once

#include <cstdint>

#include "lowbit/core/tensor.h"
#include "lowbit/ops/position.h"

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

}  // namespace lowbit::ops
