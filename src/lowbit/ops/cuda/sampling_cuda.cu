// Token choice on the GPU: one block a row reduces (value, column) pairs.
#include <cmath>

#include "lowbit/core/tensor.h"
#include "ops/cuda/ops_cuda.h"
#include "ops/cuda/reduce_cuda.h"

namespace lowbit::ops::cuda {
namespace {

constexpr int kArgmaxThreads = 1024;

// The better of two candidates: larger value, then lower column. A NaN
// anywhere wins (column -1 marks it) so that the row reports it.
struct Best {
  float value;
  int32_t column;
};

__device__ __forceinline__ Best better(Best a, Best b) {
  if (a.column < 0) return a;
  if (b.column < 0) return b;
  if (b.value > a.value || (b.value == a.value && b.column < a.column)) return b;
  return a;
}

template <typename T>
__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(const T* x, int64_t cols, int32_t* out) {
  __shared__ Best warp_best[32];
  const T* row = x + int64_t(blockIdx.x) * cols;
  Best best{-INFINITY, int32_t(cols)};  // column cols: "none yet", loses every tie
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = to_float(row[i]);
    best = better(best, Best{v, isnan(v) ? -1 : int32_t(i)});
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Best other{__shfl_xor_sync(0xffffffffu, best.value, o), __shfl_xor_sync(0xffffffffu, best.column, o)};
    best = better(best, other);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_best[warp] = best;
  __syncthreads();
  if (warp != 0) return;
  best = lane < int(blockDim.x / 32) ? warp_best[lane] : Best{-INFINITY, int32_t(cols)};
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Best other{__shfl_xor_sync(0xffffffffu, best.value, o), __shfl_xor_sync(0xffffffffu, best.column, o)};
    best = better(best, other);
  }
  // All -inf: column 0, as the host's max_element.
  if (lane == 0) out[blockIdx.x] = best.column == int32_t(cols) ? 0 : best.column;
}

}  // namespace

void argmax(const Tensor& x, Tensor& out) {
  use_device(x.device().index);
  const int64_t rows = x.dim(0), cols = x.dim(1);
  if (rows == 0) return;
  dispatch_device_float(x.dtype(), "ops::argmax", [&](auto tag) {
    using T = decltype(tag);
    argmax_kernel<T><<<unsigned(rows), kArgmaxThreads, 0, current_stream()>>>(static_cast<const T*>(x.raw_data()),
                                                                             cols, out.data<int32_t>());
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

}  // namespace lowbit::ops::cuda
