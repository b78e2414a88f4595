// CUDA kernels of the quantization formats (declared in quant/cuda/kernels.h),
// bit for bit the CPU reference (quant/cpu/*_ref.cc): the same f32 operations
// in the same order, without contraction into FMA (__fmul_rn, __fadd_rn).
//
// Blockwise quantization: one warp a block (any blocksize; the absmax is an
// fmax reduction, whose result does not depend on the order); 4-bit whole
// blocks by a vectorized kernel. Dequantization and the int8 helpers: one
// thread an element (4-bit: 16 a thread where aligned). Double quantization of
// the absmax takes torch's CUDA mean in torch's summation order on the device;
// only the offset comes back to the host.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <vector>

#include "core/cuda_runtime.h"
#include "lowbit/core/cuda_check.h"
#include "lowbit/quant/kernels.h"
#include "quant/cuda/codes_4bit.cuh"
#include "quant/cuda/kernels.h"
#include "quant/dynamic_map_search.h"
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

// Absmax of elements [lo, hi) by one warp; a partial (last) block starts from 0.
template <typename T>
__device__ float warp_block_absmax(const T* x, int64_t lo, int64_t hi, int blocksize, int lane) {
  float m = (hi - lo < blocksize) ? 0.0f : -FLT_MAX;
  for (int64_t i = lo + lane; i < hi; i += 32) m = fmaxf(m, fabsf(load(x[i])));
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  return m;
}

// The quantization block of the calling warp (one a warp): elements
// [lo, hi), its absmax stored by lane 0, and 1 / absmax to scale by.
struct WarpBlock {
  int64_t lo = 0, hi = 0;
  float scale = 0.0f;
};

// False past the end of x (the whole warp returns together).
template <typename T>
__device__ __forceinline__ bool take_warp_block(const T* x, int64_t n, int blocksize, float* absmax, WarpBlock& b) {
  const int64_t block = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  b.lo = block * blocksize;
  if (b.lo >= n) return false;
  b.hi = min(n, b.lo + blocksize);
  const float m = warp_block_absmax(x, b.lo, b.hi, blocksize, lane);
  if (lane == 0) absmax[block] = m;
  b.scale = gpu_reciprocal(m);
  return true;
}

template <typename T>
__global__ void quantize_4bit_kernel(const T* x, int64_t n, bool nf4, int blocksize, uint8_t* packed, float* absmax) {
  WarpBlock wb;
  if (!take_warp_block(x, n, blocksize, absmax, wb)) return;
  for (int64_t i = wb.lo + 2 * (threadIdx.x & 31); i < wb.hi; i += 64) {
    const float a = __fmul_rn(load(x[i]), wb.scale);
    const float b = __fmul_rn(i + 1 < wb.hi ? load(x[i + 1]) : 0.0f, wb.scale);
    packed[i / 2] = nf4 ? uint8_t(nf4_code(a) << 4 | nf4_code(b)) : uint8_t(fp4_code(a) << 4 | fp4_code(b));
  }
}

// The same numbers for whole blocks, at memory speed: a thread takes 16
// consecutive elements (16-byte loads) and stores their 8 code bytes at once.
// A quant block is `lanes` = blocksize / 16 consecutive threads of one CUDA
// block (blocksize <= 4096 = 256 x 16); their absmax meets by shuffles, and
// through shared memory when the block spans warps.
constexpr int kVectorThreads = 256;

template <typename T>
__device__ __forceinline__ void load16(const T* p, float* v) {
  uint4 raw[sizeof(T)];  // 16 elements = sizeof(T) x 16 bytes
#pragma unroll
  for (int i = 0; i < int(sizeof(T)); ++i) raw[i] = __ldcs(reinterpret_cast<const uint4*>(p) + i);
  const T* e = reinterpret_cast<const T*>(raw);
#pragma unroll
  for (int i = 0; i < 16; ++i) v[i] = load(e[i]);
}

template <typename T, bool kNF4>
__global__ void __launch_bounds__(kVectorThreads)
    quantize_4bit_vectorized_kernel(const T* x, int64_t groups, int lanes, uint8_t* packed, float* absmax) {
  __shared__ float warp_max[kVectorThreads / 32];
  __shared__ float nf4_thresholds[16], fp4_thresholds[16];
  if (threadIdx.x < 16) fill_threshold_tables(nf4_thresholds, fp4_thresholds, threadIdx.x);
  __syncthreads();
  const int warp = threadIdx.x / 32;
  for (int64_t first = int64_t(blockIdx.x) * kVectorThreads; first < groups;
       first += int64_t(gridDim.x) * kVectorThreads) {
    // groups and kVectorThreads are multiples of lanes: a quant block is all in range or all out.
    const int64_t g = first + threadIdx.x;
    float v[16];
    float m = -FLT_MAX;
    if (g < groups) {
      load16(x + g * 16, v);
#pragma unroll
      for (int i = 0; i < 16; ++i) m = fmaxf(m, fabsf(v[i]));
    }
    for (int off = min(lanes, 32) / 2; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (lanes > 32) {
      if (threadIdx.x % 32 == 0) warp_max[warp] = m;
      __syncthreads();
      const int warps = lanes / 32, first_warp = warp / warps * warps;
      for (int w = first_warp; w < first_warp + warps; ++w) m = fmaxf(m, warp_max[w]);
      __syncthreads();
    }
    if (g >= groups) continue;
    if (threadIdx.x % lanes == 0) absmax[g / lanes] = m;
    const float scale = gpu_reciprocal(m);
    uint32_t word[2] = {0, 0};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float a = __fmul_rn(v[2 * j], scale), b = __fmul_rn(v[2 * j + 1], scale);
      const uint32_t byte = kNF4 ? (nf4_code_search(a, nf4_thresholds) << 4 | nf4_code_search(b, nf4_thresholds))
                                 : (fp4_code_search(a, fp4_thresholds) << 4 | fp4_code_search(b, fp4_thresholds));
      word[j / 4] |= byte << (8 * (j % 4));
    }
    __stcs(reinterpret_cast<uint2*>(packed) + g, make_uint2(word[0], word[1]));
  }
}

