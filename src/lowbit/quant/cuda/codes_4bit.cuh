// bitsandbytes' dQuantizeNF4 / dQuantizeFP4 without branches, for the CUDA
// kernels. Their decision trees compare with strict `>` against sorted
// thresholds, so the code they reach is the number of thresholds below x
// (NF4), or that count mapped through FP4's code order plus the sign bit. A
// warp's lanes then run the same instructions whatever their values; NaN
// passes no comparison and codes 0 as in the trees.
#pragma once

#include <cstdint>

namespace lowbit::quant::cuda {

// Midpoints between neighbouring NF4 values, as bitsandbytes' f32 literals.
__device__ constexpr float kNF4Thresholds[15] = {
      -0.8480964004993439f, -0.6106329262256622f,  -0.4599952697753906f,  -0.33967943489551544f,
      -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
      0.1202552504837513f,  0.2035212516784668f,    0.2920137718319893f,    0.3893125355243683f,
      0.5016634166240692f,  0.6427869200706482f,    0.8614784181118011f};
__device__ constexpr float kFP4Thresholds[7] = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                                0.4166667f,  0.583333f,  0.8333333f};
// Magnitude codes in threshold order: 0, 1, 6, 7, 4, 5, 2, 3 (a nibble each).
constexpr uint32_t kFP4CodeOfRank = 0x32547610u;

__device__ __forceinline__ uint32_t nf4_code(float x) {
  uint32_t code = 0;
#pragma unroll
  for (int i = 0; i < 15; ++i) code += x > kNF4Thresholds[i] ? 1u : 0u;
  return code;
}

__device__ __forceinline__ uint32_t fp4_code(float x) {
  const float a = fabsf(x);
  uint32_t rank = 0;
#pragma unroll
  for (int i = 0; i < 7; ++i) rank += a > kFP4Thresholds[i] ? 1u : 0u;
  return (kFP4CodeOfRank >> (4 * rank) & 0xfu) | (x < 0.0f ? 0x8u : 0u);
}

// The same counts by a branchless binary search over the thresholds in shared
// memory (`nf4` 15 + padding, `fp4` 7 + padding): 4 (3) comparisons instead
// of 15 (7), for kernels bound by instruction issue. The 16 words sit in 16
// banks, so a warp's lookups never conflict.
__device__ __forceinline__ uint32_t nf4_code_search(float x, const float* nf4) {
  uint32_t c = x > nf4[7] ? 8u : 0u;
  c |= x > nf4[c + 3] ? 4u : 0u;
  c |= x > nf4[c + 1] ? 2u : 0u;
  return c | (x > nf4[c] ? 1u : 0u);
}

__device__ __forceinline__ uint32_t fp4_code_search(float x, const float* fp4) {
  const float a = fabsf(x);
  uint32_t r = a > fp4[3] ? 4u : 0u;
  r |= a > fp4[r + 1] ? 2u : 0u;
  r |= a > fp4[r] ? 1u : 0u;
  return (kFP4CodeOfRank >> (4 * r) & 0xfu) | (x < 0.0f ? 0x8u : 0u);
}

// Fills a kernel's shared tables (call from threads 0..15, then sync).
__device__ __forceinline__ void fill_threshold_tables(float* nf4, float* fp4, int i) {
  nf4[i] = i < 15 ? kNF4Thresholds[i] : __int_as_float(0x7f800000);
  fp4[i] = i < 7 ? kFP4Thresholds[i] : __int_as_float(0x7f800000);
}

}  // namespace lowbit::quant::cuda
