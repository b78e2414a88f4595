// Scalar reference kernels: the plainest transcription of bitsandbytes'
// numerics, single-threaded. They define the results; the vectorized kernels
// in kernels.h must reproduce them bit for bit (tests/quant compare the two).
#pragma once

#include <cstdint>

#include "lowbit/core/half.h"
#include "lowbit/quant/formats.h"

namespace lowbit::quant::ref {

template <typename T>
void quantize_4bit(const T* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax);
template <typename T>
void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, QuantType type, int blocksize, T* out);

template <typename T>
void quantize_dynamic8(const T* x, int64_t n, const float* code, int blocksize, uint8_t* codes, float* absmax);
template <typename T>
void dequantize_dynamic8(const uint8_t* codes, const float* absmax, const float* code, int64_t n, int blocksize,
                         T* out);

void dequantize_nested_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* code,
                              int64_t blocks, int nested_blocksize, float offset, float* out);
float quantize_nested_absmax(const float* absmax, int64_t blocks, const float* code, int nested_blocksize,
                             uint8_t* qabsmax, float* nested_absmax);

template <typename T>
void int8_vectorwise_quant(const T* a, int64_t rows, int64_t cols, float threshold, int8_t* codes, float* row_stats);
template <typename T>
void int8_vectorwise_dequant(const int8_t* codes, const float* row_stats, int64_t rows, int64_t cols, T* out);

// Instantiates a kernel template for the three float storage types.
#define LOWBIT_QUANT_FOR_FLOAT_TYPES(X) X(float) X(::lowbit::f16) X(::lowbit::bf16)

}  // namespace lowbit::quant::ref