unsigned persistent_blocks(int64_t work_blocks) {
  return unsigned(std::min<int64_t>(work_blocks, int64_t(::lowbit::detail::cuda_multiprocessors()) * 8));
}

struct Code16 {
  float v[16];
};

template <typename T>
__global__ void dequantize_4bit_kernel(const uint8_t* packed, const float* absmax, int64_t n, Code16 code, int blocksize,
                                       T* out, int64_t first = 0) {
  const int64_t i = first + int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint8_t byte = packed[i / 2];
  const int q = (i & 1) ? (byte & 0x0f) : (byte >> 4);
  out[i] = store<T>(__fmul_rn(code.v[q], absmax[i / blocksize]));
}

// Whole 16-element groups at memory speed: 8 code bytes in (one 8-byte load),
// 16 values out (16-byte stores); a group never straddles a quant block
// (block sizes are multiples of 16). Same products as the kernel above.
template <typename T>
__global__ void __launch_bounds__(kVectorThreads)
    dequantize_4bit_vectorized_kernel(const uint8_t* packed, const float* absmax, int64_t groups, Code16 code,
                                      int blocksize, T* out) {
  __shared__ float table[16];
  if (threadIdx.x < 16) table[threadIdx.x] = code.v[threadIdx.x];
  __syncthreads();
  for (int64_t g = int64_t(blockIdx.x) * kVectorThreads + threadIdx.x; g < groups;
       g += int64_t(gridDim.x) * kVectorThreads) {
    const uint2 bytes = __ldcs(reinterpret_cast<const uint2*>(packed) + g);
    const float scale = absmax[g * 16 / blocksize];
    alignas(16) T values[16];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const uint32_t byte = (j < 4 ? bytes.x : bytes.y) >> (8 * (j % 4)) & 0xffu;
      values[2 * j] = store<T>(__fmul_rn(table[byte >> 4], scale));
      values[2 * j + 1] = store<T>(__fmul_rn(table[byte & 0xf], scale));
    }
#pragma unroll
    for (int i = 0; i < int(sizeof(T)); ++i)
      __stcs(reinterpret_cast<uint4*>(out + g * 16) + i, reinterpret_cast<const uint4*>(values)[i]);
  }
}

template <typename T>
__global__ void quantize_dynamic8_kernel(const T* x, int64_t n, const float* code, int blocksize, uint8_t* codes,
                                         float* absmax) {
  __shared__ float map[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) map[i] = code[i];
  __syncthreads();
  WarpBlock wb;
  if (!take_warp_block(x, n, blocksize, absmax, wb)) return;
  for (int64_t i = wb.lo + (threadIdx.x & 31); i < wb.hi; i += 32)
    codes[i] = quantize_dynamic(map, __fmul_rn(load(x[i]), wb.scale));
}

template <typename T>
__global__ void dequantize_dynamic8_kernel(const uint8_t* codes, const float* absmax, const float* code, int64_t n,
                                           int blocksize, T* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = store<T>(__fmul_rn(code[codes[i]], absmax[i / blocksize]));
}

// scalar::torch_cuda_mean on the device, in its order: `width` threads with
// four strided accumulators each, a shared-memory tree down to 32 lanes, then
// a shuffle-down tree. One block; the absmax vector is n / blocksize values.
__global__ void torch_mean_kernel(const float* x, int64_t n, int width, float* mean) {
  __shared__ float lanes[512];
  const int lane = threadIdx.x;
  if (lane < width) {  // the block has at least a warp, for the shuffles
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int64_t idx = lane;
    for (; idx + 3 * int64_t(width) < n; idx += 4 * int64_t(width))
      for (int k = 0; k < 4; ++k) acc[k] = __fadd_rn(acc[k], x[idx + k * int64_t(width)]);
    for (int k = 0; k < 4 && idx < n; ++k, idx += width) acc[k] = __fadd_rn(acc[k], x[idx]);
    lanes[lane] = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], acc[1]), acc[2]), acc[3]);
  }
  __syncthreads();
  int dim = width;
  for (int offset = dim / 2; dim > 32 && offset >= 32; offset /= 2) {
    if (lane < offset) lanes[lane] = __fadd_rn(lanes[lane], lanes[lane + offset]);
    __syncthreads();
  }
  dim = min(dim, 32);
  if (lane >= 32) return;
  float v = lane < dim ? lanes[lane] : 0.0f;
  for (int offset = 1; offset < dim; offset *= 2) {
    const float partner = __shfl_down_sync(0xffffffffu, v, offset);
    if (lane + offset < dim) v = __fadd_rn(v, partner);
  }
  if (lane == 0) *mean = __fmul_rn(v, 1.0f / float(n));
}

