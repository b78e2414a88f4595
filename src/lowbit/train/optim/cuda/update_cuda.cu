// CUDA kernels of the optimizer updates.
//
// 8-bit (the fused kernel): one warp owns one 256-value quantization block.
// Lane l holds elements 4l..4l+3 and 128+4l..128+4l+3, so every load and store
// of the warp is one contiguous 512-byte (fp32) or 128-byte (codes) segment,
// issued as 16-byte / 4-byte accesses. Per element it moves 4 B gradient, 8 B
// parameter (read + write) and 2 B per state (codes read + written): 16 B for
// Adam, one pass over memory. In registers: dequantize (code table lookup x
// old absmax), update state and parameter (update_rules.h, the same function
// the CPU runs), warp-shuffle max for the new absmax, re-quantize with the
// breadth-first search table in shared memory (7 steps whose first levels are
// broadcasts, then two leaf reads) instead of bitsandbytes' strided binary
// search, whose steps hit one shared-memory bank. No __syncthreads in the loop.
//
// 32-bit: a grid-stride loop, 4 elements per thread with 16-byte accesses.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_runtime.h"
#include "lowbit/core/cuda_check.h"
#include "train/optim/kernels.h"

namespace lowbit::train::optim::detail::cuda {
namespace {

constexpr int kThreads = 256;                 // 8 warps, 8 quantization blocks per iteration
constexpr int kWarps = kThreads / 32;
constexpr int kPerLane = kQuantBlock / 32;    // 8 values per lane

int sm_count() { return ::lowbit::detail::cuda_multiprocessors(); }

__device__ __forceinline__ int lane_index(int lane, int j) { return j < 4 ? 4 * lane + j : 128 + 4 * lane + (j - 4); }

template <Rule R>
__global__ void __launch_bounds__(kThreads) update_8bit_kernel(StepParams a, TensorStep t) {
  constexpr int S = rule_states(R);
  __shared__ CodeSearch tables[2];  // [0] signed, [1] unsigned
  {
    const float* src0 = reinterpret_cast<const float*>(t.search_signed);
    const float* src1 = reinterpret_cast<const float*>(t.search_unsigned);
    float* dst0 = reinterpret_cast<float*>(&tables[0]);
    float* dst1 = reinterpret_cast<float*>(&tables[1]);
    constexpr int words = sizeof(CodeSearch) / 4;
    for (int i = threadIdx.x; i < words; i += kThreads) {
      dst0[i] = src0[i];
      dst1[i] = src1[i];
    }
  }
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int64_t blocks = (t.n + kQuantBlock - 1) / kQuantBlock;
  const bool aligned = ((reinterpret_cast<uintptr_t>(t.p) | reinterpret_cast<uintptr_t>(t.g)) & 15) == 0;
  for (int64_t b = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32; b < blocks; b += int64_t(gridDim.x) * kWarps) {
    const int64_t base = b * kQuantBlock;
    const bool full = aligned && base + kQuantBlock <= t.n;
    float g[kPerLane], p[kPerLane];
    uint8_t c[S][kPerLane];
    if (full) {
      const float4* g4 = reinterpret_cast<const float4*>(t.g + base);
      const float4* p4 = reinterpret_cast<const float4*>(t.p + base);
      const float4 g0 = __ldcs(g4 + lane), g1 = __ldcs(g4 + 32 + lane);
      const float4 p0 = p4[lane], p1 = p4[32 + lane];
      g[0] = g0.x; g[1] = g0.y; g[2] = g0.z; g[3] = g0.w; g[4] = g1.x; g[5] = g1.y; g[6] = g1.z; g[7] = g1.w;
      p[0] = p0.x; p[1] = p0.y; p[2] = p0.z; p[3] = p0.w; p[4] = p1.x; p[5] = p1.y; p[6] = p1.z; p[7] = p1.w;
#pragma unroll
      for (int k = 0; k < S; ++k) {
        const uint32_t* c4 = reinterpret_cast<const uint32_t*>(t.codes[k] + base);
        const uint32_t lo = c4[lane], hi = c4[32 + lane];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          c[k][j] = uint8_t(lo >> (8 * j));
          c[k][4 + j] = uint8_t(hi >> (8 * j));
        }
      }
    } else {
      // Padding as bitsandbytes loads it: gradient 0, signed codes 128, unsigned 0.
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int64_t i = base + lane_index(lane, j);
        const bool in = i < t.n;
        g[j] = in ? t.g[i] : 0.0f;
        p[j] = in ? t.p[i] : 0.0f;
#pragma unroll
        for (int k = 0; k < S; ++k) c[k][j] = in ? t.codes[k][i] : (state_signed(R, k) ? 128 : 0);
      }
    }
    float old_absmax[S], new_absmax[S];
#pragma unroll
    for (int k = 0; k < S; ++k) {
      old_absmax[k] = t.absmax[k][b];
      new_absmax[k] = -3.402823466e38f;
    }
    float s[S][kPerLane];
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      float e[3];
#pragma unroll
      for (int k = 0; k < S; ++k) e[k] = tables[state_signed(R, k) ? 0 : 1].code[c[k][j]] * old_absmax[k];
      update_element<R, true>(a, g[j], p[j], e);
#pragma unroll
      for (int k = 0; k < S; ++k) {
        s[k][j] = e[k];
        new_absmax[k] = fmaxf(new_absmax[k], fabsf(e[k]));
      }
    }
#pragma unroll
    for (int k = 0; k < S; ++k) {
#pragma unroll
      for (int off = 16; off > 0; off >>= 1)
        new_absmax[k] = fmaxf(new_absmax[k], __shfl_xor_sync(0xffffffffu, new_absmax[k], off));
      if (lane == 0) t.absmax[k][b] = new_absmax[k];
    }
    if (full) {
      float4* p4 = reinterpret_cast<float4*>(t.p + base);
      p4[lane] = make_float4(p[0], p[1], p[2], p[3]);
      p4[32 + lane] = make_float4(p[4], p[5], p[6], p[7]);
    } else {
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int64_t i = base + lane_index(lane, j);
        if (i < t.n) t.p[i] = p[j];
      }
    }
