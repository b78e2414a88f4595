// Fused blockwise 4-bit (NF4/FP4) x bf16/f16 product on tensor cores, for
// decode-sized batches (m <= 16): the packed weight is read from memory once
// and decoded in registers straight into mma fragments.
//
// Work split (one block = 8 warps, 256 threads; each warp owns a 16-row tile
// and a slice of k; split_k slices of one tile meet in shared memory):
//
//          k ->  round 0 | round 1 | ...       (128 weights a round; a lane's
//   16     +---------+---------+-----           16-byte load = 32 weights of one row)
//   weight | slice 0 | slice 1 | ...           slice j takes rounds j*U .. j*U + U - 1,
//   rows   +---------+---------+-----           then j + split_k, ... (U = kUnroll)
//
// One m16n8k16 mma: A = the tile's 16 weight rows (lane / 4 owns rows g and
// g + 8), B = 8 activation rows (batch), C = [16 rows, 8 batch]; batches up
// to 16 reuse each A for 2 B fragments (template NB). At 13-16 rows a
// second kernel swaps the operands (x as A, so that one x fragment serves
// 32 weight rows: gemm_4bit_mma_x_kernel below).
// The k order inside a round is permuted, identically for x and W (a dot
// product does not care): lane t = lane % 4 owns weights [32t, 32t + 32) of
// the round, one 16-byte load per row (the 4 lanes of a row read 64
// contiguous bytes), and mma step s feeds it k = 32t + 4s + 0..3. Its B
// operand is then 64 contiguous bytes of its activation row, loaded straight
// into the register pairs the mma reads.
// A lane's 32 weights lie in one absmax block (power-of-two blocksize >= 32),
// but the four lanes of a row may not, so the block's absmax is applied to the
// A registers (one HMUL2 a code pair: the weight rounded to the compute dtype,
// as bitsandbytes rounds it) and the mma accumulates in f32 over all of k,
// in two chains (even and odd steps). Each step computes kUnroll rounds while
// the next step's loads are in flight (a register double buffer).
//
// Dequantization: each packed byte (two codes) indexes the 256-entry pair
// table (gemm_4bit_common.cuh): one byte permute and one conflict-free LDS
// give a code pair, one HMUL2 scales it.
// Shared memory: 64 KB table + 1 KB nested map + 4 KB * NB for the split-k
// partial tiles; 2 blocks (16 warps, 128 registers each thread) an SM.
// docs/cuda.md has the measured versions.
//
// Memory traffic per call: n*k/2 bytes of codes (streamed, L1 no-allocate),
// n*k/blocksize absmax (4 bytes f32 or 1 byte + nested scales), m*k*2 bytes
// of activations (L1/L2 resident, reread per warp), m*n*2 bytes out.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "lowbit/core/cuda_check.h"
#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_4bit_common.cuh"
#include "ops/cuda/gemm_4bit_kernels.h"

