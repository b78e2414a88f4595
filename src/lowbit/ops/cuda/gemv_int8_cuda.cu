// LLM.int8 for a few activation rows (decoding) in one launch, where the GEMM
// path takes five plus cuBLAS (whose int8 GEMM is slow at m = 1).
// A persistent grid; each block first prepares x itself into shared memory
// (x is m * k values, read from L2 by every block, which costs far less than
// a second launch):
//  - x rounded to f16; each row's absmax over |x| < threshold; a 16-bit flag
//    per 16-column chunk marking its outlier columns (|x| >= threshold in any
//    row); the codes rint(x * 127 / absmax), 0 in outlier columns.
// Then one warp an output feature: lanes stream the weight row in 16-byte
// loads (read once, not kept in L1) and take dp4a products with every row's
// codes. A chunk whose flag is set also adds its outlier columns' 16-bit
// product x_f16 * f16(code * SCB / 127) in f32 (rare: 0.1% of columns). Then
// the GEMM path's epilogue: f16(fma(acc * row_stat * SCB, 1/127^2, bias)),
// plus the outlier sum rounded to f16 once more.
// The numbers are the GEMM path's except for the order in which a row's
// outlier products are added (per lane, then across the warp, not by column).
#include "ops/cuda/gemv_int8_cuda.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "ops/cuda/cuda_common.h"
#include "ops/cuda/int8_epilogue.cuh"
#include "quant/reciprocal.h"

namespace lowbit::ops::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;
constexpr size_t kMaxSharedBytes = 160 * 1024;

// 16 activations as loaded (sizeof(T) 16-byte words), then as f16-rounded
// floats, so that the loads of several chunks can be issued before any is used.
template <typename T>
struct Raw16 {
  uint4 w[sizeof(T)];
};
template <typename T>
__device__ __forceinline__ Raw16<T> load16(const T* p) {
  Raw16<T> raw;
#pragma unroll
  for (int i = 0; i < int(sizeof(T)); ++i) raw.w[i] = reinterpret_cast<const uint4*>(p)[i];
  return raw;
}
template <typename T>
__device__ __forceinline__ void to_f16_values(const Raw16<T>& raw, float* v) {
  const T* e = reinterpret_cast<const T*>(raw.w);
#pragma unroll
  for (int i = 0; i < 16; ++i) v[i] = round_f16(to_float(e[i]));
}

// Calls fn(c, raw) for each 16-value chunk c a thread owns (c = threadIdx.x +
// j * kThreads) with its rows' raw values, the loads of kBatch chunks in
// flight together: one L2 round trip for rows of up to 16K values at m = 1
// instead of one a chunk (11008 x 4096 at batch 1: 19.2-20.1 -> 16.6 us, H200).
template <typename T, int kRows, typename Fn>
__device__ __forceinline__ void for_row_chunks(const T* x, int64_t k, Fn fn) {
  constexpr int kBatch = kRows == 1 ? 4 : kRows == 2 ? 2 : 1;
  const int64_t chunks = k / 16;
  for (int64_t c0 = threadIdx.x; c0 < chunks; c0 += int64_t(kThreads) * kBatch) {
    Raw16<T> raw[kBatch][kRows];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int64_t c = c0 + int64_t(b) * kThreads;
      if (c < chunks)
#pragma unroll
        for (int r = 0; r < kRows; ++r) raw[b][r] = load16(x + r * k + c * 16);
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int64_t c = c0 + int64_t(b) * kThreads;
      if (c < chunks) fn(c, raw[b]);
    }
  }
}

