// Choosing tokens from logits where the logits are (the GPU for a model on
// the GPU), so that only token ids cross to the host.
#pragma once

#include "lowbit/core/tensor.h"

namespace lowbit::ops {

// out[r] = the column of row r's largest value (the first one on ties), for
// x [rows, cols] f32/bf16/f16 and out i32 [rows]; -1 for a row holding a NaN
// (the model output is broken: callers report it).
void argmax(const Tensor& x, Tensor& out);

}  // namespace lowbit::ops
