// LLM.int8(): vector-wise (row) int8 quantization with outlier columns, and
// the row-wise int8 weight format (int8 rows + SCB).
#pragma once

#include "lowbit/core/tensor.h"

namespace lowbit::quant {

struct Int8Rows {
  Tensor codes;         // i8 [rows, cols]
  Tensor row_stats;     // f32 [rows]: absmax of each row (outlier columns excluded when threshold > 0)
  Tensor outlier_cols;  // i32 [k]: columns with any |value| >= threshold (empty when threshold == 0)
};

// bitsandbytes' int8_vectorwise_quant(A, threshold) on a 2-D f16/bf16/f32 tensor.
Int8Rows int8_vectorwise_quant(const Tensor& a, float threshold = 0.0f);
// codes * row_stats / 127 as f32 (or `out_dtype`).
Tensor int8_vectorwise_dequant(const Tensor& codes, const Tensor& row_stats, DType out_dtype = DType::F32);

// The LLM.int8 weight as transformers saves it: `weight` (i8), `SCB` (f32 per
// output row), `weight_format` (u8 scalar, 0 = row-major).
struct Int8RowwiseWeight {
  Tensor codes;  // i8 [out, in]
  Tensor scb;    // f32 [out]
};
Int8RowwiseWeight quantize_int8_rowwise(const Tensor& weight);

}  // namespace lowbit::quant
