// 4-bit NF4/FP4 blockwise kernels on the CPU.
#include <array>

#include "lowbit/quant/kernels.h"
#include "quant/cpu/block_parallel.h"
#include "quant/cpu/blockwise4_highway.h"
#include "quant/cpu/reference.h"
#include "quant/cpu/scalar.h"

namespace lowbit::quant::cpu {
namespace {

// FP4 dequantizes as lut[code & 7] * sign in bitsandbytes, so code 8 is -0.0
// (the stored quant_map holds +0.0 there; only the sign of zero differs).
std::array<float, 16> fp4_dequant_lut() {
  std::array<float, 16> lut = fp4_code();
  lut[8] = -0.0f;
  return lut;
}

}  // namespace

const float* lut_4bit(QuantType type) {
  static const std::array<float, 16> fp4 = fp4_dequant_lut();
  return type == QuantType::NF4 ? nf4_code().data() : fp4.data();
}

uint8_t quantize_nf4_scaled(float x) { return scalar::quantize_nf4(x); }
uint8_t quantize_fp4_scaled(float x) { return scalar::quantize_fp4(x); }

template <typename T>
void quantize_4bit(const T* x, int64_t n, QuantType type, int blocksize, uint8_t* packed, float* absmax) {
  for_block_runs(n, blocksize, [&](int64_t lo, int64_t hi, int64_t b) {
    quantize_4bit_run(x + lo, hi - lo, type, blocksize, packed + lo / 2, absmax + b);
  });
}

template <typename T>
void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, QuantType type, int blocksize, T* out) {
  for_block_runs(n, blocksize, [&](int64_t lo, int64_t hi, int64_t b) {
    dequantize_4bit_range(packed, absmax, type, blocksize, lo, hi - lo, out + lo);
  });
}

void dequantize_4bit_range_f32(const uint8_t* packed, const float* absmax, QuantType type, int blocksize,
                               int64_t first, int64_t count, float* out) {
  dequantize_4bit_range(packed, absmax, type, blocksize, first, count, out);
}

#define INSTANTIATE(T)                                                                             \
  template void quantize_4bit<T>(const T*, int64_t, QuantType, int, uint8_t*, float*);            \
  template void dequantize_4bit<T>(const uint8_t*, const float*, int64_t, QuantType, int, T*);
LOWBIT_QUANT_FOR_FLOAT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace lowbit::quant::cpu