// Shared memory: codes [kRows][k], then flags [k / 16].
template <typename T, int kRows>
__device__ void prepare_rows(const T* x, int64_t k, float threshold, int8_t* codes, uint16_t* flags,
                             float* row_stats) {
  __shared__ float warp_max[kRows][kWarps];
  __shared__ float scale[kRows];
  const bool sparse = threshold > 0.0f;
  float m[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) m[r] = 0.0f;
  for_row_chunks<T, kRows>(x, k, [&](int64_t c, const Raw16<T>(&raw)[kRows]) {
    uint32_t flag = 0;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float v[16];
      to_f16_values(raw[r], v);
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const float a = fabsf(v[i]);
        if (!sparse || a < threshold) m[r] = fmaxf(m[r], a);
        else flag |= 1u << i;
      }
    }
    flags[c] = uint16_t(flag);
  });
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    for (int off = 16; off > 0; off >>= 1) m[r] = fmaxf(m[r], __shfl_xor_sync(0xffffffffu, m[r], off));
    if (lane == 0) warp_max[r][warp] = m[r];
  }
  __syncthreads();
  if (threadIdx.x < kRows) {
    float row_max = 0.0f;
    for (int w = 0; w < kWarps; ++w) row_max = fmaxf(row_max, warp_max[threadIdx.x][w]);
    row_stats[threadIdx.x] = row_max;
    scale[threadIdx.x] = __fmul_rn(127.0f, quant::gpu_reciprocal(row_max));  // bitsandbytes: __fdividef(127, absmax)
  }
  __syncthreads();
  for_row_chunks<T, kRows>(x, k, [&](int64_t c, const Raw16<T>(&raw)[kRows]) {
    const uint32_t flag = flags[c];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float v[16];
      to_f16_values(raw[r], v);
      uint32_t word[4] = {0, 0, 0, 0};
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const int32_t q = (flag >> i & 1u) ? 0 : __float2int_rn(__fmul_rn(v[i], scale[r]));
        word[i / 4] |= (uint32_t(q) & 0xffu) << (8 * (i % 4));
      }
      reinterpret_cast<uint4*>(codes + r * k)[c] = make_uint4(word[0], word[1], word[2], word[3]);
    }
  });
  __syncthreads();
}

template <typename T, typename B, int kRows>
__global__ void __launch_bounds__(kThreads)
    gemv_int8_kernel(const T* x, float threshold, const int8_t* w, const float* scb, const B* bias, int64_t n,
                     int64_t k, T* out) {
  extern __shared__ uint4 shared[];
  __shared__ float row_stats[kRows];
  int8_t* codes = reinterpret_cast<int8_t*>(shared);
  uint16_t* flags = reinterpret_cast<uint16_t*>(codes + kRows * k);
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * kWarps, first_row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  // A programmatic dependent with a resident grid: the next kernel may launch
  // now and prepare while this one runs; x is read only after the previous
  // kernel's results are visible.
  allow_dependent_launch();
  wait_for_previous_grid();
  // (Loading the first weights before the wait measured slower: the registers
  // they hold through the preparation cost resident blocks.)
  prepare_rows<T, kRows>(x, k, threshold, codes, flags, row_stats);

  for (int64_t j = first_row; j < n; j += warps) {
    const int8_t* wr = w + j * k;
    const float s = scb[j];
    int32_t acc[kRows];
    float extra[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0, extra[r] = 0.0f;
    bool outliers = false;
    // kUnroll weight loads in flight per lane before their first use.
    for (int64_t base = int64_t(lane) * 16; base < k; base += 32 * 16 * kUnroll) {
      uint4 wv[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t c = base + u * 32 * 16;
        wv[u] = c < k ? load_streaming16(wr + c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t c = base + u * 32 * 16;
        if (c >= k) break;
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const uint4 xv = *reinterpret_cast<const uint4*>(codes + r * k + c);
          acc[r] = __dp4a(int(wv[u].x), int(xv.x), acc[r]);
          acc[r] = __dp4a(int(wv[u].y), int(xv.y), acc[r]);
          acc[r] = __dp4a(int(wv[u].z), int(xv.z), acc[r]);
          acc[r] = __dp4a(int(wv[u].w), int(xv.w), acc[r]);
        }
        uint32_t flag = flags[c / 16];
        if (flag) {
          outliers = true;
          while (flag) {
            const int i = __ffs(flag) - 1;
            flag &= flag - 1;
            // The code from the registers already loaded (no second trip to L2).
            const uint32_t word = i < 8 ? (i < 4 ? wv[u].x : wv[u].y) : (i < 12 ? wv[u].z : wv[u].w);
            const int32_t code = int32_t(word << (24 - 8 * (i % 4))) >> 24;
            const float wf = round_f16(outlier_weight(code, s));
#pragma unroll
            for (int r = 0; r < kRows; ++r)
              extra[r] = __fadd_rn(extra[r], __fmul_rn(round_f16(to_float(x[r * k + c + i])), wf));
          }
        }
      }
    }
    outliers = __any_sync(0xffffffffu, outliers);
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      for (int off = 16; off > 0; off >>= 1) {
        acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
        extra[r] = __fadd_rn(extra[r], __shfl_xor_sync(0xffffffffu, extra[r], off));
      }
    // Lane r writes row r (the registers indexed by constants only).
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r != lane) continue;
      const float b = bias ? round_f16(to_float(bias[j])) : 0.0f;
      const float scaled = __fmul_rn(__fmul_rn(float(acc[r]), row_stats[r]), s);
      float v = round_f16(fmaf(scaled, kDequantScale, b));
      if (outliers) v = round_f16(__fadd_rn(v, extra[r]));
      out[r * n + j] = from_float<T>(v);
    }
  }
}

