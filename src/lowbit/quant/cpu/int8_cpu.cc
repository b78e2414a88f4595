// LLM.int8 vector-wise kernels on the CPU: rows are independent, so they are
// spread over the thread pool a run of rows at a time.
#include <algorithm>

#include "lowbit/core/thread_pool.h"
#include "lowbit/quant/kernels.h"
#include "quant/cpu/int8_highway.h"
#include "quant/cpu/reference.h"

namespace lowbit::quant::cpu {
namespace {

size_t rows_per_chunk(int64_t cols) { return size_t(std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(cols, 1))); }

}  // namespace

template <typename T>
void int8_vectorwise_quant(const T* a, int64_t rows, int64_t cols, float threshold, int8_t* codes, float* row_stats) {
  parallel_for(0, size_t(rows), rows_per_chunk(cols), [&](size_t r0, size_t r1) {
    int8_quant_rows(a + int64_t(r0) * cols, int64_t(r1 - r0), cols, threshold, codes + int64_t(r0) * cols, row_stats + r0);
  });
}

template <typename T>
void int8_vectorwise_dequant(const int8_t* codes, const float* row_stats, int64_t rows, int64_t cols, T* out) {
  parallel_for(0, size_t(rows), rows_per_chunk(cols), [&](size_t r0, size_t r1) {
    int8_dequant_rows(codes + int64_t(r0) * cols, row_stats + r0, int64_t(r1 - r0), cols, out + int64_t(r0) * cols);
  });
}

#define INSTANTIATE(T)                                                                            \
  template void int8_vectorwise_quant<T>(const T*, int64_t, int64_t, float, int8_t*, float*);   \
  template void int8_vectorwise_dequant<T>(const int8_t*, const float*, int64_t, int64_t, T*);
LOWBIT_QUANT_FOR_FLOAT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace lowbit::quant::cpu
