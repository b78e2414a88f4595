// Scalar reference of 4-bit NF4/FP4 blockwise quantization (bitsandbytes'
// kQuantizeBlockwise / kDequantizeBlockwise, 4-bit paths).
#include <algorithm>
#include <cmath>

#include "lowbit/quant/kernels.h"
#include "quant/cpu/reference.h"
#include "quant/cpu/scalar.h"
#include "quant/reciprocal.h"

namespace lowbit::quant::ref {

template <typename T>
void quantize_4bit(const T* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax) {
  auto code_of = type == QuantType::NF4 ? scalar::quantize_nf4 : scalar::quantize_fp4;
  for (int64_t lo = 0, b = 0; lo < n; lo += blocksize, ++b) {
    const int64_t hi = std::min<int64_t>(n, lo + blocksize);
    float m = scalar::block_absmax_start(hi - lo < blocksize);
    for (int64_t i = lo; i < hi; ++i) m = std::fmax(m, std::fabs(to_f32(x[i])));
    absmax[b] = m;
    // The kernel multiplies by the GPU's reciprocal rather than dividing.
    const float scale = gpu_reciprocal(m);
    for (int64_t i = lo; i < hi; i += 2) {
      const uint8_t first = code_of(to_f32(x[i]) * scale);
      // The padding element of an odd-length tensor is a zero, quantized too.
      const uint8_t second = code_of((i + 1 < hi ? to_f32(x[i + 1]) : 0.0f) * scale);
      packed[i / 2] = uint8_t(first << 4 | second);
    }
  }
}

template <typename T>
void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, QuantType type, int blocksize, T* out) {
  const float* lut = cpu::lut_4bit(type);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t byte = packed[i / 2];
    const uint8_t q = (i & 1) ? (byte & 0x0f) : (byte >> 4);
    out[i] = from_f32<T>(lut[q] * absmax[i / blocksize]);
  }
}

#define INSTANTIATE(T)                                                                             \
  template void quantize_4bit<T>(const T*, int64_t, QuantType, int, uint8_t*, float*);            \
  template void dequantize_4bit<T>(const uint8_t*, const float*, int64_t, QuantType, int, T*);
LOWBIT_QUANT_FOR_FLOAT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace lowbit::quant::ref
