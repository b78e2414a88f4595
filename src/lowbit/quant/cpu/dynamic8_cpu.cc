// Dynamic 8-bit blockwise kernels and absmax double quantization on the CPU.
#include "lowbit/quant/kernels.h"
#include "quant/cpu/block_parallel.h"
#include "quant/cpu/reference.h"
#include "quant/cpu/scalar.h"

namespace lowbit::quant::cpu {

uint8_t quantize_dynamic_scaled(const float* code, float x) { return scalar::quantize_dynamic(code, x); }

template <typename T>
void quantize_dynamic8(const T* x, int64_t n, const float* code, int blocksize, uint8_t* codes, float* absmax) {
  for_block_runs(n, blocksize, [&](int64_t lo, int64_t hi, int64_t b) {
    ref::quantize_dynamic8(x + lo, hi - lo, code, blocksize, codes + lo, absmax + b);
  });
}

template <typename T>
void dequantize_dynamic8(const uint8_t* codes, const float* absmax, const float* code, int64_t n, int blocksize,
                         T* out) {
  for_block_runs(n, blocksize, [&](int64_t lo, int64_t hi, int64_t b) {
    ref::dequantize_dynamic8(codes + lo, absmax + b, code, hi - lo, blocksize, out + lo);
  });
}

void dequantize_nested_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* code,
                              int64_t blocks, int nested_blocksize, float offset, float* out) {
  ref::dequantize_nested_absmax(qabsmax, nested_absmax, code, blocks, nested_blocksize, offset, out);
}

float quantize_nested_absmax(const float* absmax, int64_t blocks, const float* code, int nested_blocksize,
                             uint8_t* qabsmax, float* nested_absmax) {
  return ref::quantize_nested_absmax(absmax, blocks, code, nested_blocksize, qabsmax, nested_absmax);
}

#define INSTANTIATE(T)                                                                                   \
  template void quantize_dynamic8<T>(const T*, int64_t, const float*, int, uint8_t*, float*);          \
  template void dequantize_dynamic8<T>(const uint8_t*, const float*, const float*, int64_t, int, T*);
LOWBIT_QUANT_FOR_FLOAT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace lowbit::quant::cpu
