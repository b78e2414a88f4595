// What RMSNorm's CUDA kernels (norm_cuda.cu) and the kernels that normalize
// their own input (the 4-bit GEMV's RMSNorm prologue) share, so that both give
// the same bits: how a row's sum of squares is cut over threads, and the
// inverse RMS from it. Include from .cu only.
#pragma once

#include <cstdint>

namespace lowbit::ops::cuda {

// Threads of a row's sum of squares: thread t adds x[t + j * threads]^2 for
// j = 0, 1, ... in order (fmaf), then the block sums the threads' partials
// (block_reduce: each warp's butterfly, then the warps' sums in a warp).
// `per` > 0: rows of up to per * 1024 elements, held in registers by the row
// kernel; 0: longer rows, the looped kernel.
struct RmsNormLayout {
  int per;
  int threads;
};
inline RmsNormLayout rms_norm_layout(int64_t dim) {
  const int per = dim <= 4 * 1024 ? 4 : dim <= 8 * 1024 ? 8 : dim <= 16 * 1024 ? 16 : 0;
  if (per) return {per, int((dim + per - 1) / per + 31) / 32 * 32};
  return {0, dim >= 1024 ? 256 : dim >= 256 ? 128 : 64};
}

// 1 / sqrt(mean of squares + eps), as the CPU body computes it.
__device__ __forceinline__ float rms_inverse(float sum_squares, int64_t dim, float eps) {
  return 1.0f / sqrtf(sum_squares / float(dim) + eps);
}

}  // namespace lowbit::ops::cuda
