// LLM.int8 for the few rows of activations of decoding (m <= kGemvInt8MaxRows).
#pragma once

#include <cstdint>

#include "lowbit/core/dtype.h"

namespace lowbit::ops::cuda {

inline constexpr int64_t kGemvInt8MaxRows = 4;

// The arguments of gemm_int8 (linear_cuda.h). Runs and returns true when the
// shape and alignment suit the kernel (m <= kGemvInt8MaxRows, k % 16 == 0,
// 16-byte aligned x and w, m * k codes within its shared memory); returns
// false, having done nothing, otherwise.
bool gemv_int8(DType dtype, const void* x, int64_t m, const int8_t* w, const float* scb, int64_t n, int64_t k,
               DType bias_dtype, const void* bias, float threshold, void* out, void* stream);

}  // namespace lowbit::ops::cuda
