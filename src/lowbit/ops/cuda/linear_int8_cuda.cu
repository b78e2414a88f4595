// LLM.int8 linear on the GPU, the same steps as the CPU op (and bitsandbytes'
// MatMul8bitLt with f16 compute). Batches of 1-4 rows take the fused GEMV
// (gemv_int8_cuda.cu). Larger ones start with
//  - (threshold > 0) the outlier bitmask and done counter, kept zeroed per
//    stream from call to call (ZeroedStreamBuffer);
//  - quantize_rows_kernel: one block a row; x rounded to f16, row absmax over
//    |x| < threshold, codes rint(x * 127 / absmax), 0 where |x| >= threshold,
//    whose column is set in a bitmask (any row may set it). The last block to
//    finish lists the set columns in ascending order, with their count.
// On Hopper (threshold 0, or fewer than kTiledMaxRows rows with outliers):
// int8_outlier_product zeroes the outlier columns' codes and, up to
// kSummedOutliers of them, gathers their f16 values (beyond that computes
// their 16-bit product), then gemm_int8_wgmma
// (gemm_int8_wgmma_sm90a.cu): int8 wgmma whose epilogue scales, adds the
// bias and the outlier product (summed there in the CPU's order); the CPU's
// bits. Elsewhere, with outliers and fewer than kTiledMaxRows rows, two more
// launches and no host round trip:
//  - int8_outlier_product (gemm_int8_outliers_cuda.cu): returns at once for
//    up to 64 outlier columns; beyond, zeroes their codes and computes their
//    16-bit product [m, n] on the tensor cores;
//  - gemm_int8_tiled (gemm_int8_cuda.cu): the tensor-core int8 GEMM whose
//    epilogue scales, adds the bias and the outlier product (up to 64 columns
//    summed there in order, their int8 share taken back out of the sums).
// Otherwise (no outliers, many rows, or k % 16 != 0) the cuBLAS path: outlier
// codes zeroed, their count copied to the host (threshold > 0 only), int8 x
// int8 -> int32 through cuBLAS (k % 4 == 0; a plain kernel otherwise), the
// outlier product summed in the epilogue (few rows and columns) or through
// cuBLAS (f16 in, f32 out), and one epilogue kernel:
// f16(fma(acc * row_stat * SCB, 1/127^2, bias)), plus the outlier product
// added in f32 and rounded to f16 once more, stored in x's dtype.
#include <cublas_v2.h>

#include <algorithm>
#include <string>
#include <utility>

#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_int8_cuda.h"
#include "ops/cuda/gemv_int8_cuda.h"
#include "ops/cuda/int8_epilogue.cuh"
#include "quant/reciprocal.h"
#include "ops/cuda/linear_cuda.h"
#include "ops/cuda/zeroed_stream_buffer_cuda.h"

