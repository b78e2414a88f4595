// CUDA kernels of the quantization formats, called by the op layer
// (blockwise.cc, int8.cc) when tensors live on a GPU. Pointers are device
// pointers; work is queued on the current device's default stream and must
// give the same bits as the CPU kernels (quant/kernels.h). `dtype` is F32, F16
// or BF16 and names the type behind the void pointers.
//
// The op layer calls these only when LOWBIT_WITH_CUDA_QUANT is defined (set
// once they are implemented); until then CUDA tensors get a clear Error.
#pragma once

#include <cstdint>

#include "lowbit/core/dtype.h"
#include "lowbit/quant/formats.h"

namespace lowbit::quant::cuda {

void quantize_4bit(DType dtype, const void* x, int64_t n, QuantType type, int blocksize, uint8_t* packed,
                   float* absmax);
void dequantize_4bit(DType out_dtype, const uint8_t* packed, const float* absmax, int64_t n, QuantType type,
                     int blocksize, void* out);

// `code` is the 256-value map in device memory.
void quantize_dynamic8(DType dtype, const void* x, int64_t n, const float* code, int blocksize, uint8_t* codes,
                       float* absmax);
void dequantize_dynamic8(DType out_dtype, const uint8_t* codes, const float* absmax, const float* code, int64_t n,
                         int blocksize, void* out);

// out[i] = code[q[i]] * nested_absmax[i / nested_blocksize] + offset (f32).
void dequantize_nested_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* code, int64_t blocks,
                              int nested_blocksize, float offset, float* out);
// offset = mean(absmax) (returned to the host), then (absmax - offset) coded
// with `code` in blocks of nested_blocksize. absmax is left unchanged.
float quantize_nested_absmax(const float* absmax, int64_t blocks, const float* code, int nested_blocksize,
                             uint8_t* qabsmax, float* nested_absmax);

// Row absmax and codes as bitsandbytes' kInt8VectorQuant (values with
// |a| >= threshold excluded and coded 0 when threshold > 0).
void int8_vectorwise_quant(DType dtype, const void* a, int64_t rows, int64_t cols, float threshold, int8_t* codes,
                           float* row_stats);
// mask[c] = 1 when any row has |a[r, c]| >= threshold, else 0.
void int8_outlier_column_mask(DType dtype, const void* a, int64_t rows, int64_t cols, float threshold,
                              uint8_t* mask);
// codes[r, col[k]] = 0 for every row and each of the k columns.
void int8_zero_columns(int8_t* codes, int64_t rows, int64_t cols, const int32_t* columns, int64_t k);
void int8_vectorwise_dequant(DType out_dtype, const int8_t* codes, const float* row_stats, int64_t rows,
                             int64_t cols, void* out);

// out[i] = the GPU's approximate reciprocal of x[i] (rcp.approx.ftz.f32, what
// quant/reciprocal.h reproduces on the CPU); for its tests.
void reciprocal_approx(const float* x, int64_t n, float* out);

}  // namespace lowbit::quant::cuda
