// LLM.int8 GEMM for prompts (m > 4): int8 x int8 on the tensor cores
// (mma.sync m16n8k32, int32 accumulators) with bitsandbytes' dequantization,
// the bias and the outlier columns' 16-bit product in the epilogue, so that
// the int32 products never leave the registers and nothing waits on the host.
//
// Tiling (rows = tokens, cols = output features; both operands k-contiguous):
//
//          k ->  128-byte stages (3-6, cp.async, zero-filled past k)
//        +-----------------+
//   x    | codes  [kM x 128]  A tiles     block (kM x kN):  kWarpsM x kWarpsN warps,
//        +-----------------+                                each warp kWarpM x kWarpN,
//   w    | weight [kN x 128]  B tiles     (kWarpM/16) x (kWarpN/8) m16n8k32 tiles
//        +-----------------+
//
// Shared memory rows are 128 bytes (8 chunks of 16); chunk c of row r sits at
// c ^ (r % 8), so that the 8 rows one ldmatrix phase reads, and the 8 chunks a
// cp.async phase writes, fall in distinct banks. An int8 m16n8k32 fragment is
// an f16 m16n8k16 fragment with twice the elements, so ldmatrix.x4 loads one A
// fragment or two B fragments.
// Blocks run token tiles fastest: the few blocks sharing a weight tile run
// together and read it from DRAM once; the activation codes (m x k bytes) stay
// in L2 for every feature tile. Memory traffic: the weight once, codes
// ceil(n / kN) times from L2, the output once (m x n x sizeof(T)).
//
// Outliers: up to kSummedOutliers (64) columns, the row quantization leaves
// other rows' outlier columns in the codes (zeroing them needs all rows
// first); the epilogue subtracts their exact int32 share, code(x) * code(w),
// then adds f16(x) * f16(code(w) * SCB / 127) in f32 column by column in
// ascending order, as the CPU op does, so the result has the CPU's bits. The
// columns are staged in shared memory 32 at a time (x, codes, dequantized
// weights of the block's rows and features). Beyond 64 columns their codes
// were zeroed and their product computed by int8_outlier_product; the
// epilogue adds it.
// Measured (docs/cuda.md): 34% of issue slots and 25% of the tensor pipe busy
// at 256 x 4096 x 11008, 12 warps an SM (3 blocks of 4): latency-bound, below
// cuBLAS's int8 GEMM; wgmma (sm_90a) would be the next step.
#include "ops/cuda/gemm_int8_cuda.h"

#include <algorithm>
#include <cstdint>

#include "ops/cuda/cuda_common.h"
#include "ops/cuda/int8_epilogue.cuh"