namespace lowbit::ops::cuda {
namespace {

constexpr int kRowThreads = 256;

GemmInt8Path g_path = GemmInt8Path::kAuto;
// kAuto takes the tensor-core GEMM with outliers (threshold > 0) below this
// many rows. Measured on an H200 (docs/cuda.md): without outliers cuBLAS's
// int8 GEMM plus the epilogue kernel is faster than the mma.sync kernel
// (49 against 65 us at 256 x 4096 x 11008), and with outliers the tiled path
// saves the host round trip and the outlier gathers (90 against 154 us); at
// 2048 rows a prompt's outlier columns number in the thousands and cuBLAS's
// f16 product of them (prefill 7668 tokens/s) beats the gathering kernel (5052).
constexpr int64_t kTiledMaxRows = 1024;
// On Hopper the wgmma GEMM takes every batch of 5 rows and more, threshold 0
// (H200, 256 rows: 36-130 us against cuBLAS's 47-138) and, up to
// kTiledMaxRows, with outlier columns (256 rows: 50-173 us against the
// mma.sync GEMM's 83-323; 5-64 rows: 36-99 us against 33-117, behind only
// on 4096 x 11008 below 32 rows, by up to 10%).

__device__ __forceinline__ int8_t to_int8_rn(float v) {
  return int8_t(uint8_t(uint32_t(__float2int_rn(v)) & 0xffu));
}

// Outlier columns as the row quantization reports them: a bitmask over k,
// the number of blocks done, then the ascending list and its length. The
// last block leaves the mask and the counter zeroed again.
struct OutlierScratch {
  uint32_t* mask = nullptr;  // [ceil(k / 32)], zero on entry and on exit
  uint32_t* done = nullptr;  // zero on entry and on exit
  int32_t* count = nullptr;
  int32_t* cols = nullptr;   // [k]
};

// The mask's set bits in ascending order, by one block (a prefix sum of the
// words' popcounts per round of kRowThreads words).
__device__ void list_outliers(const OutlierScratch& o, int64_t k) {
  __shared__ int32_t warp_sums[kRowThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t words = (k + 31) / 32;
  int32_t base = 0;
  for (int64_t w0 = 0; w0 < words; w0 += kRowThreads) {
    const int64_t wi = w0 + threadIdx.x;
    uint32_t bits = wi < words ? __ldcg(o.mask + wi) : 0u;
    if (wi < words && bits) o.mask[wi] = 0u;  // left zeroed for the next call (ZeroedStreamBuffer)
    const int32_t own = __popc(bits);
    int32_t inclusive = own;
    for (int off = 1; off < 32; off <<= 1) {
      const int32_t v = __shfl_up_sync(0xffffffffu, inclusive, off);
      if (lane >= off) inclusive += v;
    }
    if (lane == 31) warp_sums[warp] = inclusive;
    __syncthreads();
    int32_t before = 0, total = 0;
    for (int i = 0; i < kRowThreads / 32; ++i) {
      before += i < warp ? warp_sums[i] : 0;
      total += warp_sums[i];
    }
    int32_t at = base + before + inclusive - own;
    while (bits) {
      const int bit = __ffs(bits) - 1;
      bits &= bits - 1;
      o.cols[at++] = int32_t(wi * 32 + bit);
    }
    base += total;
    __syncthreads();  // warp_sums is rewritten next round
  }
  if (threadIdx.x == 0) {
    *o.count = base;
    *o.done = 0u;
  }
}

// kVec consecutive values of x from `at` (a multiple of kVec, 16-byte
// aligned), one 16-byte load, as floats rounded to f16 as the CPU op rounds them.
template <typename T, int kVec>
__device__ __forceinline__ void load_f16_rounded(const T* row, int64_t at, float (&v)[kVec]) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(row + at));
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < kVec; ++i) v[i] = round_f16(to_float(e[i]));
}

// One block a row. Each thread takes kVec-column groups (16-byte loads when
// k % kVec == 0 and x is aligned; the tail of a row one value at a time): the
// row absmax over |x| < threshold, then the codes; an outlier group sets its
// columns' bits with one atomicOr (kVec divides 32, so a group lies in one
// mask word). A thread's first kCachedGroups groups stay in registers for
// the second pass (all of a row up to 8192 16-bit values), their loads in
// flight together.
template <typename T>
__global__ void __launch_bounds__(kRowThreads) quantize_rows_kernel(const T* x, int64_t k, float threshold,
                                                                    int8_t* codes, float* row_stats,
                                                                    OutlierScratch outliers) {
  constexpr int kVec = 16 / int(sizeof(T));
  __shared__ float partial[kRowThreads / 32];
  __shared__ bool last;
  wait_for_previous_grid();  // x comes from the kernels before
  const T* row = x + int64_t(blockIdx.x) * k;
  const bool sparse = threshold > 0.0f;
  const bool vector = k % kVec == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const int64_t groups = vector ? k / kVec : 0;  // the rest (all of k without vector loads) value by value
  float m = 0.0f;
  const auto absmax_group = [&](int64_t g, const float (&v)[kVec]) {
    uint32_t bits = 0;
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float a = fabsf(v[i]);
      if (!sparse || a < threshold) m = fmaxf(m, a);
      else bits |= 1u << i;
    }
    if (bits) atomicOr(outliers.mask + (g * kVec) / 32, bits << ((g * kVec) % 32));
  };
  constexpr int kCachedGroups = 4;
  float cached[kCachedGroups][kVec];
