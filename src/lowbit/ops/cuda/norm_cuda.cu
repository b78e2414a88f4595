// RMSNorm on the GPU: one block a row. The sum of squares is reduced in f32
// (per-thread partial sums, then the block), x * rsqrt(mean + eps) is rounded
// to x's dtype and multiplied by the f32 value of the weight, rounded again:
// the CPU body's two roundings. Traffic: x read twice (the second read from
// L1/L2), out written once. add_rms_norm first stores x + residual (rounded)
// and normalizes that: the residual add of a decoder block and the next norm
// in one launch.
#include "lowbit/core/tensor.h"
#include "ops/cuda/ops_cuda.h"
#include "ops/cuda/reduce_cuda.h"

namespace lowbit::ops::cuda {
namespace {

// residual == nullptr: plain RMSNorm of x. Otherwise x += residual first
// (each thread re-reads only the elements it wrote).
template <typename T, typename W>
__global__ void __launch_bounds__(256) rms_norm_kernel(T* __restrict__ x, const T* __restrict__ residual,
                                                       const W* __restrict__ weight, float eps, T* __restrict__ out,
                                                       int64_t dim) {
  __shared__ float scratch[32];
  T* xr = x + int64_t(blockIdx.x) * dim;
  T* orow = out + int64_t(blockIdx.x) * dim;
  float sum = 0.0f;
  if (residual) {
    const T* rr = residual + int64_t(blockIdx.x) * dim;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const T stored = from_float<T>(to_float(xr[i]) + to_float(rr[i]));
      xr[i] = stored;
      const float v = to_float(stored);
      sum = fmaf(v, v, sum);
    }
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const float v = to_float(xr[i]);
      sum = fmaf(v, v, sum);
    }
  }
  sum = block_reduce<false>(sum, scratch);
  const float inv = 1.0f / sqrtf(sum / float(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    orow[i] = from_float<T>(__fmul_rn(to_float(weight[i]), round_to<T>(__fmul_rn(to_float(xr[i]), inv))));
}

void launch_rms_norm(const Tensor& x, const Tensor* residual, const Tensor& weight, float eps, Tensor& out) {
  use_device(x.device().index);
  const int64_t rows = x.dim(0), dim = x.dim(1);
  if (rows == 0) return;
  const int threads = dim >= 1024 ? 256 : dim >= 256 ? 128 : 64;
  dispatch_device_float(x.dtype(), "ops::rms_norm", [&](auto xt) {
    using T = decltype(xt);
    dispatch_device_float(weight.dtype(), "ops::rms_norm (weight)", [&](auto wt) {
      using W = decltype(wt);
      rms_norm_kernel<T, W><<<unsigned(rows), threads, 0, current_stream()>>>(
          static_cast<T*>(x.raw_data()), residual ? static_cast<const T*>(residual->raw_data()) : nullptr,
          static_cast<const W*>(weight.raw_data()), eps, static_cast<T*>(out.raw_data()), dim);
    });
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

}  // namespace

// x is only read here (the kernel writes x only when given a residual).
void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  launch_rms_norm(x, nullptr, weight, eps, out);
}

void add_rms_norm(Tensor& x, const Tensor& residual, const Tensor& weight, float eps, Tensor& out) {
  launch_rms_norm(x, &residual, weight, eps, out);
}

}  // namespace lowbit::ops::cuda