namespace lowbit::ops::cuda {
namespace {

constexpr int kTileK = 128;                       // bytes of k a stage holds per row
constexpr int kOutlierChunk = 32;                 // outlier columns staged at once

template <int M, int N, int WarpM, int WarpN, int Stages, int MinBlocks>
struct Tile {
  static constexpr int kM = M, kN = N, kWarpM = WarpM, kWarpN = WarpN, kStages = Stages, kMinBlocks = MinBlocks;
  static constexpr int kWarpsM = M / WarpM, kWarpsN = N / WarpN;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kMI = WarpM / 16, kNI = WarpN / 8;  // mma tiles a warp
  static constexpr int kStageBytes = (M + N) * kTileK;
  // Outlier staging: x [M][33] f32, w [32][N] f32, codes [M][32] and [32][N] int8.
  static constexpr int kStagedBytes = M * (kOutlierChunk + 1) * 4 + kOutlierChunk * N * 4 + (M + N) * kOutlierChunk;
  static constexpr int kSmemBytes = std::max(kStageBytes * Stages, kStagedBytes);
  static_assert(kNI % 2 == 0 && (M * 8) % kThreads == 0 && (N * 8) % kThreads == 0);
};

__device__ __forceinline__ uint32_t swizzled(int row, int chunk) {
  return uint32_t(row * kTileK + ((chunk ^ (row & 7)) << 4));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

__device__ __forceinline__ void mma_s8(int32_t (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Rows [first, first + Rows) of a k-contiguous int8 matrix, bytes
// [k0, k0 + kTileK), into a swizzled stage; rows past `rows` and bytes past k are zeros.
template <int Rows, int Threads>
__device__ __forceinline__ void load_tile(uint32_t dst, const int8_t* src, int64_t first, int64_t rows, int64_t k,
                                          int64_t k0) {
#pragma unroll
  for (int i = 0; i < Rows * 8 / Threads; ++i) {
    const int q = int(threadIdx.x) + i * Threads, r = q >> 3, c = q & 7;
    const int64_t row = first + r, col = k0 + c * 16;
    const bool inside = row < rows && col < k;
    cp_async16(dst + swizzled(r, c), src + (inside ? row * k + col : 0), inside);
  }
}

template <typename Cfg, typename T, typename B>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks)
    gemm_int8_kernel(const T* x, const int8_t* codes, const float* row_stats, const int32_t* outlier_count,
                     const int32_t* outlier_cols, const float* outlier_product, const int8_t* w, const float* scb,
                     const B* bias, int64_t m, int64_t n, int64_t k, T* out) {
  extern __shared__ __align__(128) uint8_t smem[];
  constexpr int kMI = Cfg::kMI, kNI = Cfg::kNI, kStages = Cfg::kStages;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warp_m = warp % Cfg::kWarpsM, warp_n = warp / Cfg::kWarpsM;
  const int64_t m0 = int64_t(blockIdx.x) * Cfg::kM, n0 = int64_t(blockIdx.y) * Cfg::kN;
  const int k_tiles = int((k + kTileK - 1) / kTileK);
  const uint32_t smem_base = uint32_t(__cvta_generic_to_shared(smem));

  auto load_stage = [&](int slot, int kt) {
    const uint32_t a = smem_base + slot * Cfg::kStageBytes;
    load_tile<Cfg::kM, Cfg::kThreads>(a, codes, m0, m, k, int64_t(kt) * kTileK);
    load_tile<Cfg::kN, Cfg::kThreads>(a + Cfg::kM * kTileK, w, n0, n, k, int64_t(kt) * kTileK);
  };

  int32_t acc[kMI][kNI][4];
#pragma unroll
  for (int i = 0; i < kMI; ++i)
#pragma unroll
    for (int j = 0; j < kNI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage kt landed for all; stage kt - 1 (reloaded next) is consumed
    if (kt + kStages - 1 < k_tiles) load_stage((kt + kStages - 1) % kStages, kt + kStages - 1);
    cp_async_commit();
    const uint32_t a_base = smem_base + (kt % kStages) * Cfg::kStageBytes;
    const uint32_t b_base = a_base + Cfg::kM * kTileK;
    // Fragments of step kk + 1 load while step kk's mma run.
    uint32_t af[2][kMI][4], bf[2][kNI][2];
    auto load_fragments = [&](int kk, uint32_t (&a)[kMI][4], uint32_t (&b)[kNI][2]) {
#pragma unroll
      for (int i = 0; i < kMI; ++i)
        ldmatrix_x4(a_base + swizzled(warp_m * Cfg::kWarpM + i * 16 + (lane & 15), kk * 2 + (lane >> 4)), a[i][0],
                    a[i][1], a[i][2], a[i][3]);
#pragma unroll
      for (int j = 0; j < kNI; j += 2)
        ldmatrix_x4(b_base + swizzled(warp_n * Cfg::kWarpN + j * 8 + (lane & 7) + ((lane >> 4) << 3),
                                      kk * 2 + ((lane >> 3) & 1)),
                    b[j][0], b[j][1], b[j + 1][0], b[j + 1][1]);
    };
    load_fragments(0, af[0], bf[0]);
#pragma unroll
    for (int kk = 0; kk < kTileK / 32; ++kk) {
      if (kk + 1 < kTileK / 32) load_fragments(kk + 1, af[(kk + 1) % 2], bf[(kk + 1) % 2]);
#pragma unroll
      for (int i = 0; i < kMI; ++i)
#pragma unroll
        for (int j = 0; j < kNI; ++j) mma_s8(acc[i][j], af[kk % 2][i], bf[kk % 2][j]);
    }
  }
  cp_async_wait<0>();

  // Accumulator (i, j, e) holds row warp_row + i * 16 + g (+ 8 for e >= 2),
  // feature warp_col + j * 8 + 2 * t (+ 1 for odd e).
  const int g = lane >> 2, t = lane & 3;
  const int warp_row = warp_m * Cfg::kWarpM, warp_col = warp_n * Cfg::kWarpN;
  auto store = [&](int r, int c, int32_t a, bool outliers, float extra) {
    const int64_t row = m0 + r, col = n0 + c;
    if (row >= m || col >= n) return;
    const float s = scb[col];
    const float b = bias ? round_f16(to_float(bias[col])) : 0.0f;
    const float scaled = __fmul_rn(__fmul_rn(float(a), row_stats[row]), s);
    float v = round_f16(fmaf(scaled, kDequantScale, b));
    if (outliers) v = round_f16(__fadd_rn(v, extra));
    out[row * n + col] = from_float<T>(v);
  };

  const int32_t outliers = outlier_count ? *outlier_count : 0;
  if (outliers == 0 || outliers > kSummedOutliers) {
    // Many outlier columns: their codes were zeroed and their product
    // computed by int8_outlier_product (gemm_int8_outliers_cuda.cu).
#pragma unroll
    for (int i = 0; i < kMI; ++i)
#pragma unroll
      for (int j = 0; j < kNI; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = warp_row + i * 16 + g + (e >> 1) * 8, c = warp_col + j * 8 + 2 * t + (e & 1);
          const bool add = outliers > 0 && m0 + r < m && n0 + c < n;
          store(r, c, acc[i][j][e], add, add ? outlier_product[(m0 + r) * n + n0 + c] : 0.0f);
        }
    return;
  }

  constexpr int kXStride = kOutlierChunk + 1;  // odd: the 8 rows of a warp's read sit in 8 banks
  float* sx = reinterpret_cast<float*>(smem);
  float* sw = sx + Cfg::kM * kXStride;
  int8_t* sxq = reinterpret_cast<int8_t*>(sw + kOutlierChunk * Cfg::kN);
  int8_t* swq = sxq + Cfg::kM * kOutlierChunk;
  auto stage = [&](int32_t first) {
    const int32_t width = min(kOutlierChunk, outliers - first);
    for (int q = threadIdx.x; q < Cfg::kM * kOutlierChunk; q += Cfg::kThreads) {
      const int r = q / kOutlierChunk, o = q % kOutlierChunk;
      const int64_t row = m0 + r;
      float xv = 0.0f;
      int8_t code = 0;
      if (o < width && row < m) {
        const int64_t at = row * k + outlier_cols[first + o];
        xv = round_f16(to_float(x[at]));
        code = codes[at];
      }
      sx[r * kXStride + o] = xv;
      sxq[r * kOutlierChunk + o] = code;
    }
    for (int q = threadIdx.x; q < kOutlierChunk * Cfg::kN; q += Cfg::kThreads) {
      const int o = q / Cfg::kN, c = q % Cfg::kN;
      const int64_t col = n0 + c;
      float wv = 0.0f;
      int8_t code = 0;
      if (o < width && col < n) {
        code = w[col * k + outlier_cols[first + o]];
        wv = round_f16(__fmul_rn(__fmul_rn(float(code), scb[col]), kInv127));
      }
      sw[o * Cfg::kN + c] = wv;
      swq[o * Cfg::kN + c] = code;
    }
  };

  // One row tile i of the warp at a time (kNI x 4 f32 sums live); with more
  // than one chunk of outlier columns each row tile restages them.
  const int32_t chunks = (outliers + kOutlierChunk - 1) / kOutlierChunk;
#pragma unroll
  for (int i = 0; i < kMI; ++i) {
    float extra[kNI][4];
#pragma unroll
    for (int j = 0; j < kNI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) extra[j][e] = 0.0f;
    const int r0 = warp_row + i * 16 + g;
    for (int32_t chunk = 0; chunk < chunks; ++chunk) {
      if (chunks > 1 || i == 0) {
        __syncthreads();  // the pipeline's (or the previous chunk's) shared memory is free
        stage(chunk * kOutlierChunk);
        __syncthreads();
      }
      const int32_t width = min(kOutlierChunk, outliers - chunk * kOutlierChunk);
      for (int o = 0; o < width; ++o) {
        const float x0 = sx[r0 * kXStride + o], x1 = sx[(r0 + 8) * kXStride + o];
        const int32_t q0 = sxq[r0 * kOutlierChunk + o], q1 = sxq[(r0 + 8) * kOutlierChunk + o];
#pragma unroll
        for (int j = 0; j < kNI; ++j) {
          const int c = warp_col + j * 8 + 2 * t;
          const float w0 = sw[o * Cfg::kN + c], w1 = sw[o * Cfg::kN + c + 1];
          const int32_t p0 = swq[o * Cfg::kN + c], p1 = swq[o * Cfg::kN + c + 1];
          acc[i][j][0] -= q0 * p0;
          acc[i][j][1] -= q0 * p1;
          acc[i][j][2] -= q1 * p0;
          acc[i][j][3] -= q1 * p1;
          extra[j][0] = __fadd_rn(extra[j][0], __fmul_rn(x0, w0));
          extra[j][1] = __fadd_rn(extra[j][1], __fmul_rn(x0, w1));
          extra[j][2] = __fadd_rn(extra[j][2], __fmul_rn(x1, w0));
          extra[j][3] = __fadd_rn(extra[j][3], __fmul_rn(x1, w1));
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kNI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        store(r0 + (e >> 1) * 8, warp_col + j * 8 + 2 * t + (e & 1), acc[i][j][e], true, extra[j][e]);
  }
}

template <typename Cfg>
void launch(DType dtype, const Int8Activations& a, int64_t m, const int8_t* w, const float* scb, int64_t n, int64_t k,
            DType bias_dtype, const void* bias, void* out, cudaStream_t stream) {
  const dim3 grid(unsigned((m + Cfg::kM - 1) / Cfg::kM), unsigned((n + Cfg::kN - 1) / Cfg::kN));
  dispatch_device_float(dtype, "linear_int8", [&](auto tag) {
    using T = decltype(tag);
    dispatch_device_float(bias_dtype, "linear_int8 bias", [&](auto btag) {
      using B = decltype(btag);
      constexpr auto kernel = gemm_int8_kernel<Cfg, T, B>;
      allow_shared_memory<kernel>(Cfg::kSmemBytes);
      kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
          static_cast<const T*>(a.x), a.codes, a.row_stats, a.outlier_count, a.outlier_cols, a.outlier_product, w, scb,
          static_cast<const B*>(bias), m, n, k, static_cast<T*>(out));
      LOWBIT_CUDA_CHECK_LAUNCH();
    });
  });
}

// Tile shapes: few rows take a narrow tile (the weight stream is the cost);
// from 65 rows 128-row tiles, 64 or 128 features wide, whichever leaves the
// last wave of tiles fullest.
// The few-row tiles keep 5 stages in flight (their blocks are few, each must
// keep many weight bytes in flight); the 128-row ones 3 (shared memory).
using SmallTile = Tile<32, 64, 32, 16, 6, 4>;
using MediumTile = Tile<64, 64, 32, 32, 6, 2>;
using WideTile = Tile<128, 64, 64, 32, 3, 3>;
using LargeTile = Tile<128, 128, 64, 32, 3, 2>;

}  // namespace

bool gemm_int8_tiled_supports(int64_t k, const void* codes, const int8_t* w) {
  return k % 16 == 0 && reinterpret_cast<uintptr_t>(codes) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

void gemm_int8_tiled(DType dtype, const Int8Activations& a, int64_t m, const int8_t* w, const float* scb, int64_t n,
                     int64_t k, DType bias_dtype, const void* bias, void* out, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (m <= SmallTile::kM) return launch<SmallTile>(dtype, a, m, w, scb, n, k, bias_dtype, bias, out, stream);
  if (m <= MediumTile::kM) return launch<MediumTile>(dtype, a, m, w, scb, n, k, bias_dtype, bias, out, stream);
  // Cost in 128 x 64 tile-times of the busiest SM.
  const int64_t sms = multiprocessors(), row_tiles = (m + 127) / 128;
  const int64_t large = (row_tiles * ((n + 127) / 128) + sms - 1) / sms * 2;
  const int64_t wide = (row_tiles * ((n + 63) / 64) + sms - 1) / sms;
  if (large <= wide) return launch<LargeTile>(dtype, a, m, w, scb, n, k, bias_dtype, bias, out, stream);
  launch<WideTile>(dtype, a, m, w, scb, n, k, bias_dtype, bias, out, stream);
}

}  // namespace lowbit::ops::cuda
