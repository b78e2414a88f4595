// Token choice on the GPU, so that only the chosen id crosses to the host.
//
// argmax: one block a row reduces (value, column) pairs.
//
// sample_token: one block of 1024 threads over the whole vocabulary (scores
// sit in L2 between the passes). The scores (penalty, temperature) go to a
// scratch row; the k-th largest score and the top-p cut are found by radix
// selection over order-preserving 32-bit keys, 8 bits a pass: top-k counts
// tokens per digit, top-p sums their probability mass per digit (f64 shared
// atomics), so neither needs a sort. Ties at the top-p cut are kept in
// ascending id order, as many as the mass needs (they weigh the same). The
// draw scans the kept tokens' mass in ascending id order: each thread sums a
// contiguous range, a block scan gives each range its start, and the thread
// whose range holds u * total walks it.
#include <climits>
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
  // Eight loads in flight a thread, then the comparisons in column order.
  constexpr int kUnroll = 8;
  for (int64_t base = threadIdx.x; base < cols; base += kUnroll * int64_t(blockDim.x)) {
    float v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * int64_t(blockDim.x);
      v[u] = i < cols ? to_float(row[i]) : -INFINITY;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * int64_t(blockDim.x);
      if (i < cols) best = better(best, Best{v[u], isnan(v[u]) ? -1 : int32_t(i)});
    }
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

constexpr int kSampleThreads = 1024;