namespace lowbit::ops::cuda::fused4 {
namespace {

constexpr int kWarps = 8;          // warps of a block
constexpr int kThreads = kWarps * 32;
constexpr int kRound = 128;        // k of one round: 4 lanes x 32 weights, eight k16 mma steps
constexpr int kTileRows = 16;      // weight rows of a warp tile: the mma's M
// Chunks a step loads before using the first; fewer for wide batches, whose
// accumulators take the registers.
template <int NB> constexpr int kUnroll = NB == 1 ? 4 : 2;  // rounds a step

template <typename T>
__device__ __forceinline__ void store_out(const Params& p, int b, int64_t row, float v) {
  if (p.bias) v += to_float(static_cast<const T*>(p.bias)[row]);
  static_cast<T*>(p.out)[int64_t(b) * p.n + row] = from_float<T>(v);
}

template <typename T> __device__ __forceinline__ uint32_t scale_pair(float v);
template <> __device__ __forceinline__ uint32_t scale_pair<__nv_bfloat16>(float v) { return pack_pair<__nv_bfloat16>(v, v); }
template <> __device__ __forceinline__ uint32_t scale_pair<__half>(float v) { return pack_pair<__half>(v, v); }

// A block's tiles cut in split_k k slices: each warp (slice * groups +
// group) left its partial tile in `red` as [warp][token][row], kTokens x
// kRows; the slices are summed in slice order (deterministic) and stored.
// The barriers keep `red` whole until every warp wrote it and every sum is
// read.
template <typename T, int kTokens, int kRows>
__device__ __forceinline__ void store_slice_sums(const Params& p, const float* red, int64_t tile0, int groups,
                                                 int split_k) {
  __syncthreads();
  for (int i = threadIdx.x; i < groups * kTokens * kRows; i += kThreads) {
    const int gr = i / (kTokens * kRows), b = (i / kRows) % kTokens, r = i % kRows;
    const int64_t row = (tile0 + gr) * kRows + r;
    if (b >= p.m || row >= p.n) continue;
    float sum = 0.0f;
    for (int sl = 0; sl < split_k; ++sl) sum += red[((sl * groups + gr) * kTokens + b) * kRows + r];
    store_out<T>(p, b, row, sum);
  }
  __syncthreads();
}

template <typename T, int NB, bool kNested>
__global__ void __launch_bounds__(kThreads, 2) gemm_4bit_mma_kernel(const Params p, const int split_k) {
  constexpr int U = kUnroll<NB>;
  constexpr int kTileB = 8 * NB;
  extern __shared__ __align__(16) uint32_t smem[];
  float* nested_map = build_shared_tables<T, kNested>(smem, kPairTableWords, p);
  float* red = nested_map + 256;  // [warp][batch][row] partial tiles when split_k > 1

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t lane4 = uint32_t(lane) * 4;
  const uint32_t table = shared_address(smem);
  const int groups = kWarps / split_k;  // tiles of a block
  const int group = warp % groups, slice = warp / groups;
  const int rounds = int(p.k / kRound);
  const int64_t tiles = (p.n + kTileRows - 1) / kTileRows;

  for (int64_t tile0 = int64_t(blockIdx.x) * groups; tile0 < tiles; tile0 += int64_t(gridDim.x) * groups) {
    const int64_t row0 = (tile0 + group) * kTileRows;
    // This lane's weight rows g and g + 8 (rows past n reread row n - 1 and
    // are discarded), from its 32-weight segment of each round.
    const uint8_t* wrow[2];
    int64_t elem[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t r = min(row0 + g + 8 * h, p.n - 1);
      elem[h] = r * p.k + t * 32;
      wrow[h] = p.packed + elem[h] / 2;
    }
    // Activation row g of each 8-row batch fragment (the B operand's column).
    const T* xrow[NB];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
      const int b = nb * 8 + g;
      xrow[nb] = b < p.m ? static_cast<const T*>(p.x) + int64_t(b) * p.k + t * 32 : nullptr;
    }

    // Weights and raw scales of the U rounds from r0 (zeros past k).
    auto load_step = [&](int r0, uint4 (&w)[U][2], ScaleRaw (&sc)[U][2]) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int r = r0 + u;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          if (r < rounds) {
            w[u][h] = load_streaming16(wrow[h] + r * (kRound / 2));
            sc[u][h] = load_scale<kNested>(p, uint32_t((elem[h] + int64_t(r) * kRound) >> p.block_shift));
          } else {
            w[u][h] = make_uint4(0, 0, 0, 0);
            sc[u][h] = ScaleRaw{0.0f, 0u};
          }
        }
      }
    };

    // Two accumulator sets (even and odd mma steps) keep two chains in flight.
    float acc[2][NB][4] = {};
    const int stride = split_k * U;
    uint4 wv[U][2];
    ScaleRaw sc[U][2];
    load_step(slice * U, wv, sc);
    for (int r0 = slice * U; r0 < rounds; r0 += stride) {
      // The next step's loads go out before this step's math (a register
      // double buffer), so each lane keeps loads in flight while it computes.
      uint4 wn[U][2];
      ScaleRaw sn[U][2];
      load_step(r0 + stride, wn, sn);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int r = r0 + u;
        const bool live = r < rounds;  // rounds past k run on zeros
        uint32_t scale[2];
#pragma unroll
        for (int h = 0; h < 2; ++h)
          scale[h] = scale_pair<T>(live ? decode_scale<kNested>(p, nested_map, sc[u][h],
                                                                uint32_t((elem[h] + int64_t(r) * kRound) >> p.block_shift))
                                        : 0.0f);
        uint4 xv[NB][4];
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
          for (int q = 0; q < 4; ++q)
            xv[nb][q] = xrow[nb] && live ? __ldg(reinterpret_cast<const uint4*>(xrow[nb] + r * kRound) + q)
                                         : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int s = 0; s < 8; ++s) {  // mma step s: weights 4s .. 4s + 3 of the lane's segment
          const uint32_t lo = word(wv[u][0], s >> 1), hi = word(wv[u][1], s >> 1);
          uint32_t a[4];
          lookup_a_fragment(table, lo, hi, lane4, s & 1, a);
#pragma unroll
          for (int i = 0; i < 4; ++i) a[i] = scale_codes<T>(a[i], scale[i & 1]);
#pragma unroll
          for (int nb = 0; nb < NB; ++nb) {
            const uint4& xq = xv[nb][s >> 1];
            mma_16816<T>(acc[s & 1][nb], a, (s & 1) ? xq.z : xq.x, (s & 1) ? xq.w : xq.y);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          wv[u][h] = wn[u][h];
          sc[u][h] = sn[u][h];
        }
    }
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[0][nb][i] += acc[1][nb][i];

    // C fragment: rows g, g + 8; batch 2t, 2t + 1 of each fragment.
    if (split_k == 1) {
      if (tile0 + group < tiles)
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int b = nb * 8 + 2 * t + (i & 1);
            const int64_t row = row0 + g + 8 * (i >> 1);
            if (b < p.m && row < p.n) store_out<T>(p, b, row, acc[0][nb][i]);
          }
    } else {
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int i = 0; i < 4; ++i)
          red[(warp * kTileB + nb * 8 + 2 * t + (i & 1)) * kTileRows + g + 8 * (i >> 1)] = acc[0][nb][i];
      store_slice_sums<T, kTileB, kTileRows>(p, red, tile0, groups, split_k);
    }
  }
}

