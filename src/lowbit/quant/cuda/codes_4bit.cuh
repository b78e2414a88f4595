// bitsandbytes' dQuantizeNF4 / dQuantizeFP4 without branches, for the CUDA
// kernels. Their decision trees compare with strict `>` against sorted
// thresholds, so the code they reach is the number of thresholds below x
// (NF4), or that count mapped through FP4's code order plus the sign bit. A
// warp's lanes then run the same instructions whatever their values; NaN
// passes no comparison and codes 0 as in the trees.
#pragma once

#include <cstdint>

namespace lowbit::quant::cuda {

__device__ __forceinline__ uint32_t nf4_code(float x) {
  // Midpoints between neighbouring NF4 values, as bitsandbytes' f32 literals.
  constexpr float kThresholds[15] = {
      -0.8480964004993439f, -0.6106329262256622f,  -0.4599952697753906f,  -0.33967943489551544f,
      -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
      0.1202552504837513f,  0.2035212516784668f,    0.2920137718319893f,    0.3893125355243683f,
      0.5016634166240692f,  0.6427869200706482f,    0.8614784181118011f};
  uint32_t code = 0;
#pragma unroll
  for (int i = 0; i < 15; ++i) code += x > kThresholds[i] ? 1u : 0u;
  return code;
}

__device__ __forceinline__ uint32_t fp4_code(float x) {
  constexpr float kThresholds[7] = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                    0.4166667f,  0.583333f,  0.8333333f};
  const float a = fabsf(x);
  uint32_t rank = 0;
#pragma unroll
  for (int i = 0; i < 7; ++i) rank += a > kThresholds[i] ? 1u : 0u;
  // Magnitude codes in threshold order: 0, 1, 6, 7, 4, 5, 2, 3 (a nibble each).
  return (0x32547610u >> (4 * rank) & 0xfu) | (x < 0.0f ? 0x8u : 0u);
}

}  // namespace lowbit::quant::cuda
