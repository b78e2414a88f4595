// Choosing tokens from logits where the logits are (the GPU for a model on
// the GPU), so that only token ids cross to the host.
#pragma once

#include "lowbit/core/tensor.h"

namespace lowbit::ops {

// out[r] = the column of row r's largest value (the first one on ties), for
// x [rows, cols] f32/bf16/f16 and out i32 [rows]; -1 for a row holding a NaN
// (the model output is broken: callers report it).
void argmax(const Tensor& x, Tensor& out);

// The warpers of transformers' generate(), in its order: repetition penalty
// (each id in `previous` has its score divided by the penalty when positive,
// multiplied when negative), temperature, top-k (scores below the k-th largest
// dropped, ties with it kept), top-p (the fewest tokens, taken in descending
// score and then ascending id, whose probability reaches top_p).
struct SamplingParams {
  float temperature = 1.0f;  // > 0 (greedy: argmax)
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // (0, 1]
  float repetition_penalty = 1.0f;
};

// One draw from row x [1, vocab] (f32/bf16/f16): the token at u in [0, 1) of
// the kept tokens' cumulative probability, walked in ascending id order.
// previous: i32 [n] on x's device (any n, repeats allowed); out: i32 [1] on
// x's device; -1 when x holds a NaN or every score is -inf. Probabilities are
// exp(score - max) summed in f64, so a CPU and a GPU draw agree except where
// u falls within rounding of a boundary.
void sample_token(const Tensor& x, const Tensor& previous, const SamplingParams& params, double u, Tensor& out);

}  // namespace lowbit::ops
