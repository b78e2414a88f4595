// Element-wise decoder ops on the GPU: residual add, SwiGLU, embedding
// lookup, and the row softmax / log-softmax that perplexity uses. Each loads
// its dtype as f32, computes in f32 and rounds on store, as the CPU bodies do.
#include <string>

#include "lowbit/core/tensor.h"
#include "ops/cuda/activation_cuda.cuh"
#include "ops/cuda/ops_cuda.h"
#include "ops/cuda/reduce_cuda.h"

namespace lowbit::ops::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void add_kernel(const T* a, const T* b, T* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
}

// silu(g) = g / (1 + exp(-g)) with the full-precision expf (not __expf), the
// result rounded to T before the product (two PyTorch ops): swiglu_of.
template <typename T>
__global__ void silu_mul_kernel(const T* gate, const T* up, T* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_float<T>(swiglu_of<T>(to_float(gate[i]), to_float(up[i])));
}

// gate_up [rows, 2n] (gate | up) -> out [rows, n].
template <typename T>
__global__ void swiglu_kernel(const T* gate_up, T* out, int64_t rows, int64_t n) {
  wait_for_previous_grid();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / n, c = i % n;
    out[i] = from_float<T>(swiglu_of<T>(to_float(gate_up[r * 2 * n + c]), to_float(gate_up[r * 2 * n + n + c])));
  }
}

// The first out-of-range id of a launch (all ones: none). A kernel cannot
// throw, so the host reads this back after the lookup.
__device__ unsigned long long g_bad_id;

template <typename I, typename S, typename D>
__global__ void embedding_kernel(const I* ids, const S* table, D* out, int64_t vocab, int64_t dim) {
  const int64_t id = int64_t(ids[blockIdx.x]);
  D* dst = out + int64_t(blockIdx.x) * dim;
  if (id < 0 || id >= vocab) {
    if (threadIdx.x == 0) atomicCAS(&g_bad_id, ~0ull, static_cast<unsigned long long>(id));
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = from_float<D>(0.0f);
    return;
  }
  const S* src = table + id * dim;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = from_float<D>(to_float(src[j]));
}

// One block a row: max, then the sum of exp(x - max), then the output.
template <typename T, bool kLog>
__global__ void __launch_bounds__(kThreads) softmax_kernel(const T* x, float* out, int64_t cols) {
  __shared__ float scratch[32];
  const T* xr = x + int64_t(blockIdx.x) * cols;
  float* orow = out + int64_t(blockIdx.x) * cols;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) mx = fmaxf(mx, to_float(xr[i]));
  mx = block_reduce<true>(mx, scratch);
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum += expf(to_float(xr[i]) - mx);
  sum = block_reduce<false>(sum, scratch);
  if constexpr (kLog) {
    const float lse = logf(sum);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) orow[i] = (to_float(xr[i]) - mx) - lse;
  } else {
    const float inv = 1.0f / sum;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) orow[i] = expf(to_float(xr[i]) - mx) * inv;
  }
}

unsigned elementwise_grid(int64_t n) { return unsigned(std::min<int64_t>(grid_for(n, kThreads), 132 * 16)); }

}  // namespace

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  const int64_t n = a.numel();
  if (n == 0) return;
  dispatch_device_float(a.dtype(), "ops::add", [&](auto tag) {
    using T = decltype(tag);
    add_kernel<T><<<elementwise_grid(n), kThreads, 0, current_stream()>>>(static_cast<const T*>(a.raw_data()),
                                                     static_cast<const T*>(b.raw_data()),
                                                     static_cast<T*>(out.raw_data()), n);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  const int64_t n = gate.numel();
  if (n == 0) return;
  dispatch_device_float(gate.dtype(), "ops::silu_mul", [&](auto tag) {
    using T = decltype(tag);
    silu_mul_kernel<T><<<elementwise_grid(n), kThreads, 0, current_stream()>>>(static_cast<const T*>(gate.raw_data()),
                                                          static_cast<const T*>(up.raw_data()),
                                                          static_cast<T*>(out.raw_data()), n);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void swiglu(const Tensor& gate_up, Tensor& out) {
  const int64_t rows = out.dim(0), n = out.dim(1);
  if (rows * n == 0) return;
  dispatch_device_float(gate_up.dtype(), "ops::swiglu", [&](auto tag) {
    using T = decltype(tag);
    launch_dependent(swiglu_kernel<T>, dim3(elementwise_grid(rows * n)), dim3(kThreads), 0, current_stream(),
                     static_cast<const T*>(gate_up.raw_data()), static_cast<T*>(out.raw_data()), rows, n);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void embedding(const Tensor& ids, const Tensor& table, Tensor& out) {
  const int64_t n = ids.dim(0), vocab = table.dim(0), dim = table.dim(1);
  if (n == 0) return;
  // The id check reads a flag back (synchronous): not possible while a step
  // is captured into a CUDA graph, whose caller checks the ids on the host.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  LOWBIT_CUDA_CHECK(cudaStreamIsCapturing(current_stream(), &capture));
  const bool check = capture == cudaStreamCaptureStatusNone;
  const unsigned long long none = ~0ull;
  if (check) LOWBIT_CUDA_CHECK(cudaMemcpyToSymbol(g_bad_id, &none, sizeof none));
  const int threads = dim >= 512 ? 256 : 64;
  const auto launch = [&](auto id_tag) {
    using I = decltype(id_tag);
    dispatch_device_float(table.dtype(), "ops::embedding (table)", [&](auto st) {
      using S = decltype(st);
      dispatch_device_float(out.dtype(), "ops::embedding (out)", [&](auto dt) {
        using D = decltype(dt);
        embedding_kernel<I, S, D><<<unsigned(n), threads, 0, current_stream()>>>(static_cast<const I*>(ids.raw_data()),
                                                            static_cast<const S*>(table.raw_data()),
                                                            static_cast<D*>(out.raw_data()), vocab, dim);
      });
    });
  };
  if (ids.dtype() == DType::I64) launch(int64_t{});
  else launch(int32_t{});
  LOWBIT_CUDA_CHECK_LAUNCH();
  if (!check) return;
  unsigned long long bad = none;
  LOWBIT_CUDA_CHECK(cudaMemcpyFromSymbol(&bad, g_bad_id, sizeof bad));
  if (bad != none)
    throw_error("ops::embedding: token id " + std::to_string(static_cast<long long>(bad)) +
                " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

void softmax(const Tensor& x, Tensor& out, bool log) {
  const int64_t cols = x.dim(-1), rows = cols > 0 ? x.numel() / cols : 0;
  if (rows == 0) return;
  dispatch_device_float(x.dtype(), log ? "ops::log_softmax" : "ops::softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    float* op = static_cast<float*>(out.raw_data());
    if (log) softmax_kernel<T, true><<<unsigned(rows), kThreads, 0, current_stream()>>>(xp, op, cols);
    else softmax_kernel<T, false><<<unsigned(rows), kThreads, 0, current_stream()>>>(xp, op, cols);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

}  // namespace lowbit::ops::cuda
