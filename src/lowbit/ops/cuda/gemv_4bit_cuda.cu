// Blockwise 4-bit (NF4/FP4) GEMV on CUDA cores for batches of 1 to 4:
// out[m, n] = x[m, k] W^T, W read from memory once as packed codes.
//
// Work split (one block = 16 warps, 512 threads, persistent):
//
//   row r   | seg 0 | seg 1 | ... | seg 31 | seg 32 | ...   seg = 32 weights = one
//   row r+1 | lane0 | lane1 | ... | lane31 | lane0  | ...   16-byte load; lane L takes
//   ...       (R rows a warp, the same segments)              segments L, L + 32 * split_k, ...
//
// A warp carries R rows (4 for m <= 2, else 2) over the same segments, so each
// activation load and its conversion to f32 serve R rows; the lanes of a warp
// read 32 consecutive 16-byte pieces of a row (coalesced), R x kUnroll loads
// in flight a lane. Without a k split each warp takes row groups on its own
// (round robin over the grid's warps: no SM runs dry before the others); with
// split_k > 1 the warps of a block take interleaved segment slices of the same
// rows (chosen on the host so that small-n shapes still fill every SM) and
// their sums meet in shared memory.
//
// Decode: a packed byte (two codes) indexes a 256-entry table of code pairs in
// bf16x2/f16x2 form (one copy per lane, conflict-free; gemm_4bit_common.cuh);
// a pair becomes two f32 values with two integer ops (bf16) or two converts
// (f16). Products and sums are f32: each segment lies inside one absmax block
// (blocksize a power of two >= 32), so its 32 products are summed unscaled and
// one FFMA per batch row applies the block's absmax, decoded in the kernel
// when double-quantized. The lanes' sums meet by a halving shuffle reduction
// (each step trades half the values): R x m sums cost about R x m + 5
// shuffles instead of 5 R m.
//
// Per weight: half a PRMT, half an LDS and one integer op for the decode, one
// FFMA per batch row, 2 bytes of activation loads (L1) per R rows; measured
// 4.4 instructions a weight at m = 1 in all (docs/cuda.md). Launch: 512
// threads, 64 registers at m = 1 (2 blocks an SM), 66 KB of shared memory
// (the pair table, the nested code map, the split-k sums). Memory traffic per call:
// n*k/2 bytes of codes and n*k/blocksize scales (f32, or u8 + the nested f32),
// streamed past L1; m*k*2 bytes of activations, L1/L2 resident.
#include <algorithm>

#include "lowbit/core/cuda_check.h"
#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_4bit_common.cuh"
#include "ops/cuda/gemm_4bit_kernels.h"

