// LLM.int8's outlier columns when there are many of them (any of a prompt's
// rows flags a column: with hundreds of rows, hundreds to thousands of
// columns): product[m, n] = f16(x[:, cols]) x f16(code[:, cols] * SCB / 127)^T
// on the tensor cores (mma.sync m16n8k16, f16 in, f32 sums), without the host
// learning how many columns there are. The GEMM's epilogue adds the product.
//
// Tiling: a block computes 64 rows x 128 features with 8 warps (2 x 4, 32 x 32
// each: 2 x 4 m16n8 tiles). The outlier columns go 64 at a time: each thread
// gathers its share (16 x values of one row, 32 weight codes of one feature)
// into registers one chunk ahead, so that the scattered loads of chunk c + 1
// are in flight while chunk c's mma run; then dequantizes them into padded
// shared-memory rows (144 bytes: the 8 rows one ldmatrix phase reads fall in
// distinct banks). Memory traffic: x's and w's outlier columns once per block
// row / column tile (from L2 after the first), the product m x n x 4 bytes.
// The blocks of the first feature tile also zero the outlier columns' codes,
// so that the int8 GEMM that follows leaves them out. With up to 64 columns
// the same launch instead gathers them for the wgmma GEMM's epilogue (when
// asked to), which sums them itself: one launch either way, the count being
// known only on the device.
#include <cuda_fp16.h>

#include <cstdint>

#include "ops/cuda/cuda_common.h"
#include "ops/cuda/int8_epilogue.cuh"
#include "ops/cuda/gemm_int8_cuda.h"