// 9-16 rows with x as the A operand (tokens as the mma's M) and the weights
// as B: a warp owns kXTiles n-tiles of 8 weight rows, and the x fragment of
// a k16 step (16 tokens) serves all of them, so x crosses L1 once per
// kXTiles * 8 weight rows instead of once per 16 (the weight-as-A kernel
// above reads 4 bytes of x per byte of codes at 16 rows).
//
//   mma m16n8k16: A = x[16 tokens, 16 k], B = W[16 k, 8 rows] (decoded and
//   scaled codes), C = [16 tokens, 8 rows]; lane (g, t) holds tokens g and
//   g + 8 of A and C, weight row g of B, C's rows 2t and 2t + 1.
//
// The round's k order is permuted as above: lane t owns weights [32t, 32t +
// 32) of each 128-weight round (one 16-byte load a weight row), step s uses
// its weights 4s .. 4s + 3 (B: the two code pairs of bytes 2s and 2s + 1),
// and its A registers are the matching 8 bytes of x rows g and g + 8.
constexpr int kXTiles = 4;                // n-tiles of 8 weight rows a warp
constexpr int kXTileRows = 8 * kXTiles;   // weight rows of a warp
// The table, the nested map and the split-k partial tiles [warp][16][32].
constexpr size_t kXSmemBytes = (size_t(kPairTableWords) + 256) * 4 + size_t(kWarps) * 16 * kXTileRows * 4;

// x arranged for the kernel below (kArranged): 16-byte chunk ((r * 4 + q) * 2
// + h) * 32 + lane holds what lane (g, t) loads for round r, step pair q and
// rows g + 8h (x[min(g + 8h, m - 1)][128r + 32t + 8q ...]), so that a warp's
// load is 512 contiguous bytes: 4 L1 wavefronts instead of 16 (8 rows x 2
// lines). ncu put the x loads at over half of the kernel's L1 wavefronts.
template <typename T>
__global__ void __launch_bounds__(256) arrange_x_kernel(const T* x, int m, int64_t k, uint4* xp) {
  const int64_t chunks = k / kRound * 256;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < chunks; i += int64_t(gridDim.x) * blockDim.x) {
    const int lane = int(i & 31), h = int(i >> 5) & 1, q = int(i >> 6) & 3;
    const int64_t r = i >> 8;
    const int row = min((lane >> 2) + 8 * h, m - 1);
    xp[i] = *reinterpret_cast<const uint4*>(x + int64_t(row) * k + r * kRound + (lane & 3) * 32 + q * 8);
  }
}

