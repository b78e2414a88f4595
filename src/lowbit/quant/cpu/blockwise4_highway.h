// Entry points of the vectorized 4-bit kernels (blockwise4_highway.cc), each
// dispatching to the best instruction set of the running CPU. Single-threaded:
// blockwise4_cpu.cc spreads runs of blocks over the thread pool.
#pragma once

#include <cstdint>

#include "lowbit/core/half.h"
#include "lowbit/quant/formats.h"

namespace lowbit::quant::cpu {

// Elements [first, first + count) of a packed tensor, any alignment.
void dequantize_4bit_range(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                           int64_t count, float* out);
void dequantize_4bit_range(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                           int64_t count, f16* out);
void dequantize_4bit_range(const uint8_t* packed, const float* absmax, QuantType type, int blocksize, int64_t first,
                           int64_t count, bf16* out);

// A run of whole blocks starting at a block boundary (the last may be partial).
void quantize_4bit_run(const float* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax);
void quantize_4bit_run(const f16* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax);
void quantize_4bit_run(const bf16* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax);

}  // namespace lowbit::quant::cpu