#pragma unroll
  for (int u = 0; u < kCachedGroups; ++u) {
    const int64_t g = threadIdx.x + int64_t(u) * kRowThreads;
    if (g < groups) load_f16_rounded<T, kVec>(row, g * kVec, cached[u]);
  }
  // fn(g, values) for each of this thread's groups: the cached ones, then the rest loaded again.
  const auto for_each_group = [&](auto&& fn) {
#pragma unroll
    for (int u = 0; u < kCachedGroups; ++u) {
      const int64_t g = threadIdx.x + int64_t(u) * kRowThreads;
      if (g < groups) fn(g, cached[u]);
    }
    for (int64_t g = threadIdx.x + kCachedGroups * kRowThreads; g < groups; g += kRowThreads) {
      float v[kVec];
      load_f16_rounded<T, kVec>(row, g * kVec, v);
      fn(g, v);
    }
  };
  for_each_group(absmax_group);
  for (int64_t c = groups * kVec + threadIdx.x; c < k; c += kRowThreads) {
    const float v = fabsf(round_f16(to_float(row[c])));
    if (!sparse || v < threshold) m = fmaxf(m, v);
    else atomicOr(outliers.mask + c / 32, 1u << (c % 32));
  }
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = m;
  __syncthreads();
  m = partial[0];
  for (int w = 1; w < kRowThreads / 32; ++w) m = fmaxf(m, partial[w]);
  if (threadIdx.x == 0) row_stats[blockIdx.x] = m;
  const float scale = __fmul_rn(127.0f, quant::gpu_reciprocal(m));  // bitsandbytes: __fdividef(127, absmax)
  int8_t* out = codes + int64_t(blockIdx.x) * k;
  const auto code = [&](float v) {
    return (!sparse || fabsf(v) < threshold) ? to_int8_rn(__fmul_rn(v, scale)) : int8_t(0);
  };
  const auto store_group = [&](int64_t g, const float (&v)[kVec]) {
    uint32_t packed[kVec / 4];
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const uint32_t b = uint32_t(uint8_t(code(v[i]))) << (8 * (i % 4));
      packed[i / 4] = i % 4 == 0 ? b : packed[i / 4] | b;
    }
    if constexpr (kVec == 8) *reinterpret_cast<uint2*>(out + g * kVec) = make_uint2(packed[0], packed[1]);
    else *reinterpret_cast<uint32_t*>(out + g * kVec) = packed[0];
  };
  for_each_group(store_group);
  for (int64_t c = groups * kVec + threadIdx.x; c < k; c += kRowThreads) out[c] = code(round_f16(to_float(row[c])));
  if (!sparse) return;
  // The last block to finish sees every row's bits (threadFenceReduction).
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(outliers.done, 1u) == gridDim.x - 1;
  __syncthreads();
  if (last) list_outliers(outliers, k);
}

// Every row's codes in the listed outlier columns set to 0 (one block a row).
__global__ void zero_outlier_codes_kernel(int8_t* codes, int64_t k, const int32_t* cols, const int32_t* count) {
  const int32_t outliers = *count;
  for (int32_t o = threadIdx.x; o < outliers; o += blockDim.x) codes[int64_t(blockIdx.x) * k + cols[o]] = 0;
}

// acc[m, n] = sum_k a[m, k] * w[n, k], one warp an output (shapes cuBLAS' int8 path refuses).
__global__ void int8_gemm_plain_kernel(const int8_t* a, const int8_t* w, int64_t m, int64_t n, int64_t k,
                                       int32_t* acc) {
  const int64_t out = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (out >= m * n) return;
  const int8_t* ar = a + (out / n) * k;
  const int8_t* wr = w + (out % n) * k;
  int32_t sum = 0;
  for (int64_t c = lane; c < k; c += 32) sum += int32_t(ar[c]) * int32_t(wr[c]);
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (lane == 0) acc[out] = sum;
}

// The summed-in-the-epilogue path is for at most this many outlier columns
// and fewer rows than kDenseOutlierRows.
constexpr int32_t kMaxSummedOutliers = 256;
constexpr int64_t kDenseOutlierRows = 16;

// The outlier weight columns dequantized to f16 as bitsandbytes does
// (code * SCB / 127): sub_w[o][j] for o < outliers.
__global__ void gather_outlier_weights_kernel(const int8_t* w, const float* scb, const int32_t* cols,
                                              int32_t outliers, int64_t n, int64_t k, __half* sub_w) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const float s = scb[j];
  for (int32_t o = 0; o < outliers; ++o)
    sub_w[int64_t(o) * n + j] = __float2half_rn(outlier_weight(w[j * k + cols[o]], s));
}

