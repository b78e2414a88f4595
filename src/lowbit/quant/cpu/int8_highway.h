// Entry points of the vectorized LLM.int8 row kernels (int8_highway.cc),
// dispatching to the best instruction set of the running CPU.
// Single-threaded: int8_cpu.cc spreads rows over the thread pool.
#pragma once

#include <cstdint>

#include "lowbit/core/half.h"

namespace lowbit::quant::cpu {

void int8_quant_rows(const float* a, int64_t rows, int64_t cols, float thr, int8_t* codes, float* stats);
void int8_quant_rows(const f16* a, int64_t rows, int64_t cols, float thr, int8_t* codes, float* stats);
void int8_quant_rows(const bf16* a, int64_t rows, int64_t cols, float thr, int8_t* codes, float* stats);
void int8_dequant_rows(const int8_t* codes, const float* stats, int64_t rows, int64_t cols, float* out);
void int8_dequant_rows(const int8_t* codes, const float* stats, int64_t rows, int64_t cols, f16* out);
void int8_dequant_rows(const int8_t* codes, const float* stats, int64_t rows, int64_t cols, bf16* out);

}  // namespace lowbit::quant::cpu
