// Raw-pointer CPU kernels of the blockwise formats, for code that fuses
// dequantization into its own loops (CPU GEMV, optimizers) and for the op
// layer (blockwise.h, int8.h), which validates tensors and calls these.
//
// All pointers are host memory; element counts and indices are in elements of
// the original (unpacked) tensor. The kernels are vectorized and spread over
// lowbit's thread pool; results are bit-identical to the scalar reference and
// to bitsandbytes. T is float, f16 or bf16. Nothing here validates arguments:
// block sizes must be valid for the format (formats.h).
#pragma once

#include <cstdint>

#include "lowbit/core/half.h"
#include "lowbit/quant/formats.h"

namespace lowbit::quant::cpu {

// --- Scalar building blocks -------------------------------------------------

// The 16 dequantization values of NF4 or FP4, indexed by the 4-bit code
// (for FP4, code 8 is -0.0 as bitsandbytes' kernel produces it).
const float* lut_4bit(QuantType type);
// Code of one value already scaled by 1/absmax (bitsandbytes' dQuantizeNF4 /
// dQuantizeFP4 decision trees; NaN gives code 0).
uint8_t quantize_nf4_scaled(float x);
uint8_t quantize_fp4_scaled(float x);
// Nearest entry of a sorted 256-value map (bitsandbytes' dQuantize<0>: a
// 7-step binary search, then the nearer neighbour; a value exactly on a
// midpoint keeps the last search pivot). NaN gives code 0.
uint8_t quantize_dynamic_scaled(const float* code, float x);

// --- 4-bit NF4 / FP4 ----------------------------------------------------------

// packed: ceil(n/2) bytes, the even element in the high nibble; absmax: one
// f32 per block of `blocksize` elements.
template <typename T>
void quantize_4bit(const T* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax);
template <typename T>
void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, QuantType type, int blocksize, T* out);
// Dequantizes elements [first, first + count) to f32 (any `first`, even or
// odd): row r of a 4-bit [rows, cols] weight is first = r * cols, count = cols.
// Runs on the calling thread only, so GEMV code can call it per row from
// its own parallel_for.
void dequantize_4bit_range_f32(const uint8_t* packed, const float* absmax, QuantType type, int blocksize,
                               int64_t first, int64_t count, float* out);

// --- Dynamic 8-bit ------------------------------------------------------------

// codes: n bytes; absmax: one f32 per block; code: the 256-value map.
template <typename T>
void quantize_dynamic8(const T* x, int64_t n, const float* code, int blocksize, uint8_t* codes, float* absmax);
template <typename T>
void dequantize_dynamic8(const uint8_t* codes, const float* absmax, const float* code, int64_t n, int blocksize,
                         T* out);

// --- Double quantization of absmax ------------------------------------------

// out[i] = code[q[i]] * nested_absmax[i / nested_blocksize] + offset, in f32
// (what bitsandbytes computes before a nested dequantization).
void dequantize_nested_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* code,
                              int64_t blocks, int nested_blocksize, float offset, float* out);
// offset = mean(absmax) (f32, correctly rounded mean), then (absmax - offset)
// quantized with `code` in blocks of nested_blocksize: qabsmax [blocks],
// nested_absmax [ceil(blocks / nested_blocksize)]. Returns the offset.
float quantize_nested_absmax(const float* absmax, int64_t blocks, const float* code, int nested_blocksize,
                             uint8_t* qabsmax, float* nested_absmax);

// --- LLM.int8 -----------------------------------------------------------------

// Row absmax (ignoring |a| >= threshold when threshold > 0) and codes
// rint(a * 127 / absmax); values >= threshold get code 0. Does not zero whole
// outlier columns (int8.h's int8_vectorwise_quant does that).
template <typename T>
void int8_vectorwise_quant(const T* a, int64_t rows, int64_t cols, float threshold, int8_t* codes, float* row_stats);
// out = code * row_stat * (1/127), as bitsandbytes computes it.
template <typename T>
void int8_vectorwise_dequant(const int8_t* codes, const float* row_stats, int64_t rows, int64_t cols, T* out);

}  // namespace lowbit::quant::cpu
