// Vector kernels of the one-token (GEMV) paths, compiled for every x86 target
// Highway knows and chosen at run time (gemv_hwy.cc). Each returns what the
// scalar loop it replaces returns, up to f32 summation order.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "lowbit/core/half.h"

namespace lowbit::ops::cpu {

// How a 4-bit block's 16 values code[i] * absmax are rounded before use: not
// at all (f32 weights and compute), or to bf16 / f16 (the narrower of the
// weight dtype and the compute dtype).
// Rows a GEMV work item takes: at least ~2^18 multiply-adds, so that small
// layers (one token through a 256-wide model) run on the calling thread
// instead of paying for a worker's wake-up.
inline size_t gemv_row_grain(int64_t k, size_t minimum = 16) {
  return std::max<size_t>(minimum, size_t((int64_t(1) << 18) / std::max<int64_t>(k, 1)));
}

enum class TableRounding : uint8_t { None, BF16, F16 };

// x split into even and odd elements: byte j of a packed row holds the codes
// of elements 2j (high nibble) and 2j + 1 (low nibble).
void split_even_odd(const float* x, int64_t k, std::vector<float>& x_even, std::vector<float>& x_odd);

// Dot product of one 4-bit row of k weights with x; k a multiple of
// blocksize, blocksize a multiple of 4. absmax: the row's blocks.
float dot_4bit(const uint8_t* packed, const float* absmax, const float* code, int blocksize, int64_t k,
               const float* x_even, const float* x_odd, TableRounding rounding);

// Exact int8 dot product (int32 accumulation).
int32_t dot_i8(const int8_t* a, const int8_t* b, int64_t n);

// Dot product of a weight row with f32 x (16-bit weights widen exactly).
float dot_f32(const float* w, const float* x, int64_t n);
float dot_bf16(const bf16* w, const float* x, int64_t n);
float dot_f16(const f16* w, const float* x, int64_t n);

}  // namespace lowbit::ops::cpu