namespace lowbit::ops::cuda::fused4 {
namespace {

constexpr int kWarps = 16;
constexpr int kThreads = kWarps * 32;
constexpr int kSeg = 32;     // weights of one 16-byte load
constexpr int kUnroll = 1;   // segments a lane loads before using the first

// Rows a warp carries: more rows share each activation load, but cost registers.
template <int M> constexpr int kRows = M <= 2 ? 4 : 2;
constexpr int pad_pow2(int v) { return v <= 1 ? 1 : v <= 2 ? 2 : v <= 4 ? 4 : v <= 8 ? 8 : v <= 16 ? 16 : 32; }
constexpr int log2_const(int v) { return v <= 1 ? 0 : 1 + log2_const(v / 2); }

template <typename T> __device__ __forceinline__ float2 unpack(uint32_t v);
template <> __device__ __forceinline__ float2 unpack<__nv_bfloat16>(uint32_t v) {
  return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
}
template <> __device__ __forceinline__ float2 unpack<__half>(uint32_t v) {
  return __half22float2(*reinterpret_cast<const __half2*>(&v));
}

__device__ __forceinline__ uint32_t lookup_byte(int j, uint32_t table, uint32_t w, uint32_t lane4) {
  return j == 0 ? lookup<0>(table, w, lane4) : j == 1 ? lookup<1>(table, w, lane4)
       : j == 2 ? lookup<2>(table, w, lane4) : lookup<3>(table, w, lane4);
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// Sums each of v[0..N) over the warp (N a power of two <= 32). Each step
// sends half of the remaining values and keeps the other half, so lane L ends
// with the total of value L >> (5 - log2 N).
template <int N>
__device__ __forceinline__ float warp_sum_spread(float (&v)[N], int lane) {
  int c = N;
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) {
    if (c > 1) {
      const bool upper = (lane & o) != 0;
      c >>= 1;
#pragma unroll
      for (int i = 0; i < N / 2; ++i) {
        if (i < c) {
          const float send = upper ? v[i] : v[i + c];
          const float keep = upper ? v[i + c] : v[i];
          v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
        }
      }
    } else {
      v[0] += __shfl_xor_sync(0xffffffffu, v[0], o);
    }
  }
  return v[0];
}

template <typename T>
__device__ __forceinline__ void store_out(const Params& p, int m, int64_t row, float v) {
  if (p.bias) v += to_float(static_cast<const T*>(p.bias)[row]);
  static_cast<T*>(p.out)[int64_t(m) * p.n + row] = from_float<T>(v);
}

template <typename T, int M, bool kNested>
__global__ void __launch_bounds__(kThreads, M == 1 ? 2 : 1) gemv_4bit_kernel(const Params p, const int split_k) {
  constexpr int R = kRows<M>;
  constexpr int MP = pad_pow2(M);  // sums a row carries, padded for the reduction
  constexpr int N = R * MP;
  extern __shared__ __align__(16) uint32_t smem[];
  float* nested_map = build_shared_tables<T, kNested>(smem, kPairTableWords, p);
  float* red = nested_map + 256;  // [slice][group][N] when split_k > 1

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t lane4 = uint32_t(lane) * 4;
  const uint32_t table = shared_address(smem);
  const int groups = kWarps / split_k;  // row groups of a block
  const int group = warp % groups, slice = warp / groups;
  const int64_t segs = p.k / kSeg;
  const int64_t stride = int64_t(32) * split_k;
  const int64_t rows_per_tile = int64_t(groups) * R;
  const int64_t tiles = (p.n + rows_per_tile - 1) / rows_per_tile;
  const T* x = static_cast<const T*>(p.x);

  // Without a k split each warp takes row groups on its own, so the SMs'
  // shares stay even to the end; with one, a block's warps share a tile.
  const bool own = split_k == 1;
  const int64_t items = own ? (p.n + R - 1) / R : tiles;
  const int64_t step = own ? int64_t(gridDim.x) * kWarps : gridDim.x;
  for (int64_t item = own ? int64_t(blockIdx.x) * kWarps + warp : blockIdx.x; item < items; item += step) {
    const int64_t row0 = own ? item * R : item * rows_per_tile + int64_t(group) * R;
    int64_t elem0[R];  // first element of each row; rows past n reread row n - 1
#pragma unroll
    for (int r = 0; r < R; ++r) elem0[r] = min(row0 + r, p.n - 1) * p.k;
    float acc[N] = {};

    for (int64_t s0 = int64_t(slice) * 32 + lane; s0 < segs; s0 += stride * kUnroll) {
      uint4 wv[kUnroll][R];
      ScaleRaw sc[kUnroll][R];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t s = s0 + u * stride;
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (s < segs) {
            const int64_t e = elem0[r] + s * kSeg;
            wv[u][r] = load_streaming16(p.packed + (e >> 1));
            sc[u][r] = load_scale<kNested>(p, uint32_t(e >> p.block_shift));
          } else {
            wv[u][r] = make_uint4(0, 0, 0, 0);
            sc[u][r] = ScaleRaw{0.0f, 0u};
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t s = s0 + u * stride;
        if (s >= segs) break;
        float part[R][M] = {};
#pragma unroll
        for (int i = 0; i < 4; ++i) {  // word i: weights 8i .. 8i + 7 of the segment
          uint4 xv[M];
#pragma unroll
          for (int m = 0; m < M; ++m)
            xv[m] = __ldg(reinterpret_cast<const uint4*>(x + int64_t(m) * p.k + s * kSeg) + i);
#pragma unroll
          for (int j = 0; j < 4; ++j) {  // byte j: weights 8i + 2j, 8i + 2j + 1
            float2 xf[M];
#pragma unroll
            for (int m = 0; m < M; ++m) xf[m] = unpack<T>(word(xv[m], j));
#pragma unroll
            for (int r = 0; r < R; ++r) {
              const float2 c = unpack<T>(lookup_byte(j, table, word(wv[u][r], i), lane4));
#pragma unroll
              for (int m = 0; m < M; ++m) {
                part[r][m] = fmaf(c.x, xf[m].x, part[r][m]);
                part[r][m] = fmaf(c.y, xf[m].y, part[r][m]);
              }
            }
          }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const uint32_t block = uint32_t((elem0[r] + s * kSeg) >> p.block_shift);
          const float scale = decode_scale<kNested>(p, nested_map, sc[u][r], block);
#pragma unroll
          for (int m = 0; m < M; ++m) acc[r * MP + m] = fmaf(part[r][m], scale, acc[r * MP + m]);
        }
      }
    }

    const float total = warp_sum_spread<N>(acc, lane);
    const int idx = lane >> (5 - log2_const(N));
    const bool writer = (lane & (32 / N - 1)) == 0;
    if (own) {
      const int64_t row = row0 + idx / MP;
      if (writer && idx % MP < M && row < p.n) store_out<T>(p, idx % MP, row, total);
    } else {
      if (writer) red[(slice * groups + group) * N + idx] = total;
      __syncthreads();
      for (int i = threadIdx.x; i < groups * N; i += kThreads) {
        const int g = i / N, id = i % N;
        float sum = 0.0f;
        for (int sl = 0; sl < split_k; ++sl) sum += red[(sl * groups + g) * N + id];
        const int64_t row = item * rows_per_tile + int64_t(g) * R + id / MP;
        if (id % MP < M && row < p.n) store_out<T>(p, id % MP, row, sum);
      }
      __syncthreads();  // `red` is rewritten by the next tile
    }
  }
}

template <typename T, int M, bool kNested>
void launch(const Params& p, int split_k, cudaStream_t stream) {
  constexpr int R = kRows<M>;
  constexpr size_t smem = (size_t(kPairTableWords) + 256) * 4 + size_t(kWarps) * R * pad_pow2(M) * 4;
  constexpr auto kernel = gemv_4bit_kernel<T, M, kNested>;
  const int64_t slots = resident_block_slots<kernel>(kThreads, smem);
  const int64_t segs = p.k / kSeg;
  auto tiles_for = [&](int ks) {
    const int64_t rows = int64_t(kWarps / ks) * R;
    return (p.n + rows - 1) / rows;
  };
  // Split k only while the tiles don't fill the block slots and each lane
  // keeps at least two segments a row.
  if (split_k <= 0) {
    split_k = 1;
    while (split_k < kWarps && tiles_for(split_k) < slots && segs >= int64_t(64) * split_k * 2) split_k *= 2;
  }
  const int64_t grid = std::min(tiles_for(split_k), slots);
  kernel<<<unsigned(grid), kThreads, smem, stream>>>(p, split_k);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

template <typename T, int M>
void launch_nested(const Params& p, bool nested, int split_k, cudaStream_t stream) {
  if (nested) launch<T, M, true>(p, split_k, stream);
  else launch<T, M, false>(p, split_k, stream);
}

template <typename T>
void launch_m(const Params& p, bool nested, int split_k, cudaStream_t stream) {
  switch (p.m) {
    case 1: launch_nested<T, 1>(p, nested, split_k, stream); break;
    case 2: launch_nested<T, 2>(p, nested, split_k, stream); break;
    case 3: launch_nested<T, 3>(p, nested, split_k, stream); break;
    default: launch_nested<T, 4>(p, nested, split_k, stream); break;
  }
}

}  // namespace

bool gemv_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x) {
  return layout_supported(dtype, w, x) && m >= 1 && m <= kGemvMaxBatch && w.k % kSeg == 0 && w.blocksize >= kSeg;
}

void gemv(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out, int split_k,
          cudaStream_t stream) {
  const Params p = make_params(w, x, m, bias, out);
  const bool nested = w.qabsmax != nullptr;
  if (split_k > kWarps || (split_k & (split_k - 1)) != 0) split_k = 0;
  if (dtype == DType::BF16) launch_m<__nv_bfloat16>(p, nested, split_k, stream);
  else launch_m<__half>(p, nested, split_k, stream);
}

}  // namespace lowbit::ops::cuda::fused4
