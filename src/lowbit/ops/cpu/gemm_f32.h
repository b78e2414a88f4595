// f32 matrix products on the CPU shared by the linear kernels of every weight
// format: the format supplies weight rows in f32, OpenBLAS multiplies.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "lowbit/core/tensor.h"

namespace lowbit::ops::cpu {

// Writes rows [first, last) of the weight, dequantized to f32, to dst (row-major, in_features wide).
using WeightRowFill = std::function<void(int64_t first, int64_t last, float* dst)>;

// out [tokens, n] = x [tokens, k] . W^T, W produced tile by tile (a few hundred
// rows at a time, so the f32 copy stays in cache-sized pieces) by `fill`.
void gemm_tiled(const float* x, int64_t tokens, int64_t k, int64_t n, const WeightRowFill& fill, float* out);

// out [tokens, n] = x [tokens, k] . W^T for an f32 W [n, k].
void gemm_f32(const float* x, int64_t tokens, int64_t k, int64_t n, const float* w, float* out);

// x as f32 (a copy unless it already is).
std::vector<float> to_f32_vector(const Tensor& x);

// out = round_to_dtype(acc + bias) for out's dtype; acc is [tokens, n] f32.
void store_output(const float* acc, const Tensor& bias, Tensor& out);

}  // namespace lowbit::ops::cpu