namespace lowbit::ops::cuda {
namespace {

constexpr int kRows = 64, kFeatures = 128, kThreads = 256;
constexpr int kChunk = 64;             // outlier columns a step
constexpr int kStride = kChunk + 8;    // halves a shared row (144 bytes)
constexpr int kXPerThread = kRows * kChunk / kThreads;      // 16
constexpr int kWPerThread = kFeatures * kChunk / kThreads;  // 32

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Up to kSummedOutliers columns, for the wgmma GEMM's epilogue to sum in the
// CPU's order (gathered over the whole grid, one load a thread):
// w_cols[o][j] = column o's weights dequantized as bitsandbytes does and
// rounded to f16 (unless w_cols is null: one 32-byte sector a weight row and
// column, 14.5 us of 8192 x 28672's scattered reads for 9 columns, which the
// GEMM avoids by taking them from its tiles), x_cols[r][o] = f16(x[r][c]);
// and the columns' codes zeroed so that the int8 product leaves them out.
template <typename T>
__device__ void gather_summed_columns(const T* x, const int32_t* cols, int32_t outliers, const int8_t* w,
                                      const float* scb, int64_t m, int64_t n, int64_t k, int8_t* codes, float* x_cols,
                                      float* w_cols) {
  const int64_t threads = int64_t(gridDim.x) * gridDim.y * kThreads;
  const int64_t first = (int64_t(blockIdx.y) * gridDim.x + blockIdx.x) * kThreads + threadIdx.x;
  if (w_cols)
    for (int64_t i = first; i < int64_t(outliers) * n; i += threads) {
      const int64_t o = i / n, j = i % n;
      w_cols[i] = round_f16(outlier_weight(w[j * k + cols[o]], scb[j]));
    }
  for (int64_t i = first; i < m * outliers; i += threads) {
    const int64_t r = i / outliers, o = i % outliers, c = cols[o];
    x_cols[r * kSummedOutliers + o] = round_f16(to_float(x[r * k + c]));
    codes[r * k + c] = 0;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    outlier_product_kernel(const T* x, const int32_t* count, const int32_t* cols, const int8_t* w, const float* scb,
                           int64_t m, int64_t n, int64_t k, int8_t* codes, float* product, float* x_cols,
                           float* w_cols) {
  wait_for_previous_grid();  // the count comes from the row quantization
  const int32_t outliers = *count;
  if (outliers <= kSummedOutliers) {
    if (x_cols) gather_summed_columns(x, cols, outliers, w, scb, m, n, k, codes, x_cols, w_cols);
    return;
  }
  __shared__ __align__(16) __half sx[kRows * kStride];
  __shared__ __align__(16) __half sw[kFeatures * kStride];
  const int64_t m0 = int64_t(blockIdx.x) * kRows, n0 = int64_t(blockIdx.y) * kFeatures;
  if (blockIdx.y == 0)
    for (int64_t q = threadIdx.x; q < int64_t(kRows) * outliers; q += kThreads) {
      const int64_t row = m0 + q / outliers;
      if (row < m) codes[row * k + cols[q % outliers]] = 0;
    }

  // This thread's gather: x row xr, columns xo..xo+15 of a chunk; feature wf,
  // columns wo..wo+31.
  const int xr = threadIdx.x / (kChunk / kXPerThread), xo = threadIdx.x % (kChunk / kXPerThread) * kXPerThread;
  const int wf = threadIdx.x / (kChunk / kWPerThread), wo = threadIdx.x % (kChunk / kWPerThread) * kWPerThread;
  const bool x_inside = m0 + xr < m, w_inside = n0 + wf < n;
  const float s = w_inside ? scb[n0 + wf] : 0.0f;
  const T* xrow = x + (x_inside ? (m0 + xr) * k : 0);
  const int8_t* wrow = w + (w_inside ? (n0 + wf) * k : 0);
  __half xv[kXPerThread];
  int8_t wv[kWPerThread];
  auto gather = [&](int32_t first) {
#pragma unroll
    for (int i = 0; i < kXPerThread; ++i) {
      const int32_t o = first + xo + i;
      xv[i] = __float2half_rn(x_inside && o < outliers ? to_float(xrow[cols[o]]) : 0.0f);
    }
#pragma unroll
    for (int i = 0; i < kWPerThread; ++i) {
      const int32_t o = first + wo + i;
      wv[i] = w_inside && o < outliers ? wrow[cols[o]] : int8_t(0);
    }
  };

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warp_m = warp % 2, warp_n = warp / 2;
  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
  const uint32_t sx_base = uint32_t(__cvta_generic_to_shared(sx)), sw_base = uint32_t(__cvta_generic_to_shared(sw));

  gather(0);
  for (int32_t first = 0; first < outliers; first += kChunk) {
#pragma unroll
    for (int i = 0; i < kXPerThread; ++i) sx[xr * kStride + xo + i] = xv[i];
#pragma unroll
    for (int i = 0; i < kWPerThread; ++i)
      sw[wf * kStride + wo + i] = __float2half_rn(outlier_weight(wv[i], s));
    __syncthreads();
    if (first + kChunk < outliers) gather(first + kChunk);
#pragma unroll
    for (int kk = 0; kk < kChunk / 16; ++kk) {
      uint32_t a[2][4], b[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        ldmatrix_x4(sx_base + 2 * ((warp_m * 32 + i * 16 + (lane & 15)) * kStride + kk * 16 + (lane >> 4) * 8),
                    a[i][0], a[i][1], a[i][2], a[i][3]);
#pragma unroll
      for (int j = 0; j < 4; j += 2)
        ldmatrix_x4(sw_base + 2 * ((warp_n * 32 + j * 8 + (lane & 7) + ((lane >> 4) << 3)) * kStride + kk * 16 +
                                   ((lane >> 3) & 1) * 8),
                    b[j][0], b[j][1], b[j + 1][0], b[j + 1][1]);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_f16(acc[i][j], a[i], b[j]);
    }
    __syncthreads();
  }

  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t row = m0 + warp_m * 32 + i * 16 + g + (e >> 1) * 8;
        const int64_t col = n0 + warp_n * 32 + j * 8 + 2 * t + (e & 1);
        if (row < m && col < n) product[row * n + col] = acc[i][j][e];
      }
}

}  // namespace

void int8_outlier_product(DType dtype, const Int8Activations& a, int64_t m, const int8_t* w, const float* scb,
                          int64_t n, int64_t k, int8_t* codes, float* product, void* stream, float* x_cols,
                          float* w_cols) {
  const dim3 grid(unsigned((m + kRows - 1) / kRows), unsigned((n + kFeatures - 1) / kFeatures));
  dispatch_device_float(dtype, "linear_int8", [&](auto tag) {
    using T = decltype(tag);
    launch_dependent(outlier_product_kernel<T>, grid, dim3(kThreads), 0, static_cast<cudaStream_t>(stream),
                     static_cast<const T*>(a.x), a.outlier_count, a.outlier_cols, w, scb, m, n, k, codes, product,
                     x_cols, w_cols);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

}  // namespace lowbit::ops::cuda
