// Normalization ops.
#pragma once

#include "lowbit/core/tensor.h"

namespace lowbit::ops {

// RMSNorm over the last dimension of x [rows, dim], as transformers' LlamaRMSNorm
// computes it: x * rsqrt(mean(x^2) + eps) in f32, cast to x's dtype, then times
// `weight` [dim] (rounded to x's dtype again). out has x's shape and dtype.
void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);

// The residual add and the next norm of a decoder in one pass:
// x = x + residual (rounded to x's dtype, as ops::add), then
// out = rms_norm(x, weight, eps). Same results as the two ops.
void add_rms_norm(Tensor& x, const Tensor& residual, const Tensor& weight, float eps, Tensor& out);

}  // namespace lowbit::ops