// x's outlier columns rounded to f16: sub_x[r][o].
template <typename T>
__global__ void gather_outlier_x_kernel(const T* x, const int32_t* cols, int32_t outliers, int64_t m, int64_t k,
                                        __half* sub_x) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * outliers) return;
  sub_x[i] = __float2half_rn(to_float(x[(i / outliers) * k + cols[i % outliers]]));
}

// `outlier_product` [m, n] (f32) when cuBLAS computed it; else, with
// `outliers` > 0, the product is summed here from the weight codes.
template <typename T, typename B>
__global__ void epilogue_kernel(const int32_t* acc, const float* row_stats, const float* scb, const B* bias,
                                const T* x, const int8_t* w, const int32_t* outlier_cols, int32_t outliers,
                                const float* outlier_product, int64_t m, int64_t n, int64_t k, T* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * n) return;
  const int64_t r = i / n, j = i % n;
  const float s = scb[j];
  const float b = bias ? round_f16(to_float(bias[j])) : 0.0f;
  const float scaled = __fmul_rn(__fmul_rn(float(acc[i]), row_stats[r]), s);
  float v = round_f16(fmaf(scaled, kDequantScale, b));
  if (outlier_product) {
    v = round_f16(__fadd_rn(v, outlier_product[i]));
  } else if (outliers) {
    float extra = 0.0f;
    for (int32_t o = 0; o < outliers; ++o) {
      const int32_t c = outlier_cols[o];
      const float wv = round_f16(outlier_weight(w[j * k + c], s));
      extra = __fadd_rn(extra, __fmul_rn(round_f16(to_float(x[r * k + c])), wv));
    }
    v = round_f16(__fadd_rn(v, extra));
  }
  out[i] = from_float<T>(v);
}

unsigned blocks_for(int64_t items, int threads) { return unsigned((items + threads - 1) / threads); }

}  // namespace

void set_gemm_int8_path(GemmInt8Path path) { g_path = path; }
GemmInt8Path gemm_int8_path() { return g_path; }

namespace {

// Steps 3-5 of the cuBLAS path, after the row quantization; `count` null at threshold 0.
void gemm_int8_cublas(DType dtype, const void* x, int64_t m, const int8_t* w, const float* scb, int64_t n, int64_t k,
                      DType bias_dtype, const void* bias, int8_t* codes, const float* row_stats, const int32_t* count,
                      const int32_t* cols, void* out, cudaStream_t stream) {
  const size_t acc_bytes = size_t(m * n) * 4;
  int32_t* acc = nullptr;
  LOWBIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&acc), acc_bytes, stream));
  int32_t outliers = 0;
  if (count) {
    zero_outlier_codes_kernel<<<unsigned(m), 256, 0, stream>>>(codes, k, cols, count);
    LOWBIT_CUDA_CHECK_LAUNCH();
    // The count sizes the outlier product (one small copy; prompts only).
    LOWBIT_CUDA_CHECK(cudaMemcpyAsync(&outliers, count, sizeof outliers, cudaMemcpyDeviceToHost, stream));
    LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  cublasHandle_t handle = cublas_handle();
  check_cublas(cublasSetStream(handle, stream), "cublasSetStream");
  if (k % 4 == 0) {
    const int32_t alpha = 1, beta = 0;
    check_cublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, w, CUDA_R_8I, int(k),
                              codes, CUDA_R_8I, int(k), &beta, acc, CUDA_R_32I, int(n), CUBLAS_COMPUTE_32I,
                              CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (int8)");
  } else {
    int8_gemm_plain_kernel<<<blocks_for(m * n * 32, 256), 256, 0, stream>>>(codes, w, m, n, k, acc);
    LOWBIT_CUDA_CHECK_LAUNCH();
  }
  // The outlier product through cuBLAS: product[m, n] = sub_x[m, o] sub_w[o, n].
  const bool dense_outliers = outliers > 0 && (m >= kDenseOutlierRows || outliers > kMaxSummedOutliers);
  char* outlier_scratch = nullptr;
  float* product = nullptr;
  if (dense_outliers) {
    const size_t sub_x_bytes = (size_t(m) * size_t(outliers) * 2 + 15) / 16 * 16,
                 sub_w_bytes = (size_t(outliers) * size_t(n) * 2 + 15) / 16 * 16;
    LOWBIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&outlier_scratch),
                                      sub_x_bytes + sub_w_bytes + size_t(m * n) * 4, stream));
    __half* sub_x = reinterpret_cast<__half*>(outlier_scratch);
    __half* sub_w = reinterpret_cast<__half*>(outlier_scratch + sub_x_bytes);
    product = reinterpret_cast<float*>(outlier_scratch + sub_x_bytes + sub_w_bytes);
    dispatch_device_float(dtype, "linear_int8", [&](auto tag) {
      using T = decltype(tag);
      gather_outlier_x_kernel<T><<<blocks_for(m * outliers, 256), 256, 0, stream>>>(static_cast<const T*>(x), cols,
                                                                                  outliers, m, k, sub_x);
    });
    gather_outlier_weights_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(w, scb, cols, outliers, n, k, sub_w);
    LOWBIT_CUDA_CHECK_LAUNCH();
    // Row-major product[m][n] is column-major [n, m]: sub_w (n x o, ld n) times sub_x (o x m, ld o).
    const float alpha = 1.0f, beta = 0.0f;
    check_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(m), int(outliers), &alpha, sub_w,
                              CUDA_R_16F, int(n), sub_x, CUDA_R_16F, int(outliers), &beta, product, CUDA_R_32F, int(n),
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (outlier columns)");
  }
  dispatch_device_float(dtype, "linear_int8", [&](auto tag) {
    using T = decltype(tag);
    dispatch_device_float(bias_dtype, "linear_int8 bias", [&](auto btag) {
      using B = decltype(btag);
      epilogue_kernel<T, B><<<blocks_for(m * n, 256), 256, 0, stream>>>(
          acc, row_stats, scb, static_cast<const B*>(bias), static_cast<const T*>(x), w, cols, outliers, product, m,
          n, k, static_cast<T*>(out));
    });
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
  if (outlier_scratch) LOWBIT_CUDA_CHECK(cudaFreeAsync(outlier_scratch, stream));
  LOWBIT_CUDA_CHECK(cudaFreeAsync(acc, stream));
}

}  // namespace

