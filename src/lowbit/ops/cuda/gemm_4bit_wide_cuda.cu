// Fused blockwise 4-bit (NF4/FP4) x bf16/f16 product on tensor cores for
// batches of 17 to 64 (gemm_4bit_cuda.cu takes up to 16): the packed weight
// is read from memory once.
//
// Tiling (one thread block of 8 warps, 256 threads, persistent over tiles):
//
//          k ->  chunk 0  chunk 1  ...  chunk 7  chunk 8 ...   (64 weights a chunk)
//   16     +--------+--------+-----+--------+--------+
//   weight | warp 0 | warp 1 | ... | warp 7 | warp 0 | ...     every warp walks every 8th
//   rows   +--------+--------+-----+--------+--------+         chunk; the 8 partial tiles
//                                                              meet in shared memory
// One m16n8k16 mma: A = the tile's 16 weight rows (lane / 4 owns rows g and
// g + 8), B = 8 activation rows (batch), C = [16 rows, 8 batch]; batches of
// up to 32/64 reuse each A for 4/8 B fragments (template NB).
// The k order inside a chunk is permuted, identically for x and W: lane
// t = lane % 4 owns weights [16t, 16t + 16) of the chunk, one 8-byte load per
// row, and mma step s feeds it k = 16t + 4s + 0..3; its B operand is 32
// contiguous bytes of its activation row. A chunk lies inside one absmax
// block (blocksize % 64 == 0 and k % blocksize == 0), so the four mma steps
// accumulate the unscaled codes and one FFMA per accumulator applies the
// block's absmax. Weights and raw scales are loaded kStages chunks ahead (a
// register ring), which keeps bytes in flight while the wide accumulators
// hold most registers.
//
// Shared memory: 64 KB pair table (gemm_4bit_common.cuh) + 1 KB nested map +
// 4 KB * NB of partial tiles. docs/cuda.md has the measured versions.
//
// Memory traffic per call: n*k/2 bytes of codes (streamed, L1 no-allocate),
// n*k/blocksize absmax (4 bytes f32 or 1 byte + nested scales), m*k*2 bytes
// of activations (L1/L2 resident, reread per block), m*n*2 bytes out.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "lowbit/core/cuda_check.h"
#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_4bit_common.cuh"
#include "ops/cuda/gemm_4bit_kernels.h"

namespace lowbit::ops::cuda::fused4 {
namespace {

constexpr int kWarps = 8;               // warps of a block, splitting k between them
constexpr int kThreads = kWarps * 32;
constexpr int kChunk = 64;              // k per warp iteration: four k16 mma steps
constexpr int kTableWords = kPairTableWords;
constexpr int kStages = 4;
constexpr int kTileRows = 16;           // weight rows of a block tile: the mma's M

// Its own mma (volatile asm, as measured), which hides the shared one of
// mma_cuda.cuh inside this file.
template <typename T> __device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void mma_16816<__nv_bfloat16>(float c[4], const uint32_t a[4], uint32_t b0,
                                                                     uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma_16816<__half>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Zero-accumulator form: the first k16 step of a chunk starts from 0.
template <typename T> __device__ __forceinline__ void mma_16816_first(float c[4], const uint32_t a[4], uint32_t b0,
                                                                     uint32_t b1) {
  c[0] = c[1] = c[2] = c[3] = 0.0f;
  mma_16816<T>(c, a, b0, b1);
}

template <typename T, int NB, bool kNested>
__global__ void __launch_bounds__(kThreads, NB <= 2 ? 2 : 1) gemm_4bit_wide_kernel(const Params p) {
  extern __shared__ __align__(16) uint32_t smem[];
  float* nested_map = build_shared_tables<T, kNested>(smem, kTableWords, p);
  float* red = nested_map + 256;  // [warp][batch][row] partial tiles

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t lane4 = uint32_t(lane) * 4;
  const uint32_t table = shared_address(smem);
  const int chunks = int(p.k / kChunk);
  const int chunk_shift = p.block_shift - 6;  // chunk index -> block offset within a row
  const int64_t tiles = (p.n + kTileRows - 1) / kTileRows;

  // A persistent grid: the table is built once per block, not once per tile.
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t row0 = tile * kTileRows;
    // This lane's weight rows g and g + 8 (the A fragment's rows; rows past n
    // reread row 0 and are discarded) and their first block index.
    const uint8_t* wrow[2];
    uint32_t scale_row[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = row0 + g + 8 * h;
      const int64_t r = row < p.n ? row : 0;
      wrow[h] = p.packed + r * (p.k / 2) + t * 8;
      scale_row[h] = uint32_t((r * p.k) >> p.block_shift);
    }
    // Activation row g of each 8-row batch tile (the B fragment's column).
    const T* xrow[NB];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
      const int b = nb * 8 + g;
      xrow[nb] = b < p.m ? static_cast<const T*>(p.x) + int64_t(b) * p.k + t * 16 : nullptr;
    }

    // A chunk's weight bytes and raw block scales, loaded kStages chunks
    // ahead of their use so that each lane keeps several loads in flight.
    struct Stage {
      uint2 w[2];
      ScaleRaw scale[2];
    };
    auto load_stage = [&](Stage& st, int chunk) {
      const uint32_t block = uint32_t(chunk) >> chunk_shift;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        st.w[h] = load_streaming8(wrow[h] + chunk * (kChunk / 2));
        st.scale[h] = load_scale<kNested>(p, scale_row[h] + block);
      }
    };

