// Block-wide reductions for the row kernels (norm, softmax) and launch
// helpers shared by the decoder ops' .cu files (include from .cu only).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "ops/cuda/cuda_common.h"

namespace lowbit::ops::cuda {

inline unsigned grid_for(int64_t items, int threads) { return unsigned((items + threads - 1) / threads); }

// The value of T nearest to v, back in f32: what storing an intermediate in a
// T tensor does (round to nearest even, as the CPU's round_to).
template <typename T> __device__ __forceinline__ float round_to(float v) { return to_float(from_float<T>(v)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (or max) over the block; every thread gets the result. `scratch` holds
// one float per warp; blockDim.x must be a multiple of 32.
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
  return kMax ? warp_max(v) : warp_sum(v);
}

}  // namespace lowbit::ops::cuda