#pragma unroll
    for (int k = 0; k < S; ++k) {
      const CodeSearch& table = tables[state_signed(R, k) ? 0 : 1];
#pragma unroll
      for (int j = 0; j < kPerLane; ++j)
        c[k][j] = quantize_nearest(table, __fdividef(s[k][j], new_absmax[k]), state_signed(R, k), s[k][j]);
      if (full) {
        uint32_t* c4 = reinterpret_cast<uint32_t*>(t.codes[k] + base);
        c4[lane] = uint32_t(c[k][0]) | uint32_t(c[k][1]) << 8 | uint32_t(c[k][2]) << 16 | uint32_t(c[k][3]) << 24;
        c4[32 + lane] = uint32_t(c[k][4]) | uint32_t(c[k][5]) << 8 | uint32_t(c[k][6]) << 16 | uint32_t(c[k][7]) << 24;
      } else {
#pragma unroll
        for (int j = 0; j < kPerLane; ++j) {
          const int64_t i = base + lane_index(lane, j);
          if (i < t.n) t.codes[k][i] = c[k][j];
        }
      }
    }
  }
}

template <Rule R>
__global__ void __launch_bounds__(kThreads) update_32bit_kernel(StepParams a, TensorStep t) {
  constexpr int S = rule_states(R);
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < t.n; i += stride) {
    float s[3];
#pragma unroll
    for (int k = 0; k < S; ++k) s[k] = t.state32[k][i];
    float p = t.p[i];
    update_element<R, false>(a, t.g[i], p, s);
    t.p[i] = p;
#pragma unroll
    for (int k = 0; k < S; ++k) t.state32[k][i] = s[k];
  }
}

