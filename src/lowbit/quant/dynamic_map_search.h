// bitsandbytes' dQuantize<0>: the code of x in a sorted 256-entry dynamic
// map by binary search, ties to the lower code as its midpoints decide. One
// definition for the CPU ops and the CUDA kernels (the midpoints are a sum
// then a product, which neither compiler fuses, so both round alike).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LOWBIT_QUANT_HOST_DEVICE __host__ __device__
#else
#define LOWBIT_QUANT_HOST_DEVICE
#endif

namespace lowbit::quant {

LOWBIT_QUANT_HOST_DEVICE inline uint8_t quantize_dynamic(const float* code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upper_pivot == 255) upper = code[upper_pivot];
  if (lower_pivot == 0) lower = code[lower_pivot];
  if (x > val) {
    const float midpoint = (upper + val) * 0.5f;
    return uint8_t(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = (lower + val) * 0.5f;
  return uint8_t(x < midpoint ? lower_pivot : pivot);
}

}  // namespace lowbit::quant

#undef LOWBIT_QUANT_HOST_DEVICE
