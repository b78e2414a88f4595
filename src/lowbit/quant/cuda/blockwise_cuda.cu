// CUDA kernels of the quantization formats (declared in quant/cuda/kernels.h),
// bit for bit the CPU reference (quant/cpu/*_ref.cc): the same f32 operations
// in the same order, without contraction into FMA (__fmul_rn, __fadd_rn).
//
// Blockwise quantization: one warp a block (any blocksize; the absmax is an
// fmax reduction, whose result does not depend on the order). Dequantization
// and the int8 helpers: one thread an element. Double quantization of the
// absmax (quantize_nested_absmax) needs torch's CUDA mean, reproduced on the
// host: the absmax values (one per block, n / blocksize of them) make the round
// trip to host memory; its dequantization runs on the device.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <vector>

#include "lowbit/core/cuda_check.h"
#include "lowbit/quant/kernels.h"
#include "quant/cuda/kernels.h"
#include "quant/reciprocal.h"

namespace lowbit::quant::cuda {
namespace {

constexpr int kThreads = 256;
constexpr float kInv127 = 7.874015718698502e-3f;

__device__ __forceinline__ float load(float v) { return v; }
__device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float load(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T store(float v);
template <> __device__ __forceinline__ float store<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half store<__half>(float v) { return __float2half_rn(v); }

template <typename Fn>
void dispatch(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::F32: fn(float{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    default: throw_error("CUDA quantization: expected an f32, f16 or bf16 tensor");
  }
}

unsigned blocks_for(int64_t items, int threads) { return unsigned((items + threads - 1) / threads); }

// The decision trees of bitsandbytes' dQuantizeNF4 / dQuantizeFP4.
__device__ uint8_t quantize_nf4(float x) {
  if (x > 0.03979014977812767f) {
    if (x > 0.3893125355243683f) {
      if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 0b1111 : 0b1110;
      return x > 0.5016634166240692f ? 0b1101 : 0b1100;
    }
    if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 0b1011 : 0b1010;
    return x > 0.1202552504837513f ? 0b1001 : 0b1000;
  }
  if (x > -0.33967943489551544f) {
    if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 0b0111 : 0b0110;
    return x > -0.23460740596055984f ? 0b0101 : 0b0100;
  }
  if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 0b0011 : 0b0010;
  return x > -0.8480964004993439f ? 0b0001 : 0b0000;
}

__device__ uint8_t quantize_fp4(float x) {
  const uint8_t sign = x < 0 ? 0b1000 : 0b0000;
  x = fabsf(x);
  if (x > 0.29166667f) {
    if (x > 0.583333f) return uint8_t((x > 0.8333333f ? 0b0011 : 0b0010) + sign);
    return uint8_t((x > 0.4166667f ? 0b0101 : 0b0100) + sign);
  }
  if (x > 0.0859375f) return uint8_t((x > 0.20833333f ? 0b0111 : 0b0110) + sign);
  return uint8_t((x > 0.00260417f ? 0b0001 : 0b0000) + sign);
}

// bitsandbytes' binary search over the 256-entry dynamic map.
__device__ uint8_t quantize_dynamic(const float* code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upper_pivot == 255) upper = code[upper_pivot];
  if (lower_pivot == 0) lower = code[lower_pivot];
  if (x > val) {
    const float midpoint = __fmul_rn(__fadd_rn(upper, val), 0.5f);
    return uint8_t(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = __fmul_rn(__fadd_rn(lower, val), 0.5f);
  return uint8_t(x < midpoint ? lower_pivot : pivot);
}

// Absmax of elements [lo, hi) by one warp; a partial (last) block starts from 0.
template <typename T>
__device__ float warp_block_absmax(const T* x, int64_t lo, int64_t hi, int blocksize, int lane) {
  float m = (hi - lo < blocksize) ? 0.0f : -FLT_MAX;
  for (int64_t i = lo + lane; i < hi; i += 32) m = fmaxf(m, fabsf(load(x[i])));
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  return m;
}

template <typename T>
__global__ void quantize_4bit_kernel(const T* x, int64_t n, bool nf4, int blocksize, uint8_t* packed, float* absmax) {
  const int64_t block = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  const int64_t lo = block * blocksize;
  if (lo >= n) return;
  const int64_t hi = min(n, lo + blocksize);
  const float m = warp_block_absmax(x, lo, hi, blocksize, lane);
  if (lane == 0) absmax[block] = m;
  const float scale = gpu_reciprocal(m);
  for (int64_t i = lo + 2 * lane; i < hi; i += 64) {
    const float a = __fmul_rn(load(x[i]), scale);
    const float b = __fmul_rn(i + 1 < hi ? load(x[i + 1]) : 0.0f, scale);
    packed[i / 2] = nf4 ? uint8_t(quantize_nf4(a) << 4 | quantize_nf4(b)) : uint8_t(quantize_fp4(a) << 4 | quantize_fp4(b));
  }
}

struct Code16 {
  float v[16];
};

template <typename T>
__global__ void dequantize_4bit_kernel(const uint8_t* packed, const float* absmax, int64_t n, Code16 code, int blocksize,
                                       T* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint8_t byte = packed[i / 2];
  const int q = (i & 1) ? (byte & 0x0f) : (byte >> 4);
  out[i] = store<T>(__fmul_rn(code.v[q], absmax[i / blocksize]));
}

template <typename T>
__global__ void quantize_dynamic8_kernel(const T* x, int64_t n, const float* code, int blocksize, uint8_t* codes,
                                         float* absmax) {
  __shared__ float map[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) map[i] = code[i];
  __syncthreads();
  const int64_t block = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  const int64_t lo = block * blocksize;
  if (lo >= n) return;
  const int64_t hi = min(n, lo + blocksize);
  const float m = warp_block_absmax(x, lo, hi, blocksize, lane);
  if (lane == 0) absmax[block] = m;
  const float scale = gpu_reciprocal(m);
  for (int64_t i = lo + lane; i < hi; i += 32) codes[i] = quantize_dynamic(map, __fmul_rn(load(x[i]), scale));
}

template <typename T>
__global__ void dequantize_dynamic8_kernel(const uint8_t* codes, const float* absmax, const float* code, int64_t n,
                                           int blocksize, T* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = store<T>(__fmul_rn(code[codes[i]], absmax[i / blocksize]));
}

__global__ void dequantize_nested_kernel(const uint8_t* q, const float* nested, const float* code, int64_t blocks,
                                         int nested_blocksize, float offset, float* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < blocks) out[i] = __fadd_rn(__fmul_rn(code[q[i]], nested[i / nested_blocksize]), offset);
}

__device__ __forceinline__ int8_t to_int8_rn(float v) {
  if (isnan(v)) return 0;
  return int8_t(uint8_t(uint32_t(__float2int_rn(v)) & 0xffu));
}

template <typename T>
__global__ void __launch_bounds__(kThreads) int8_rows_kernel(const T* a, int64_t cols, float threshold, int8_t* codes,
                                                             float* row_stats) {
  __shared__ float partial[kThreads / 32];
  const T* row = a + int64_t(blockIdx.x) * cols;
  const bool sparse = threshold > 0.0f;
  float m = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float v = fabsf(load(row[c]));
    if (!sparse || v < threshold) m = fmaxf(m, v);
  }
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = m;
  __syncthreads();
  m = partial[0];
  for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, partial[w]);
  if (threadIdx.x == 0) row_stats[blockIdx.x] = m;
  const float scale = __fmul_rn(127.0f, gpu_reciprocal(m));
  int8_t* out = codes + int64_t(blockIdx.x) * cols;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float v = load(row[c]);
    out[c] = (!sparse || fabsf(v) < threshold) ? to_int8_rn(__fmul_rn(v, scale)) : int8_t(0);
  }
}

template <typename T>
__global__ void outlier_mask_kernel(const T* a, int64_t rows, int64_t cols, float threshold, uint8_t* mask) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  uint8_t any = 0;
  for (int64_t r = 0; r < rows; ++r) any |= fabsf(load(a[r * cols + c])) >= threshold;
  mask[c] = any;
}