template <int kRows>
void launch(DType dtype, const void* x, const int8_t* w, const float* scb, int64_t n, int64_t k, DType bias_dtype,
            const void* bias, float threshold, void* out, cudaStream_t stream) {
  const size_t shared_bytes = size_t(kRows) * size_t(k) + size_t(k / 16) * 2;
  dispatch_device_float(dtype, "linear_int8", [&](auto tag) {
    using T = decltype(tag);
    dispatch_device_float(bias_dtype, "linear_int8 bias", [&](auto btag) {
      using B = decltype(btag);
      constexpr auto kernel = gemv_int8_kernel<T, B, kRows>;
      allow_shared_memory<kernel>(int(kMaxSharedBytes));
      // As many blocks as the SMs hold at once (up to 8 an SM): each
      // prepares x once, then takes rows until n is done. All resident, so
      // the early launch of the next kernel never takes their slots.
      int resident = 0;
      LOWBIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kernel, kThreads, shared_bytes));
      const int64_t blocks = std::min<int64_t>((n + kWarps - 1) / kWarps,
                                               int64_t(multiprocessors()) * std::clamp(resident, 1, 8));
      launch_dependent(kernel, dim3(unsigned(blocks)), dim3(kThreads), shared_bytes, stream, static_cast<const T*>(x),
                       threshold, w, scb, static_cast<const B*>(bias), n, k, static_cast<T*>(out));
      LOWBIT_CUDA_CHECK_LAUNCH();
    });
  });
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool gemv_int8(DType dtype, const void* x, int64_t m, const int8_t* w, const float* scb, int64_t n, int64_t k,
               DType bias_dtype, const void* bias, float threshold, void* out, void* stream_ptr) {
  if (m < 1 || m > kGemvInt8MaxRows || k % 16 != 0 || !aligned16(x) || !aligned16(w)) return false;
  if (size_t(m) * size_t(k) + size_t(k / 16) * 2 > kMaxSharedBytes) return false;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  switch (m) {
    case 1: launch<1>(dtype, x, w, scb, n, k, bias_dtype, bias, threshold, out, stream); break;
    case 2: launch<2>(dtype, x, w, scb, n, k, bias_dtype, bias, threshold, out, stream); break;
    case 3: launch<3>(dtype, x, w, scb, n, k, bias_dtype, bias, threshold, out, stream); break;
    default: launch<4>(dtype, x, w, scb, n, k, bias_dtype, bias, threshold, out, stream); break;
  }
  return true;
}

}  // namespace lowbit::ops::cuda