// The outlier columns' mask and done counter [1 + ceil(k / 32)] (`zeroed`:
// the stream's ZeroedStreamBuffer, or the call's scratch zeroed first while
// the stream is being captured), their count and list [1 + k] (`listed`).
OutlierScratch outlier_scratch(uint32_t* zeroed, int32_t* listed) {
  OutlierScratch o;
  o.done = zeroed;
  o.mask = zeroed + 1;
  o.count = listed;
  o.cols = listed + 1;
  return o;
}

void gemm_int8(DType dtype, const void* x, int64_t m, const int8_t* w, const float* scb, int64_t n, int64_t k,
               DType bias_dtype, const void* bias, float threshold, void* out, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (m == 0 || n == 0) return;
  // Decoding's few rows: one fused GEMV launch.
  if (gemv_int8(dtype, x, m, w, scb, n, k, bias_dtype, bias, threshold, out, stream_ptr)) return;
  // Scratch (each part 16-byte aligned: the wgmma epilogue reads the
  // outlier activations 16 bytes at a time): codes [m, k], row stats [m],
  // then (zeroed) the outlier bitmask,
  // the done counter and the count, then the outlier list [k], then the
  // outlier product [m, n] (f32), then the outlier columns' dequantized
  // weights [kSummedOutliers, n] and activations [m, kSummedOutliers] (f32;
  // the wgmma path).
  const bool sparse = threshold > 0.0f;
  const size_t codes_bytes = (size_t(m * k) + 15) / 16 * 16, stats_bytes = (size_t(m) * 4 + 15) / 16 * 16,
               zeroed_bytes = (size_t((k + 31) / 32 + 1) * 4 + 15) / 16 * 16,
               cols_bytes = (size_t(k + 1) * 4 + 15) / 16 * 16,
               product_bytes = sparse ? (size_t(m * n) * 4 + 15) / 16 * 16 : 0,
               outlier_weights_bytes = sparse ? size_t(kSummedOutliers) * size_t(n + m) * 4 : 0;
  char* scratch = nullptr;
  LOWBIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch),
                                    codes_bytes + stats_bytes + zeroed_bytes + cols_bytes + product_bytes +
                                        outlier_weights_bytes,
                                    stream));
  int8_t* codes = reinterpret_cast<int8_t*>(scratch);
  float* row_stats = reinterpret_cast<float*>(scratch + codes_bytes);
  ZeroedStreamBuffer::Lease lease;  // held until this call's kernels are queued
  OutlierScratch o;
  if (sparse) {
    lease = ZeroedStreamBuffer::get(stream, ZeroedBufferUse::kInt8Outliers, zeroed_bytes,
                                    scratch + codes_bytes + stats_bytes);
    o = outlier_scratch(static_cast<uint32_t*>(lease.data),
                        reinterpret_cast<int32_t*>(scratch + codes_bytes + stats_bytes + zeroed_bytes));
  }
  dispatch_device_float(dtype, "linear_int8", [&](auto tag) {
    using T = decltype(tag);
    // The kernels of this op launch as programmatic dependents (each waits
    // for the one before): their launches overlap the previous one's tail.
    launch_dependent(quantize_rows_kernel<T>, dim3(unsigned(m)), dim3(kRowThreads), 0, stream,
                     static_cast<const T*>(x), k, threshold, codes, row_stats, o);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
  const bool tiled = g_path == GemmInt8Path::kTiled ||
                     (g_path == GemmInt8Path::kAuto && sparse && m < kTiledMaxRows);
  const bool wgmma_auto = g_path == GemmInt8Path::kAuto && (!sparse || m < kTiledMaxRows);
  const bool wgmma = (g_path == GemmInt8Path::kWgmma || wgmma_auto) && gemm_int8_wgmma_supports(k, codes, w);
  if (wgmma) {
    Int8OutlierTerms terms;
    if (sparse) {
      // Outlier columns: out of the int8 product for every row; up to
      // kSummedOutliers their f16 values for the epilogue to sum, beyond that
      // their 16-bit product on the tensor cores, which the epilogue adds.
      float* product = reinterpret_cast<float*>(scratch + codes_bytes + stats_bytes + zeroed_bytes + cols_bytes);
      float* w_cols = reinterpret_cast<float*>(reinterpret_cast<char*>(product) + product_bytes);
      float* x_cols = w_cols + kSummedOutliers * n;
      // Unsplit, the GEMM takes the columns' weights from its own tiles.
      if (!gemm_int8_wgmma_splits_k(m, n, k, true)) w_cols = nullptr;
      terms = Int8OutlierTerms{o.count, x_cols, w_cols, product, o.cols};
      const Int8Activations a{x, codes, row_stats, o.count, o.cols, product};
      int8_outlier_product(dtype, a, m, w, scb, n, k, codes, product, stream, x_cols, w_cols);
    }
    gemm_int8_wgmma(dtype, codes, row_stats, m, w, scb, n, k, bias_dtype, bias, terms, out, stream);
  } else if (tiled && gemm_int8_tiled_supports(k, codes, w)) {
    float* product = reinterpret_cast<float*>(scratch + codes_bytes + stats_bytes + zeroed_bytes + cols_bytes);
    const Int8Activations a{x, codes, row_stats, sparse ? o.count : nullptr, o.cols, sparse ? product : nullptr};
    if (sparse) int8_outlier_product(dtype, a, m, w, scb, n, k, codes, product, stream);
    gemm_int8_tiled(dtype, a, m, w, scb, n, k, bias_dtype, bias, out, stream);
  } else {
    gemm_int8_cublas(dtype, x, m, w, scb, n, k, bias_dtype, bias, codes, row_stats, sparse ? o.count : nullptr,
                     o.cols, out, stream);
  }
  LOWBIT_CUDA_CHECK(cudaFreeAsync(scratch, stream));
}

void linear_int8(const Tensor& x, const Tensor& codes, const Tensor& scb, const Tensor& bias, float threshold,
                 Tensor& out) {
  gemm_int8(x.dtype(), x.raw_data(), x.dim(0), codes.data<int8_t>(), scb.data<float>(), codes.dim(0), codes.dim(1),
            bias.defined() ? bias.dtype() : x.dtype(), bias.defined() ? bias.raw_data() : nullptr, threshold,
            out.raw_data(), current_cuda_stream());
}

}  // namespace lowbit::ops::cuda