// Float -> unsigned key with the same order (-inf smallest); and back.
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_to_float(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Inclusive scan over the block (one value a thread; blockDim.x <= 1024).
template <typename V>
__device__ V block_inclusive_scan(V v, V* buffer) {
  buffer[threadIdx.x] = v;
  __syncthreads();
  for (int offset = 1; offset < int(blockDim.x); offset *= 2) {
    const V add = threadIdx.x >= unsigned(offset) ? buffer[threadIdx.x - offset] : V(0);
    __syncthreads();
    buffer[threadIdx.x] += add;
    __syncthreads();
  }
  const V out = buffer[threadIdx.x];
  __syncthreads();
  return out;
}

__device__ double block_sum_double(double v, double* buffer) {
  const double inclusive = block_inclusive_scan(v, buffer);
  __shared__ double total;
  if (threadIdx.x == blockDim.x - 1) total = inclusive;
  __syncthreads();
  const double t = total;
  __syncthreads();
  return t;
}

struct SampleShared {
  double scan[kSampleThreads];
  int iscan[kSampleThreads];
  double mass[256];
  unsigned count[256];
  uint32_t prefix;
  long long need;
  double remaining;
  int bad, result, fallback;
  float max_score;
};

template <typename T>
__global__ void __launch_bounds__(kSampleThreads)
    sample_token_kernel(const T* x, int vocab, const int32_t* previous, int n_previous, SamplingParams p, double u,
                        float* score, int32_t* out) {
  __shared__ SampleShared sh;
  const int tid = threadIdx.x, threads = blockDim.x;
  if (tid == 0) {
    sh.bad = 0;
    sh.result = -1;
    sh.fallback = -1;
  }
  __syncthreads();
  const bool scale = p.temperature != 1.0f;
  for (int i = tid; i < vocab; i += threads) {
    const float v = to_float(x[i]);
    if (isnan(v)) sh.bad = 1;
    score[i] = scale ? v / p.temperature : v;
  }
  __syncthreads();
  // From the logit, not the running score: a repeated id is penalized once.
  for (int j = tid; j < n_previous; j += threads) {
    const int32_t id = previous[j];
    if (id < 0 || id >= vocab) continue;
    float v = to_float(x[id]);
    v = v < 0.0f ? v * p.repetition_penalty : v / p.repetition_penalty;
    score[id] = scale ? v / p.temperature : v;
  }
  __syncthreads();

  float local_max = -INFINITY;
  for (int i = tid; i < vocab; i += threads) local_max = fmaxf(local_max, score[i]);
  local_max = warp_max(local_max);
  sh.scan[tid] = local_max;  // every lane holds its warp's max
  __syncthreads();
  if (tid == 0) {
    float m = -INFINITY;
    for (int w = 0; w < threads; w += 32) m = fmaxf(m, float(sh.scan[w]));
    sh.max_score = m;
  }
  __syncthreads();
  const float max_score = sh.max_score;
  if (sh.bad || max_score == -INFINITY) {
    if (tid == 0) out[0] = -1;
    return;
  }

  // Top-k: the k-th largest key, 8 bits a pass.
  float kth = -INFINITY;
  if (p.top_k > 0 && p.top_k < vocab) {
    if (tid == 0) {
      sh.prefix = 0;
      sh.need = p.top_k;
    }
    for (int pass = 0; pass < 4; ++pass) {
      const int shift = 24 - 8 * pass;
      const uint32_t high = pass == 0 ? 0u : ~0u << (32 - 8 * pass);
      for (int b = tid; b < 256; b += threads) sh.count[b] = 0;
      __syncthreads();
      const uint32_t prefix = sh.prefix;
      for (int i = tid; i < vocab; i += threads) {
        const uint32_t k = order_key(score[i]);
        if ((k & high) == prefix) atomicAdd(&sh.count[(k >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (tid == 0) {
        long long above = 0;
        for (int d = 255; d >= 0; --d) {
          if (above + sh.count[d] >= sh.need) {
            sh.prefix = prefix | (uint32_t(d) << shift);
            sh.need -= above;
            break;
          }
          above += sh.count[d];
        }
      }
      __syncthreads();
    }
    kth = key_to_float(sh.prefix);
  }
  const auto in_top_k = [&](float s) { return s > -INFINITY && s >= kth; };
  const auto weight = [&](float s) { return exp(double(s) - double(max_score)); };

  double local_total = 0.0;
  for (int i = tid; i < vocab; i += threads)
    if (in_top_k(score[i])) local_total += weight(score[i]);
  const double total = block_sum_double(local_total, sh.scan);

  // Top-p: the score t of the last token in (score desc, id asc) order that the
  // nucleus needs, and how many of the tokens scoring exactly t it keeps.
  float cut = -INFINITY;
  long long cut_ties = LLONG_MAX;
  if (p.top_p < 1.0f) {
    if (tid == 0) {
      sh.prefix = 0;
      sh.remaining = double(p.top_p) * total;
    }
    for (int pass = 0; pass < 4; ++pass) {
      const int shift = 24 - 8 * pass;
      const uint32_t high = pass == 0 ? 0u : ~0u << (32 - 8 * pass);
      for (int b = tid; b < 256; b += threads) {
        sh.mass[b] = 0.0;
        sh.count[b] = 0;
      }
      __syncthreads();
      const uint32_t prefix = sh.prefix;
      for (int i = tid; i < vocab; i += threads) {
        const float s = score[i];
        const uint32_t k = order_key(s);
        if (in_top_k(s) && (k & high) == prefix) {
          atomicAdd(&sh.mass[(k >> shift) & 255u], weight(s));
          atomicAdd(&sh.count[(k >> shift) & 255u], 1u);
        }
      }
      __syncthreads();
      if (tid == 0) {
        double above = 0.0;
        int chosen = -1, lowest = -1;
        for (int d = 255; d >= 0; --d) {
          if (sh.count[d] == 0) continue;
          lowest = d;
          if (above + sh.mass[d] >= sh.remaining) {
            chosen = d;
            break;
          }
          above += sh.mass[d];
        }
        // Rounding can leave the target just above all the mass: the last
        // (lowest) digit then.
        if (chosen < 0) {
          chosen = lowest;
          above -= sh.mass[lowest];
        }
        sh.prefix = prefix | (uint32_t(chosen) << shift);
        sh.remaining -= above;
      }
      __syncthreads();
    }
    cut = key_to_float(sh.prefix);
    const double each = weight(cut);
    cut_ties = (long long)fmax(1.0, ceil(sh.remaining / each));
  }

  // The draw: kept tokens in ascending id order, contiguous ranges a thread.
  const int chunk = (vocab + threads - 1) / threads;
  const int lo = min(vocab, tid * chunk), hi = min(vocab, lo + chunk);
  int ties = 0;
  if (p.top_p < 1.0f)
    for (int i = lo; i < hi; ++i) ties += score[i] == cut && in_top_k(score[i]);
  const int tie_base = block_inclusive_scan(ties, sh.iscan) - ties;
  const auto kept = [&](int i, int& tie_rank) {
    const float s = score[i];
    if (!in_top_k(s) || s < cut) return false;
    if (s > cut || p.top_p >= 1.0f) return true;
    return tie_rank++ < cut_ties;
  };
  double mine = 0.0;
  int last = -1;
  {
    int rank = tie_base;
    for (int i = lo; i < hi; ++i)
      if (kept(i, rank)) {
        mine += weight(score[i]);
        last = i;
      }
  }
  const double end = block_inclusive_scan(mine, sh.scan);
  __shared__ double kept_total;
  if (tid == threads - 1) kept_total = end;
  if (last >= 0) atomicMax(&sh.fallback, last);
  __syncthreads();
  const double r = u * kept_total, start = end - mine;
  if (mine > 0.0 && r >= start && r < end) {
    double cumulative = start;
    int rank = tie_base;
    for (int i = lo; i < hi; ++i)
      if (kept(i, rank)) {
        cumulative += weight(score[i]);
        if (r < cumulative) {
          sh.result = i;
          break;
        }
      }
  }
  __syncthreads();
  if (tid == 0) out[0] = sh.result >= 0 ? sh.result : sh.fallback;
}

}  // namespace

void sample_token(const Tensor& x, const Tensor& previous, const SamplingParams& params, double u, Tensor& out) {
  const int vocab = int(x.dim(1));
  const cudaStream_t stream = current_stream();
  float* score = nullptr;
  LOWBIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&score), size_t(vocab) * sizeof(float), stream));
  dispatch_device_float(x.dtype(), "ops::sample_token", [&](auto tag) {
    using T = decltype(tag);
    sample_token_kernel<T><<<1, kSampleThreads, 0, stream>>>(static_cast<const T*>(x.raw_data()), vocab,
                                                            previous.numel() ? previous.data<int32_t>() : nullptr,
                                                            int(previous.numel()), params, u, score,
                                                            out.data<int32_t>());
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
  LOWBIT_CUDA_CHECK(cudaFreeAsync(score, stream));
}

void argmax(const Tensor& x, Tensor& out) {
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
