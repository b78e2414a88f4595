// RMSNorm on the GPU: one block a row (rows up to 16K elements in registers). The sum of squares is reduced in f32
// (per-thread partial sums, then the block), x * rsqrt(mean + eps) is rounded
// to x's dtype and multiplied by the f32 value of the weight, rounded again:
// the CPU body's two roundings. Traffic: x read twice (the second read from
// L1/L2), out written once. add_rms_norm first stores x + residual (rounded)
// and normalizes that: the residual add of a decoder block and the next norm
// in one launch.
#include "lowbit/core/tensor.h"
#include "ops/cuda/ops_cuda.h"
#include "ops/cuda/reduce_cuda.h"
#include "ops/cuda/rms_norm_cuda.h"

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
  const float inv = rms_inverse(sum, dim, eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    orow[i] = from_float<T>(__fmul_rn(to_float(weight[i]), round_to<T>(__fmul_rn(to_float(xr[i]), inv))));
}

// The same for rows of at most kPer * 1024 elements, held in registers: every
// load of a row is issued at once (thread t owns elements t + j * blockDim.x).
// A decoding step normalizes one row: the looped kernel above waits on its
// loads one iteration at a time (~15 us for 4096 elements on an H200), this
// one a few microseconds. Same arithmetic, same per-thread order of the sum.
template <typename T, typename W, int kPer>
__global__ void __launch_bounds__(1024) rms_norm_rows_kernel(T* __restrict__ x, const T* __restrict__ residual,
                                                             const W* __restrict__ weight, float eps,
                                                             T* __restrict__ out, int dim) {
  __shared__ float scratch[32];
  // The weight is constant: loaded while the previous kernel drains.
  float w[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    w[j] = i < dim ? to_float(weight[i]) : 0.0f;
  }
  wait_for_previous_grid();
  T* xr = x + int64_t(blockIdx.x) * dim;
  T* orow = out + int64_t(blockIdx.x) * dim;
  float v[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    v[j] = i < dim ? to_float(xr[i]) : 0.0f;
  }
  if (residual) {
    const T* rr = residual + int64_t(blockIdx.x) * dim;
    float r[kPer];
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = threadIdx.x + j * blockDim.x;
      r[j] = i < dim ? to_float(rr[i]) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = threadIdx.x + j * blockDim.x;
      const T stored = from_float<T>(v[j] + r[j]);
      if (i < dim) xr[i] = stored;
      v[j] = to_float(stored);
    }
  }
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) sum = fmaf(v[j], v[j], sum);
  sum = block_reduce<false>(sum, scratch);
  const float inv = rms_inverse(sum, dim, eps);
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < dim) orow[i] = from_float<T>(__fmul_rn(w[j], round_to<T>(__fmul_rn(v[j], inv))));
  }
}

void launch_rms_norm(const Tensor& x, const Tensor* residual, const Tensor& weight, float eps, Tensor& out) {
  const int64_t rows = x.dim(0), dim = x.dim(1);
  if (rows == 0) return;
  // Elements a thread keeps in registers: the fewest that fit the row in
  // 1024 threads (0: too long, the looped kernel).
  const RmsNormLayout layout = rms_norm_layout(dim);
  const int per = layout.per, row_threads = layout.threads, threads = layout.threads;
  dispatch_device_float(x.dtype(), "ops::rms_norm", [&](auto xt) {
    using T = decltype(xt);
    dispatch_device_float(weight.dtype(), "ops::rms_norm (weight)", [&](auto wt) {
      using W = decltype(wt);
      T* xp = static_cast<T*>(x.raw_data());
      const T* rp = residual ? static_cast<const T*>(residual->raw_data()) : nullptr;
      const W* wp = static_cast<const W*>(weight.raw_data());
      T* op = static_cast<T*>(out.raw_data());
      const cudaStream_t stream = current_stream();
      const int d = int(dim);
      const dim3 grid{unsigned(rows)}, block{unsigned(row_threads)};
      switch (per) {
        case 4: launch_dependent(rms_norm_rows_kernel<T, W, 4>, grid, block, 0, stream, xp, rp, wp, eps, op, d); break;
        case 8: launch_dependent(rms_norm_rows_kernel<T, W, 8>, grid, block, 0, stream, xp, rp, wp, eps, op, d); break;
        case 16: launch_dependent(rms_norm_rows_kernel<T, W, 16>, grid, block, 0, stream, xp, rp, wp, eps, op, d); break;
        default: rms_norm_kernel<T, W><<<unsigned(rows), threads, 0, stream>>>(xp, rp, wp, eps, op, dim);
      }
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
