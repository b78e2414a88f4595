// LLM.int8 for five or more activation rows: a tensor-core int8 GEMM whose
// epilogue applies the scales, the bias and the outlier columns' 16-bit product.
#pragma once

#include <cstdint>

#include "lowbit/core/dtype.h"

namespace lowbit::ops::cuda {

// What the row quantization (linear_int8_cuda.cu) hands the GEMM, all on the device.
struct Int8Activations {
  const void* x = nullptr;             // [m, k] in x's dtype (the outlier columns' values come from here)
  const int8_t* codes = nullptr;       // [m, k]; a row's own outliers are 0, other rows' outlier columns are not
  const float* row_stats = nullptr;    // [m] absmax over |x| < threshold
  const int32_t* outlier_count = nullptr;  // nullptr: threshold 0
  const int32_t* outlier_cols = nullptr;   // [count] ascending
  const float* outlier_product = nullptr;  // [m, n], from int8_outlier_product when count > kSummedOutliers
};

// Up to this many outlier columns the GEMM's epilogue sums their product
// itself, exactly in the CPU's order; more take int8_outlier_product.
inline constexpr int32_t kSummedOutliers = 64;

// When the count exceeds kSummedOutliers (read on the device):
// product[m, n] = the outlier columns' 16-bit product (f16 x f16 on the
// tensor cores, f32 sums), and those columns' codes zeroed. Otherwise, given
// x_cols / w_cols (Int8OutlierTerms' layout, for the wgmma GEMM's epilogue),
// the columns' codes zeroed and their values gathered there (w_cols may be
// null: the GEMM then takes the weights from its tiles); without them,
// nothing (the kernel returns at once).
void int8_outlier_product(DType dtype, const Int8Activations& a, int64_t m, const int8_t* w, const float* scb,
                          int64_t n, int64_t k, int8_t* codes, float* product, void* stream,
                          float* x_cols = nullptr, float* w_cols = nullptr);

// True when gemm_int8_tiled can run these operands: k % 16 == 0 and 16-byte
// aligned codes and weight rows (the tiles are loaded 16 bytes at a time).
bool gemm_int8_tiled_supports(int64_t k, const void* codes, const int8_t* w);

// out[m, n] = LLM.int8(x, w): the int8 product of codes and w (minus the
// outlier columns' share), f16(fma(acc * row_stat * SCB, 1/127^2, bias)),
// plus the outlier product rounded once more: up to kSummedOutliers columns
// summed in f32 column by column, as the CPU op does; beyond, a.outlier_product.
// Launches one kernel on `stream`; no host sync.
void gemm_int8_tiled(DType dtype, const Int8Activations& a, int64_t m, const int8_t* w, const float* scb, int64_t n,
                     int64_t k, DType bias_dtype, const void* bias, void* out, void* stream);

// The outlier columns' 16-bit product as the wgmma GEMM's epilogue takes it
// (all on the device; count null at threshold 0): up to kSummedOutliers
// columns it sums x_cols[token][o] * w_cols[o][row] itself, in the CPU's
// order; more come as `product` [m, n] (int8_outlier_product).
struct Int8OutlierTerms {
  const int32_t* count = nullptr;
  const float* x_cols = nullptr;   // [m, kSummedOutliers]: x's outlier columns rounded to f16
  const float* w_cols = nullptr;   // [kSummedOutliers, n]: their weights dequantized, rounded to f16
  const float* product = nullptr;  // [m, n]
  // Without w_cols, the wgmma GEMM takes the columns' weight codes from its
  // own weight tiles as they pass through shared memory (cols: the ordered
  // column list), instead of a scattered gather of one byte a weight row.
  const int32_t* cols = nullptr;
};

// Hopper (gemm_int8_wgmma_sm90a.cu): out[m, n] = f16(fma(acc * row_stat *
// SCB, 1/127^2, bias)) from the row quantization's codes on wgmma, plus,
// when *outliers.count > 0, the outlier product added and rounded to f16
// once more; stored in x's dtype. The codes of outlier columns must be
// zero. Needs compute capability 9.0, k % 16 == 0 and 16-byte aligned codes
// and weight. No host sync.
bool gemm_int8_wgmma_supports(int64_t k, const void* codes, const int8_t* w);
void gemm_int8_wgmma(DType dtype, const int8_t* codes, const float* row_stats, int64_t m, const int8_t* w,
                     const float* scb, int64_t n, int64_t k, DType bias_dtype, const void* bias,
                     const Int8OutlierTerms& outliers, void* out, void* stream);
// True when gemm_int8_wgmma splits k for this shape: its split epilogue then
// reads the outlier columns' weights from w_cols (gathered beforehand).
bool gemm_int8_wgmma_splits_k(int64_t m, int64_t n, int64_t k, bool sparse);
// Benchmarks and tests: tokens a tile (64, 96 or 128), k slices and weight
// rows a tile (128 or 192); 0 picks by shape.
void set_gemm_int8_wgmma_tokens(int tokens, int split_k = 0, int rows = 0);

// Which GEMM path gemm_int8 takes for m > kGemvInt8MaxRows (benchmarks compare
// them): kAuto picks by threshold and rows (linear_int8_cuda.cu says why);
// kTiled takes gemm_int8_tiled wherever it can load the operands; kWgmma
// takes gemm_int8_wgmma where it runs.
enum class GemmInt8Path { kAuto, kTiled, kCublas, kWgmma };
void set_gemm_int8_path(GemmInt8Path path);
GemmInt8Path gemm_int8_path();

}  // namespace lowbit::ops::cuda