__global__ void subtract_kernel(const float* x, int64_t n, const float* offset, float* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __fsub_rn(x[i], *offset);
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

__global__ void reciprocal_kernel(const float* x, int64_t n, float* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = gpu_reciprocal(x[i]);
}

}  // namespace

void reciprocal_approx(const float* x, int64_t n, float* out) {
  if (n == 0) return;
  reciprocal_kernel<<<blocks_for(n, kThreads), kThreads>>>(x, n, out);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void quantize_4bit(DType dtype, const void* x, int64_t n, QuantType type, int blocksize, uint8_t* packed,
                   float* absmax) {
  if (n == 0) return;
  const bool nf4 = type == QuantType::NF4;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* xt = static_cast<const T*>(x);
    // Whole blocks by the vectorized kernel when the layout allows 16-byte
    // loads; the rest (a partial last block, odd alignment) one warp a block.
    int64_t done = 0;
    const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(packed) % 8 == 0;
    if (aligned && blocksize % 16 == 0 && blocksize <= 16 * kVectorThreads && n >= blocksize) {
      done = n / blocksize * blocksize;
      const int64_t groups = done / 16;
      const unsigned grid = persistent_blocks((groups + kVectorThreads - 1) / kVectorThreads);
      if (nf4)
        quantize_4bit_vectorized_kernel<T, true><<<grid, kVectorThreads>>>(xt, groups, blocksize / 16, packed, absmax);
      else
        quantize_4bit_vectorized_kernel<T, false><<<grid, kVectorThreads>>>(xt, groups, blocksize / 16, packed, absmax);
      LOWBIT_CUDA_CHECK_LAUNCH();
    }
    if (done < n) {
      const int64_t blocks = (n - done + blocksize - 1) / blocksize;
      quantize_4bit_kernel<T><<<blocks_for(blocks * 32, kThreads), kThreads>>>(
          xt + done, n - done, nf4, blocksize, packed + done / 2, absmax + done / blocksize);
      LOWBIT_CUDA_CHECK_LAUNCH();
    }
  });
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
    T* out_t = static_cast<T*>(out);
    int64_t done = 0;
    if (reinterpret_cast<uintptr_t>(packed) % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0) {
      done = n / 16 * 16;
      const int64_t groups = done / 16;
      if (groups > 0) {
        dequantize_4bit_vectorized_kernel<T><<<persistent_blocks((groups + kVectorThreads - 1) / kVectorThreads),
                                               kVectorThreads>>>(packed, absmax, groups, code, blocksize, out_t);
        LOWBIT_CUDA_CHECK_LAUNCH();
      }
    }
    if (done < n) {
      // The rest one thread an element, indexing from the start of the tensor.
      dequantize_4bit_kernel<T><<<blocks_for(n - done, kThreads), kThreads>>>(packed, absmax, n, code, blocksize,
                                                                             out_t, done);
      LOWBIT_CUDA_CHECK_LAUNCH();
    }
  });
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
  int width = 1;  // as scalar::torch_cuda_mean
  while (int64_t(width) * 2 <= blocks / 2 && width < 512) width *= 2;
  float* scratch = nullptr;  // [0]: the mean; [1, blocks]: absmax - mean
  LOWBIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch), size_t(blocks + 1) * 4, 0));
  torch_mean_kernel<<<1, std::max(width, 32)>>>(absmax, blocks, width, scratch);
  LOWBIT_CUDA_CHECK_LAUNCH();
  subtract_kernel<<<blocks_for(blocks, kThreads), kThreads>>>(absmax, blocks, scratch, scratch + 1);
  LOWBIT_CUDA_CHECK_LAUNCH();
  const int64_t outer = (blocks + nested_blocksize - 1) / nested_blocksize;
  quantize_dynamic8_kernel<float><<<blocks_for(outer * 32, kThreads), kThreads>>>(scratch + 1, blocks, code,
                                                                                  nested_blocksize, qabsmax,
                                                                                  nested_absmax);
  LOWBIT_CUDA_CHECK_LAUNCH();
  float offset = 0.0f;
  LOWBIT_CUDA_CHECK(cudaMemcpy(&offset, scratch, 4, cudaMemcpyDeviceToHost));
  LOWBIT_CUDA_CHECK(cudaFreeAsync(scratch, 0));
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
