// Scalar reference of LLM.int8 vector-wise quantization (bitsandbytes'
// kInt8VectorQuant) and dequantization.
#include <cmath>

#include "quant/cpu/reference.h"
#include "quant/cpu/scalar.h"
#include "quant/reciprocal.h"

namespace lowbit::quant::ref {

template <typename T>
void int8_vectorwise_quant(const T* a, int64_t rows, int64_t cols, float threshold, int8_t* codes, float* row_stats) {
  const bool sparse = threshold > 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = a + r * cols;
    float m = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::fabs(to_f32(row[c]));
      m = std::fmax(m, sparse ? (v < threshold ? v : m) : v);
    }
    row_stats[r] = m;
    // bitsandbytes: __fdividef(127, absmax) = 127 * the GPU's reciprocal.
    const float scale = 127.0f * gpu_reciprocal(m);
    for (int64_t c = 0; c < cols; ++c) {
      const float v = to_f32(row[c]);
      codes[r * cols + c] = (!sparse || std::fabs(v) < threshold) ? scalar::float_to_int8_rn(v * scale) : int8_t(0);
    }
  }
}

template <typename T>
void int8_vectorwise_dequant(const int8_t* codes, const float* row_stats, int64_t rows, int64_t cols, T* out) {
  // bitsandbytes multiplies by 1/127 rounded to f32 (7.874015718698502e-3).
  constexpr float kInv127 = 7.874015718698502e-3f;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out[r * cols + c] = from_f32<T>(float(codes[r * cols + c]) * row_stats[r] * kInv127);
}

#define INSTANTIATE(T)                                                                            \
  template void int8_vectorwise_quant<T>(const T*, int64_t, int64_t, float, int8_t*, float*);   \
  template void int8_vectorwise_dequant<T>(const int8_t*, const float*, int64_t, int64_t, T*);
LOWBIT_QUANT_FOR_FLOAT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace lowbit::quant::ref