__global__ void zero_columns_kernel(int8_t* codes, int64_t rows, int64_t cols, const int32_t* columns, int64_t k) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * k) codes[(i / k) * cols + columns[i % k]] = 0;
}

template <typename T>
__global__ void int8_dequant_kernel(const int8_t* codes, const float* row_stats, int64_t rows, int64_t cols, T* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * cols) out[i] = store<T>(__fmul_rn(__fmul_rn(float(codes[i]), row_stats[i / cols]), kInv127));
}

}  // namespace

void quantize_4bit(DType dtype, const void* x, int64_t n, QuantType type, int blocksize, uint8_t* packed,
                   float* absmax) {
  if (n == 0) return;
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    quantize_4bit_kernel<T><<<blocks_for(blocks * 32, kThreads), kThreads>>>(
        static_cast<const T*>(x), n, type == QuantType::NF4, blocksize, packed, absmax);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void dequantize_4bit(DType out_dtype, const uint8_t* packed, const float* absmax, int64_t n, QuantType type,
                     int blocksize, void* out) {
  if (n == 0) return;
  // The CPU kernels' value table (for FP4, bitsandbytes' dequantization
  // values in code order, not formats.h's table).
  Code16 code{};
  const float* table = cpu::lut_4bit(type);
  for (int i = 0; i < 16; ++i) code.v[i] = table[i];
  dispatch(out_dtype, [&](auto tag) {
    using T = decltype(tag);
    dequantize_4bit_kernel<T><<<blocks_for(n, kThreads), kThreads>>>(packed, absmax, n, code, blocksize,
                                                                     static_cast<T*>(out));
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void quantize_dynamic8(DType dtype, const void* x, int64_t n, const float* code, int blocksize, uint8_t* codes,
                       float* absmax) {
  if (n == 0) return;
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    quantize_dynamic8_kernel<T><<<blocks_for(blocks * 32, kThreads), kThreads>>>(static_cast<const T*>(x), n, code,
                                                                                 blocksize, codes, absmax);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void dequantize_dynamic8(DType out_dtype, const uint8_t* codes, const float* absmax, const float* code, int64_t n,
                         int blocksize, void* out) {
  if (n == 0) return;
  dispatch(out_dtype, [&](auto tag) {
    using T = decltype(tag);
    dequantize_dynamic8_kernel<T><<<blocks_for(n, kThreads), kThreads>>>(codes, absmax, code, n, blocksize,
                                                                         static_cast<T*>(out));
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void dequantize_nested_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* code, int64_t blocks,
                              int nested_blocksize, float offset, float* out) {
  if (blocks == 0) return;
  dequantize_nested_kernel<<<blocks_for(blocks, kThreads), kThreads>>>(qabsmax, nested_absmax, code, blocks,
                                                                       nested_blocksize, offset, out);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

float quantize_nested_absmax(const float* absmax, int64_t blocks, const float* code, int nested_blocksize,
                             uint8_t* qabsmax, float* nested_absmax) {
  if (blocks == 0) return 0.0f;
  const int64_t outer = (blocks + nested_blocksize - 1) / nested_blocksize;
  std::vector<float> host_absmax(static_cast<size_t>(blocks)), host_code(256),
      host_nested(static_cast<size_t>(outer));
  std::vector<uint8_t> host_q(static_cast<size_t>(blocks));
  LOWBIT_CUDA_CHECK(cudaMemcpy(host_absmax.data(), absmax, size_t(blocks) * 4, cudaMemcpyDeviceToHost));
  LOWBIT_CUDA_CHECK(cudaMemcpy(host_code.data(), code, 256 * 4, cudaMemcpyDeviceToHost));
  const float offset = cpu::quantize_nested_absmax(host_absmax.data(), blocks, host_code.data(), nested_blocksize,
                                                   host_q.data(), host_nested.data());
  LOWBIT_CUDA_CHECK(cudaMemcpy(qabsmax, host_q.data(), size_t(blocks), cudaMemcpyHostToDevice));
  LOWBIT_CUDA_CHECK(cudaMemcpy(nested_absmax, host_nested.data(), size_t(outer) * 4, cudaMemcpyHostToDevice));
  return offset;
}

void int8_vectorwise_quant(DType dtype, const void* a, int64_t rows, int64_t cols, float threshold, int8_t* codes,
                           float* row_stats) {
  if (rows == 0) return;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    int8_rows_kernel<T><<<unsigned(rows), kThreads>>>(static_cast<const T*>(a), cols, threshold, codes, row_stats);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void int8_outlier_column_mask(DType dtype, const void* a, int64_t rows, int64_t cols, float threshold, uint8_t* mask) {
  if (cols == 0) return;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    outlier_mask_kernel<T><<<blocks_for(cols, kThreads), kThreads>>>(static_cast<const T*>(a), rows, cols, threshold,
                                                                     mask);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void int8_zero_columns(int8_t* codes, int64_t rows, int64_t cols, const int32_t* columns, int64_t k) {
  if (rows == 0 || k == 0) return;
  zero_columns_kernel<<<blocks_for(rows * k, kThreads), kThreads>>>(codes, rows, cols, columns, k);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void int8_vectorwise_dequant(DType out_dtype, const int8_t* codes, const float* row_stats, int64_t rows, int64_t cols,
                             void* out) {
  if (rows * cols == 0) return;
  dispatch(out_dtype, [&](auto tag) {
    using T = decltype(tag);
    int8_dequant_kernel<T><<<blocks_for(rows * cols, kThreads), kThreads>>>(codes, row_stats, rows, cols,
                                                                            static_cast<T*>(out));
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

}  // namespace lowbit::quant::cuda
