// Element-wise ops of a decoder block. Each computes in f32 and rounds the
// result to the output dtype, as one PyTorch op on a tensor of that dtype does.
#pragma once

#include "lowbit/core/tensor.h"

namespace lowbit::ops {

// out = a + b (same shape and dtype; out may be a or b).
void add(const Tensor& a, const Tensor& b, Tensor& out);

// SwiGLU: out = silu(gate) * up, with silu(gate) rounded to the dtype first
// (two ops in PyTorch). out may alias gate or up.
void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out);

// SwiGLU of a fused gate/up projection: gate_up [rows, 2 * n] holds gate in
// columns [0, n) and up in [n, 2n); out [rows, n] = silu_mul(gate, up).
void swiglu(const Tensor& gate_up, Tensor& out);

// out[i, :] = table[ids[i], :] converted to out's dtype. ids: i32 or i64 [n];
// an id outside the table is an Error.
void embedding(const Tensor& ids, const Tensor& table, Tensor& out);

// Row-wise softmax and log-softmax over the last dimension, in f32; `out` is
// f32 with x's shape (x is f32, bf16 or f16).
void softmax(const Tensor& x, Tensor& out);
void log_softmax(const Tensor& x, Tensor& out);

}  // namespace lowbit::ops