template <typename T, bool kNested, bool kArranged>
__global__ void __launch_bounds__(kThreads, 2) gemm_4bit_mma_x_kernel(const Params p, const int split_k,
                                                                     const uint4* __restrict__ xp) {
  extern __shared__ __align__(16) uint32_t smem[];
  float* nested_map = build_shared_tables<T, kNested>(smem, kPairTableWords, p);
  float* red = nested_map + 256;  // [warp][token][row] partial tiles when split_k > 1

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t lane4 = uint32_t(lane) * 4;
  const uint32_t table = shared_address(smem);
  const int groups = kWarps / split_k;  // row tiles of a block
  const int group = warp % groups, slice = warp / groups;
  const int rounds = int(p.k / kRound);
  const int64_t tiles = (p.n + kXTileRows - 1) / kXTileRows;
  // x rows g and g + 8. Tokens past m reread row m - 1: A's row i only
  // reaches C's row i, and those rows are never stored, so no loads need
  // predicates.
  const T* xrow[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) xrow[h] = static_cast<const T*>(p.x) + int64_t(min(g + 8 * h, p.m - 1)) * p.k + t * 32;

  for (int64_t tile0 = int64_t(blockIdx.x) * groups; tile0 < tiles; tile0 += int64_t(gridDim.x) * groups) {
    const int64_t row0 = (tile0 + group) * kXTileRows;
    // Weight row g of each n-tile (rows past n reread row n - 1, discarded).
    uint64_t elem[kXTiles];
#pragma unroll
    for (int j = 0; j < kXTiles; ++j) elem[j] = uint64_t(min(row0 + 8 * j + g, p.n - 1) * p.k + t * 32);

    // One element index a tile and round serves the code address and the
    // scale's block (unsigned: shifts, not signed divisions).
    auto load_round = [&](int r, uint4 (&w)[kXTiles], ScaleRaw (&sc)[kXTiles]) {
#pragma unroll
      for (int j = 0; j < kXTiles; ++j) {
        const uint64_t e = elem[j] + uint32_t(r) * uint32_t(kRound);
        w[j] = load_streaming16(p.packed + (e >> 1));
        sc[j] = load_scale<kNested>(p, uint32_t(e >> p.block_shift));
      }
    };

    float acc[kXTiles][4] = {};
    auto compute_round = [&](int r, const uint4 (&wv)[kXTiles], const ScaleRaw (&sc)[kXTiles]) {
      uint4 xv[2][4];
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int q = 0; q < 4; ++q)
          xv[h][q] = kArranged ? __ldg(xp + ((r * 4 + q) * 2 + h) * 32 + lane)
                               : __ldg(reinterpret_cast<const uint4*>(xrow[h] + r * kRound) + q);
      uint32_t scale[kXTiles];
#pragma unroll
      for (int j = 0; j < kXTiles; ++j)
        scale[j] = scale_pair<T>(decode_scale<kNested>(
            p, nested_map, sc[j], uint32_t((elem[j] + uint32_t(r) * uint32_t(kRound)) >> p.block_shift)));
#pragma unroll
      for (int s = 0; s < 8; ++s) {  // mma step s: weights 4s .. 4s + 3 of the lane's segment
        const int wi = (s & 1) * 2;
        const uint32_t a[4] = {word(xv[0][s >> 1], wi), word(xv[1][s >> 1], wi), word(xv[0][s >> 1], wi + 1),
                               word(xv[1][s >> 1], wi + 1)};
#pragma unroll
        for (int j = 0; j < kXTiles; ++j) {
          const uint32_t wd = word(wv[j], s >> 1);
          const uint32_t b0 = (s & 1) ? lookup<2, false>(table, wd, lane4) : lookup<0, false>(table, wd, lane4);
          const uint32_t b1 = (s & 1) ? lookup<3, false>(table, wd, lane4) : lookup<1, false>(table, wd, lane4);
          mma_16816<T>(acc[j], a, scale_codes<T>(b0, scale[j]), scale_codes<T>(b1, scale[j]));
        }
      }
    };

    // Two register sets take turns (the loop unrolled by two, no copies):
    // the next round's weights go out before this round's math.
    uint4 wa[kXTiles], wb[kXTiles];
    ScaleRaw sa[kXTiles], sb[kXTiles];
    load_round(slice, wa, sa);
    for (int r = slice; r < rounds; r += 2 * split_k) {
      const int r1 = r + split_k;
      if (r1 < rounds) load_round(r1, wb, sb);
      compute_round(r, wa, sa);
      if (r1 >= rounds) break;
      if (r1 + split_k < rounds) load_round(r1 + split_k, wa, sa);
      compute_round(r1, wb, sb);
    }

    // C fragment of n-tile j: tokens g, g + 8; weight rows 8j + 2t, 8j + 2t + 1.
    if (split_k == 1) {
      if (tile0 + group < tiles)
#pragma unroll
        for (int j = 0; j < kXTiles; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int b = g + 8 * (i >> 1);
            const int64_t row = row0 + 8 * j + 2 * t + (i & 1);
            if (b < p.m && row < p.n) store_out<T>(p, b, row, acc[j][i]);
          }
    } else {
#pragma unroll
      for (int j = 0; j < kXTiles; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i)
          red[(warp * 16 + g + 8 * (i >> 1)) * kXTileRows + 8 * j + 2 * t + (i & 1)] = acc[j][i];
      store_slice_sums<T, 16, kXTileRows>(p, red, tile0, groups, split_k);
    }
  }
}

