// Scalar reference of dynamic 8-bit blockwise quantization (bitsandbytes'
// quantize_blockwise / dequantize_blockwise) and of the double quantization
// of absmax values that both 4-bit and 8-bit formats use.
#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/cpu/reference.h"
#include "quant/cpu/scalar.h"
#include "quant/reciprocal.h"

namespace lowbit::quant::ref {

template <typename T>
void quantize_dynamic8(const T* x, int64_t n, const float* code, int blocksize, uint8_t* codes, float* absmax) {
  for (int64_t lo = 0, b = 0; lo < n; lo += blocksize, ++b) {
    const int64_t hi = std::min<int64_t>(n, lo + blocksize);
    float m = scalar::block_absmax_start(hi - lo < blocksize);
    for (int64_t i = lo; i < hi; ++i) m = std::fmax(m, std::fabs(to_f32(x[i])));
    absmax[b] = m;
    const float scale = gpu_reciprocal(m);
    for (int64_t i = lo; i < hi; ++i) codes[i] = scalar::quantize_dynamic(code, to_f32(x[i]) * scale);
  }
}

template <typename T>
void dequantize_dynamic8(const uint8_t* codes, const float* absmax, const float* code, int64_t n, int blocksize,
                         T* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = from_f32<T>(code[codes[i]] * absmax[i / blocksize]);
}

void dequantize_nested_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* code,
                              int64_t blocks, int nested_blocksize, float offset, float* out) {
  for (int64_t i = 0; i < blocks; ++i) out[i] = code[qabsmax[i]] * nested_absmax[i / nested_blocksize] + offset;
}

float quantize_nested_absmax(const float* absmax, int64_t blocks, const float* code, int nested_blocksize,
                             uint8_t* qabsmax, float* nested_absmax) {
  if (blocks == 0) return 0.0f;
  const float offset = scalar::torch_cuda_mean(absmax, blocks);
  std::vector<float> centered(static_cast<size_t>(blocks));
  for (int64_t i = 0; i < blocks; ++i) centered[size_t(i)] = absmax[i] - offset;
  quantize_dynamic8(centered.data(), blocks, code, nested_blocksize, qabsmax, nested_absmax);
  return offset;
}

#define INSTANTIATE(T)                                                                                   \
  template void quantize_dynamic8<T>(const T*, int64_t, const float*, int, uint8_t*, float*);          \
  template void dequantize_dynamic8<T>(const uint8_t*, const float*, const float*, int64_t, int, T*);
LOWBIT_QUANT_FOR_FLOAT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace lowbit::quant::ref
