// LLM.int8's numerics shared by its CUDA kernels (the GEMV, the mma.sync and
// wgmma GEMMs, the outlier product, the cuBLAS path's epilogue):
// bitsandbytes' constants, the f16 rounding, an outlier column's weight, and
// the dequantization of an int32 sum as the CPU op computes it (int8_output: the wgmma GEMM's; the
// other epilogues spell out the same steps).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace lowbit::ops::cuda {

inline constexpr float kDequantScale = 6.200012e-05f;    // bitsandbytes' MM_DEQUANT_CONST
inline constexpr float kInv127 = 7.874015718698502e-3f;  // 1/127 as bitsandbytes writes it

__device__ __forceinline__ float round_f16(float v) { return __half2float(__float2half_rn(v)); }

// A weight code dequantized as bitsandbytes does for the 16-bit outlier
// product (code * SCB / 127, the two products rounded in this order); the
// callers round it to f16. (Any integer type: each caller's own conversion.)
template <typename Code>
__device__ __forceinline__ float outlier_weight(Code code, float scb) {
  return __fmul_rn(__fmul_rn(float(code), scb), kInv127);
}

// One output from its int32 sum: f16(fma(acc * row_stat * SCB, 1/127^2, b))
// with b the f16-rounded bias, then, with outlier columns, their 16-bit
// product `extra` added and rounded to f16 once more.
__device__ __forceinline__ float int8_output(int32_t acc, float row_stat, float scb, float b, bool add_extra,
                                             float extra) {
  const float scaled = __fmul_rn(__fmul_rn(float(acc), row_stat), scb);
  const float v = round_f16(fmaf(scaled, kDequantScale, b));
  return add_extra ? round_f16(__fadd_rn(v, extra)) : v;
}

}  // namespace lowbit::ops::cuda