// The k slices (split_k <= 0: picked) and the grid of a launch over `tiles`
// warp tiles, a block's kWarps warps cut into split_k slices, `steps` k steps
// a tile, `slots` resident blocks. Split k while the blocks stay within 1.5
// waves and each warp keeps >= 2 steps (H200, 4096 x 11008: 4 slices in 344
// blocks on 264 slots beat 2 in 172 by 18% at batch 16; on 8192 x 28672 two
// slices, 1.7 waves, lose 8%).
struct KSplit {
  int slices;
  int64_t grid;
};
KSplit split_tiles(int64_t tiles, int64_t steps, int64_t slots, int split_k) {
  auto blocks_for = [&](int ks) { return (tiles + kWarps / ks - 1) / (kWarps / ks); };
  if (split_k <= 0) {
    split_k = 1;
    while (split_k < kWarps && 2 * blocks_for(split_k * 2) <= 3 * slots && steps >= 4 * split_k) split_k *= 2;
  }
  return KSplit{split_k, std::min(blocks_for(split_k), slots)};
}

template <typename T, int NB, bool kNested>
void launch(const Params& p, int split_k, cudaStream_t stream) {
  constexpr size_t smem = (size_t(kPairTableWords) + 256) * 4 + size_t(kWarps) * 8 * NB * kTileRows * 4;
  static_assert(smem <= 227 * 1024, "the fused 4-bit kernel's shared memory fits an SM");
  constexpr auto kernel = gemm_4bit_mma_kernel<T, NB, kNested>;
  const int64_t steps = (p.k / kRound + kUnroll<NB> - 1) / kUnroll<NB>;
  const KSplit ks = split_tiles((p.n + kTileRows - 1) / kTileRows, steps, resident_block_slots<kernel>(kThreads, smem),
                                split_k);
  kernel<<<unsigned(ks.grid), kThreads, smem, stream>>>(p, ks.slices);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

// The x-as-A kernel: k split as in launch() (rounds of one step each); x
// arranged first in a stream-ordered scratch when `arranged`.
template <typename T, bool kNested, bool kArranged>
void launch_x(const Params& p, int split_k, cudaStream_t stream) {
  constexpr auto kernel = gemm_4bit_mma_x_kernel<T, kNested, kArranged>;
  uint4* xp = nullptr;
  if constexpr (kArranged) {
    const int64_t chunks = p.k / kRound * 256;
    LOWBIT_CUDA_CHECK(cudaMallocAsync(&xp, size_t(chunks) * 16, stream));
    arrange_x_kernel<T><<<unsigned(std::min<int64_t>((chunks + 255) / 256, 1024)), 256, 0, stream>>>(
        static_cast<const T*>(p.x), p.m, p.k, xp);
    LOWBIT_CUDA_CHECK_LAUNCH();
  }
  const KSplit ks = split_tiles((p.n + kXTileRows - 1) / kXTileRows, p.k / kRound,
                                resident_block_slots<kernel>(kThreads, kXSmemBytes), split_k);
  kernel<<<unsigned(ks.grid), kThreads, kXSmemBytes, stream>>>(p, ks.slices, xp);
  LOWBIT_CUDA_CHECK_LAUNCH();
  if constexpr (kArranged) LOWBIT_CUDA_CHECK(cudaFreeAsync(xp, stream));
}

// 9-16 rows: x as the A operand (1), the same with x arranged first (2), or
// the weights (-1); 0: the default: x arranged from 9 rows on weights of at
// least kArrangedFromWeights values, x as it is from 13 rows on smaller ones.
// H200, same call, us at 12 / 16 rows (weights as A, x, x arranged):
//   8192 x 28672  101.4 / 118.8   89.2 / 92.8   79.7 / 80.6 (the tiled GEMM: 89-90)
//   4096 x 22016   43.3 / 49.6    40.7 / 42.1   41.5 / 42.1
//   4096 x 11008   24.5 / 27.6    23.9 / 24.8   27.3 / 27.3
//   11008 x 4096   21.2 / 24.3    22.3 / 22.6   27.3 / 27.1
//   4096 x 4096    11.2 / 12.4    11.5 / 11.6   15.0 / 15.1
// Arranging x costs a launch and a scratch (~3.5 us here), which pays where
// the L1 traffic it saves (over half of the kernel's) takes longer than that.
constexpr int64_t kArrangedFromWeights = int64_t(1) << 26;
int g_x_operand = 0;

bool x_arranged(const Params& p) {
  return g_x_operand == 2 || (g_x_operand == 0 && p.m > 8 && p.n * p.k >= kArrangedFromWeights);
}
bool x_operand_pays(const Params& p) { return g_x_operand != 0 ? g_x_operand > 0 : p.m > 12 || x_arranged(p); }

template <typename T, int NB>
void launch_nested(const Params& p, bool nested, int split_k, cudaStream_t stream) {
  if (NB == 2 && x_operand_pays(p)) {
    const bool arranged = x_arranged(p);
    if (nested) arranged ? launch_x<T, true, true>(p, split_k, stream) : launch_x<T, true, false>(p, split_k, stream);
    else arranged ? launch_x<T, false, true>(p, split_k, stream) : launch_x<T, false, false>(p, split_k, stream);
  } else if (nested) {
    launch<T, NB, true>(p, split_k, stream);
  } else {
    launch<T, NB, false>(p, split_k, stream);
  }
}

template <typename T>
void launch_m(const Params& p, bool nested, int split_k, cudaStream_t stream) {
  if (p.m <= 8) launch_nested<T, 1>(p, nested, split_k, stream);
  else launch_nested<T, 2>(p, nested, split_k, stream);
}

}  // namespace

bool mma_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x) {
  return layout_supported(dtype, w, x) && m >= 1 && m <= kMmaMaxBatch && w.k % kRound == 0 && w.blocksize >= 32;
}

void set_mma_x_operand(int mode) { g_x_operand = mode; }

void mma(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out, int split_k,
         cudaStream_t stream) {
  const Params p = make_params(w, x, m, bias, out);
  const bool nested = w.qabsmax != nullptr;
  if (split_k > kWarps || (split_k & (split_k - 1)) != 0) split_k = 0;
  if (dtype == DType::BF16) launch_m<__nv_bfloat16>(p, nested, split_k, stream);
  else launch_m<__half>(p, nested, split_k, stream);
}

}  // namespace lowbit::ops::cuda::fused4