    float acc[NB][4] = {};
    Stage ring[kStages];
#pragma unroll
    for (int d = 0; d < kStages; ++d)
      if (warp + d * kWarps < chunks) load_stage(ring[d], warp + d * kWarps);

    for (int base = warp; base < chunks; base += kStages * kWarps) {
#pragma unroll
      for (int d = 0; d < kStages; ++d) {
        const int c = base + d * kWarps;
        if (c >= chunks) break;
        const Stage cur = ring[d];
        if (c + kStages * kWarps < chunks) load_stage(ring[d], c + kStages * kWarps);

        uint4 xv[NB][2];
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
          if (xrow[nb]) {
            const uint4* src = reinterpret_cast<const uint4*>(xrow[nb] + c * kChunk);
            xv[nb][0] = __ldg(src);
            xv[nb][1] = __ldg(src + 1);
          } else {
            xv[nb][0] = xv[nb][1] = make_uint4(0, 0, 0, 0);
          }
        }

        float part[NB][4];
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          const uint32_t lo = (s < 2) ? cur.w[0].x : cur.w[0].y;  // row g
          const uint32_t hi = (s < 2) ? cur.w[1].x : cur.w[1].y;  // row g + 8
          uint32_t a[4];
          lookup_a_fragment(table, lo, hi, lane4, s & 1, a);
#pragma unroll
          for (int nb = 0; nb < NB; ++nb) {
            const uint32_t* xw = reinterpret_cast<const uint32_t*>(&xv[nb][s >> 1]);
            const uint32_t b0 = xw[2 * (s & 1)], b1 = xw[2 * (s & 1) + 1];
            if (s == 0) mma_16816_first<T>(part[nb], a, b0, b1);
            else mma_16816<T>(part[nb], a, b0, b1);
          }
        }
        const uint32_t block = uint32_t(c) >> chunk_shift;
        const float scale_lo = decode_scale<kNested>(p, nested_map, cur.scale[0], scale_row[0] + block);
        const float scale_hi = decode_scale<kNested>(p, nested_map, cur.scale[1], scale_row[1] + block);
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
          acc[nb][0] = fmaf(part[nb][0], scale_lo, acc[nb][0]);
          acc[nb][1] = fmaf(part[nb][1], scale_lo, acc[nb][1]);
          acc[nb][2] = fmaf(part[nb][2], scale_hi, acc[nb][2]);
          acc[nb][3] = fmaf(part[nb][3], scale_hi, acc[nb][3]);
        }
      }
    }

    // Sum the 8 warps' partial tiles. C fragment: rows g, g + 8; batch 2t, 2t + 1.
    constexpr int kTileB = 8 * NB;
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int b = nb * 8 + 2 * t + (i & 1), r = g + 8 * (i >> 1);
        red[(warp * kTileB + b) * kTileRows + r] = acc[nb][i];
      }
    __syncthreads();
    for (int i = threadIdx.x; i < kTileB * kTileRows; i += kThreads) {
      const int b = i / kTileRows, r = i % kTileRows;
      const int64_t row = row0 + r;
      if (b >= p.m || row >= p.n) continue;
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += red[(w * kTileB + b) * kTileRows + r];
      if (p.bias) sum += to_float(static_cast<const T*>(p.bias)[row]);
      static_cast<T*>(p.out)[int64_t(b) * p.n + row] = from_float<T>(sum);
    }
    __syncthreads();  // `red` is rewritten by the next tile
  }
}

template <typename T, int NB>
void launch_fused(const Params& p, bool nested, cudaStream_t stream) {
  constexpr size_t smem = (size_t(kTableWords) + 256) * 4 + size_t(kWarps) * 8 * NB * kTileRows * 4;
  static_assert(smem <= 227 * 1024, "the fused 4-bit kernel's shared memory fits an SM");
  auto kernel = nested ? gemm_4bit_wide_kernel<T, NB, true> : gemm_4bit_wide_kernel<T, NB, false>;
  const int64_t slots = nested ? resident_block_slots<gemm_4bit_wide_kernel<T, NB, true>>(kThreads, smem)
                               : resident_block_slots<gemm_4bit_wide_kernel<T, NB, false>>(kThreads, smem);
  const int64_t tiles = (p.n + kTileRows - 1) / kTileRows;
  const int64_t grid = std::min<int64_t>(tiles, slots);
  kernel<<<unsigned(grid), kThreads, smem, stream>>>(p);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void launch_fused_m(const Params& p, bool nested, cudaStream_t stream) {
  if (p.m <= 32) launch_fused<T, 4>(p, nested, stream);
  else launch_fused<T, 8>(p, nested, stream);
}

}  // namespace

bool wide_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x) {
  return (dtype == DType::BF16 || dtype == DType::F16) && m > kMmaMaxBatch && m <= kWideMaxBatch &&
         w.k % kChunk == 0 && w.blocksize >= kChunk && w.k % w.blocksize == 0 && log2_exact(w.blocksize) >= 0 &&
         (!w.qabsmax || log2_exact(w.nested_blocksize) >= 0) && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w.packed) % 8 == 0;
}

void wide(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out,
          cudaStream_t stream) {
  const Params p = make_params(w, x, m, bias, out);
  const bool nested = w.qabsmax != nullptr;
  if (dtype == DType::BF16) launch_fused_m<__nv_bfloat16>(p, nested, stream);
  else launch_fused_m<__half>(p, nested, stream);
}

}  // namespace lowbit::ops::cuda::fused4