template <Rule R>
__global__ void __launch_bounds__(kThreads) update_norm_kernel(StepParams a, TensorStep t, double* out) {
  double sum = 0;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < t.n; i += int64_t(gridDim.x) * kThreads) {
    float s[3];
    load_states<R>(t, i, s);
    sum += update_norm_term<R>(a, t.g[i], s);
  }
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if ((threadIdx.x & 31) == 0) atomicAdd(out, sum);
}

__global__ void squared_norm_kernel(const float* x, int64_t n, double* out) {
  double sum = 0;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    sum += double(x[i]) * x[i];
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if ((threadIdx.x & 31) == 0) atomicAdd(out, sum);
}

template <Rule R>
void launch(const StepParams& a, const TensorStep& t, cudaStream_t stream) {
  if (t.n == 0) return;
  if (t.bits == 8) {
    static int per_sm = [] {
      int v = 0;
      LOWBIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&v, update_8bit_kernel<R>, kThreads, 0));
      return v > 0 ? v : 1;
    }();
    const int64_t blocks = (t.n + kQuantBlock - 1) / kQuantBlock;
    const int64_t needed = (blocks + kWarps - 1) / kWarps;
    const int grid = int(needed < int64_t(per_sm) * sm_count() ? needed : int64_t(per_sm) * sm_count());
    update_8bit_kernel<R><<<grid, kThreads, 0, stream>>>(a, t);
  } else {
    const int64_t needed = (t.n + kThreads - 1) / kThreads;
    const int grid = int(needed < int64_t(sm_count()) * 16 ? needed : int64_t(sm_count()) * 16);
    update_32bit_kernel<R><<<grid, kThreads, 0, stream>>>(a, t);
  }
  LOWBIT_CUDA_CHECK_LAUNCH();
}

double read_and_free(double* d) {
  double h = 0;
  LOWBIT_CUDA_CHECK(cudaMemcpy(&h, d, sizeof(double), cudaMemcpyDeviceToHost));
  LOWBIT_CUDA_CHECK(cudaFree(d));
  return h;
}

}  // namespace

void update(Rule rule, const StepParams& a, const TensorStep& t, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  switch (rule) {
    case Rule::Adam: return launch<Rule::Adam>(a, t, stream);
    case Rule::AdEMAMix: return launch<Rule::AdEMAMix>(a, t, stream);
    case Rule::Momentum: return launch<Rule::Momentum>(a, t, stream);
    case Rule::Lion: return launch<Rule::Lion>(a, t, stream);
    case Rule::RMSprop: return launch<Rule::RMSprop>(a, t, stream);
    case Rule::Adagrad: return launch<Rule::Adagrad>(a, t, stream);
  }
}

double update_norm(Rule rule, const StepParams& a, const TensorStep& t) {
  double* d = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&d, sizeof(double)));
  LOWBIT_CUDA_CHECK(cudaMemset(d, 0, sizeof(double)));
  const int grid = sm_count() * 8;
  if (rule == Rule::Adam)
    update_norm_kernel<Rule::Adam><<<grid, kThreads>>>(a, t, d);
  else
    update_norm_kernel<Rule::Momentum><<<grid, kThreads>>>(a, t, d);
  LOWBIT_CUDA_CHECK_LAUNCH();
  return read_and_free(d);
}

double squared_norm(const float* x, int64_t n) {
  double* d = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&d, sizeof(double)));
  LOWBIT_CUDA_CHECK(cudaMemset(d, 0, sizeof(double)));
  squared_norm_kernel<<<sm_count() * 8, kThreads>>>(x, n, d);
  LOWBIT_CUDA_CHECK_LAUNCH();
  return read_and_free(d);
}

const CodeSearch* upload_search(const CodeSearch& host) {
  CodeSearch* d = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&d, sizeof(CodeSearch)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(d, &host, sizeof(CodeSearch), cudaMemcpyHostToDevice));
  return d;
}

void free_search(const CodeSearch* d) { cudaFree(const_cast<CodeSearch*>(d)); }

}  // namespace lowbit::train::optim::detail::cuda
