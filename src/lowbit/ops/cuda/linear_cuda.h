// CUDA bodies of the linear ops (include/lowbit/ops/linear.h) and the raw
// device-pointer kernels behind them, which benchmarks call directly.
// Work is queued on `stream` (nullptr: the default stream).
#pragma once

#include <cstdint>

#include "lowbit/core/dtype.h"
#include "lowbit/ops/linear.h"

namespace lowbit::ops::cuda {

// A blockwise 4-bit weight [n, k] (out x in) in device memory. The absmax is
// either f32 per block (`absmax`) or double-quantized (`qabsmax` u8 codes of
// (absmax - offset) in the 256-value `nested_code` map, one `nested_absmax`
// scale per `nested_blocksize` codes), decoded inside the kernels.
struct Packed4bit {
  const uint8_t* packed = nullptr;  // two codes a byte, first element in the high nibble
  const float* code = nullptr;      // f32 [16]
  const float* absmax = nullptr;
  const uint8_t* qabsmax = nullptr;
  const float* nested_absmax = nullptr;
  const float* nested_code = nullptr;  // f32 [256]
  float nested_offset = 0.0f;
  int nested_blocksize = 256;
  // A stacked weight's later parts (Blockwise4bitWeight::Nested): part i + 1
  // starts at nested block nested_part_start[i] (unused: UINT32_MAX) and adds
  // nested_part_offset[i] instead of nested_offset. Parts are whole rows (a
  // kernel may take a row's offset once).
  static constexpr int kMaxNestedParts = 4;
  uint32_t nested_part_start[kMaxNestedParts - 1] = {UINT32_MAX, UINT32_MAX, UINT32_MAX};
  float nested_part_offset[kMaxNestedParts - 1] = {};
  int blocksize = 64;
  int64_t n = 0, k = 0;
  DType weight_dtype = DType::BF16;  // dtype the weight dequantizes to
};

// out[m, n] = x[m, k] W^T (+ bias[n]) for bf16/f16 x, out, bias. Any m, n, k.
// The packed weight is read once by a CUDA-core GEMV (m = 1), a tensor-core
// kernel (m <= 16), a tiled tensor-core GEMM (m <= 96, and 9-16 rows on
// large weights) or, on Hopper, a wgmma GEMM (larger batches) where the shape
// allows (power-of-two blocksize; k a multiple of 32, 128, 32 and 64
// respectively; a wide-batch kernel for 17-64 rows stays as a fallback); other
// cases dequantize to x's dtype and call cuBLAS
// (src/lowbit/ops/cuda/gemm_4bit_kernels.h has the conditions).
void gemm_4bit(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out,
               void* stream = nullptr);
// Which kernel gemm_4bit runs. kAuto: chosen by batch and shape; the others
// force one where the shape allows it (benchmarks and tests compare them).
enum class Gemm4bitPath { kAuto, kGemv, kMma, kMmaWide, kDequantize, kLarge, kWgmma, kCluster };
// split_k: the fused kernels' k slices per row tile (a power of two; 0: chosen
// from the shape).
void set_gemm_4bit_path(Gemm4bitPath path, int split_k = 0);
// The kernel gemm_4bit takes for these arguments under the current setting.
Gemm4bitPath gemm_4bit_path(DType dtype, const Packed4bit& w, int64_t m, const void* x);
// Weight values rounded to weight_dtype, then to out_dtype (bitsandbytes'
// dequantize + cast), [n, k] row-major.
void dequantize_4bit_weight(DType out_dtype, const Packed4bit& w, void* out, void* stream = nullptr);
// Dense out[m, n] = x[m, k] w[n, k]^T (+ bias) through cuBLAS, f32 accumulation.
void gemm_dense(DType dtype, const void* x, int64_t m, const void* w, int64_t n, int64_t k, const void* bias,
                void* out, void* stream = nullptr);

// LLM.int8: out[m, n] from x[m, k] (f32/bf16/f16) and the int8 weight
// w[n, k] with its per-row absmax `scb`; threshold > 0 takes the outlier
// columns through a 16-bit product (ops::linear_int8 states the numerics).
void gemm_int8(DType dtype, const void* x, int64_t m, const int8_t* w, const float* scb, int64_t n, int64_t k,
               DType bias_dtype, const void* bias, float threshold, void* out, void* stream = nullptr);

// Tensor-level bodies called by ops/linear.cc for CUDA tensors.
void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out);
void linear_4bit(const Tensor& x, const Blockwise4bitWeight& w, const Tensor& bias, Tensor& out);
void linear_int8(const Tensor& x, const Tensor& codes, const Tensor& scb, const Tensor& bias, float threshold,
                 Tensor& out);
void dequantize_4bit_weight(const Blockwise4bitWeight& w, Tensor& out);
bool linear_4bit_dequantizes(int64_t rows, DType dtype, const Blockwise4bitWeight& w);
// ops::linear_4bit_fused as one kernel (linear_4bit_fuses: bf16/f16
// throughout, tensors on one device; one row: what the GEMV's staged row
// takes; more rows: a plain input and a SwiGLU output where the wgmma GEMM
// takes the rows).
bool linear_4bit_fuses(const Tensor& src, const Blockwise4bitWeight& w, const Tensor& bias, const LinearFusion& f,
                       const Tensor& out);
void linear_4bit_fused(const Tensor& src, const Blockwise4bitWeight& w, const Tensor& bias, const LinearFusion& f,
                       Tensor& out);

}  // namespace lowbit::ops::cuda
