// Tiled blockwise 4-bit (NF4/FP4) x bf16/f16 GEMM on tensor cores for
// batches past the decode kernels (9 to a few hundred rows): the packed
// weight and the activations go through shared memory in a multi-stage
// cp.async pipeline, the codes are decoded in registers straight into mma
// fragments.
//
// Block tile (one block = 8 warps, 256 threads, persistent over work items):
//
//              k ->  stage 0 | stage 1 | ...          (kTileK = 128 weights a stage)
//     BN       +---------+---------+----
//     weight   | W tile  | W tile  |      BN x 64 bytes of codes    } cp.async,
//     rows     +---------+---------+----                            } kStages deep
//     BM batch | x tile  | x tile  |      BM x 256 bytes of x       }
//     rows     +---------+---------+----
//
//   warps: WN along the weight rows x (8 / WN) along the batch; a warp owns
//   16*NA weight rows x 8*NB batch rows: NA A fragments (weights) times NB B
//   fragments (activations) per k16 step, NA*NB m16n8k16 mma with f32
//   accumulators. Tiles by batch (Tile<> below, BN x BM): m <= 16: 128 x 16,
//   <= 32: 128 x 32, <= 64: 128 x 64, larger: 128 x 128.
//
// A work item is (weight tile, batch tile, k slice); items run batch tile
// first, so the blocks that share a weight tile run together and the second
// reads it from L2. With split_k > 1 the slices write f32 partial tiles to a
// stream-ordered workspace and a second kernel sums them in slice order
// (deterministic), adds the bias and rounds.
//
// k order: the mma does not care how k is ordered inside a stage, as long as
// x and W agree. Lane t = lane % 4 owns weights [32t, 32t + 32) of each stage
// row (one 16-byte LDS a row: its A rows g and g + 8), and mma step s feeds it
// k = 32t + 4s + 0..3, so its B operand is 8 contiguous bytes of its
// activation row (two steps per 16-byte LDS). The x tile's 16-byte chunks are
// XOR-swizzled (x_chunk) so that those LDS.128 hit 8 distinct bank groups.
//
// Decode: a packed byte (two codes) indexes the 256-entry pair table
// (gemm_4bit_common.cuh; 64 KB, a copy per lane: conflict-free), one HMUL2
// applies the absmax (the weight rounded to the compute dtype after the
// scale, as bitsandbytes' dequantize + matmul rounds it). A lane's 32-weight
// segment lies in one absmax block (blocksize >= 32, k % 32 == 0), whose
// scale comes through the same pipeline: the f32 absmax (4-byte cp.async), or
// for double quantization the aligned word holding the u8 code plus its
// nested f32 scale, decoded where it is used.
//
// Memory traffic per call: n*k/2 bytes of codes per batch tile (the repeats
// mostly from L2), the scales, m*k*2 bytes of x per weight tile (from L2),
// m*n*2 out (+ 8*split_k*m*n of f32 partials). Shared memory: 65 KB tables +
// kStages x (BN*64 + BM*256 + BN*16 (x2 double-quantized)) bytes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "lowbit/core/cuda_check.h"
#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_4bit_common.cuh"
#include "ops/cuda/gemm_4bit_kernels.h"

namespace lowbit::ops::cuda::fused4 {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTileK = 128;   // weights of a stage row: eight k16 mma steps
constexpr int kSegments = 4;  // 32-weight segments of a stage row, one a lane t
constexpr int kTablesBytes = (kPairTableWords + 256) * 4;

// NA: A fragments (16 weight rows) a warp; NB: B fragments (8 batch rows) a
// warp; WN: warps along the weight rows; kStages: pipeline depth.
template <int NA_, int NB_, int WN_, int kStages_>
struct Tile {
  static constexpr int NA = NA_, NB = NB_, WN = WN_, WM = kWarps / WN_, kStages = kStages_;
  static constexpr int BN = 16 * NA * WN;  // weight rows of a block tile
  static constexpr int BM = 8 * NB * WM;   // batch rows of a block tile
  static constexpr int kWBytes = BN * kTileK / 2;
  static constexpr int kXBytes = BM * kTileK * 2;
  static constexpr int kScaleBytes = BN * kSegments * 4;
  // 16-byte chunks a thread copies per stage.
  static constexpr int kWChunks = (BN * 4 + kThreads - 1) / kThreads;
  static constexpr int kXChunks = (BM * 16 + kThreads - 1) / kThreads;
  // Two accumulator chains when a warp has few independent mma.
  static constexpr int kChains = NA * NB <= 2 ? 2 : 1;
  template <bool kNested> static constexpr int stage_bytes() {
    return kWBytes + kXBytes + kScaleBytes * (kNested ? 2 : 1);
  }
  template <bool kNested> static constexpr size_t smem_bytes() {
    return kTablesBytes + size_t(kStages) * stage_bytes<kNested>();
  }
  static_assert(BN * 4 % kThreads == 0 || BN * 4 < kThreads, "W chunks spread evenly");
  static_assert(BM * 16 % kThreads == 0 || BM * 16 < kThreads, "x chunks spread evenly");
};

using Tile16 = Tile<1, 2, 8, 3>;      // 3 stages: two blocks an SM (f32 absmax)
using Tile32 = Tile<1, 4, 8, 4>;
using Tile64 = Tile<1, 8, 8, 4>;
using Tile128 = Tile<2, 8, 4, 3>;
using Tile128x64 = Tile<2, 4, 2, 3>;  // BN 64 x BM 128: more items on short-n shapes

int forced_tile = 0;

// x tile: 16-byte chunk c of row r sits at chunk c ^ (c / 8 * 2) ^ (r % 2),
// so that the LDS.128 of 8 lanes (rows r, r + 1; chunks 4t + j) hit 8
// distinct 16-byte bank groups.
__device__ __forceinline__ int x_chunk(int c, int r) { return c ^ ((c >> 3) << 1) ^ (r & 1); }

template <typename T, class C, bool kNested>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_4bit_large_kernel(const Params p, const int split_k, const int per_slice, const int64_t items,
                           const int64_t scale_blocks, float* partial) {
  extern __shared__ __align__(16) uint32_t smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int warp_n = warp % C::WN, warp_m = warp / C::WN;
  const uint32_t lane4 = uint32_t(lane) * 4;
  const uint32_t table = shared_address(smem);
  const uint32_t stages_addr = table + kTablesBytes;
  const uint8_t* stages = reinterpret_cast<const uint8_t*>(smem) + kTablesBytes;
  const float* nested_map = reinterpret_cast<const float*>(smem + kPairTableWords);
  constexpr int kStageBytes = C::template stage_bytes<kNested>();
  constexpr int kXOffset = C::kWBytes, kScaleOffset = C::kWBytes + C::kXBytes;
  constexpr int kNestedOffset = kScaleOffset + C::kScaleBytes;

  const int64_t n_tiles = (p.n + C::BN - 1) / C::BN, m_tiles = (p.m + C::BM - 1) / C::BM;
  const int k_tiles = int((p.k + kTileK - 1) / kTileK);
  const T* x = static_cast<const T*>(p.x);
  // A stage row lies in one absmax block when blocks of >= 128 start at the
  // row starts' multiples of 128: one scale a row (slot 0 of its four) then.
  const bool row_scales = p.block_shift >= 7 && p.k % kTileK == 0;
  const int scale_count = C::BN * (row_scales ? 1 : kSegments);
  const int seg_slot = row_scales ? 0 : t;
  // Fixed per thread: which chunks it copies (W: 4 a row, x: 16 a row).
  const int w_h = tid & 3, x_ch = tid & 15;
  bool tables_built = false;

  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t tile_m = item % m_tiles, rest = item / m_tiles;
    const int64_t tile_n = rest % n_tiles;
    const int slice = int(rest / n_tiles);
    const int64_t n0 = tile_n * C::BN, m0 = tile_m * C::BM;
    const int kt_begin = slice * per_slice, kt_end = min(k_tiles, kt_begin + per_slice);
    const int nk = max(0, kt_end - kt_begin);

    // Element offsets (at k = 0) of this thread's chunks; a stage adds k0.
    int64_t w_elem[C::kWChunks], x_elem[C::kXChunks], s_elem[2];
    bool x_row_ok[C::kXChunks];
#pragma unroll
    for (int i = 0; i < C::kWChunks; ++i) {
      const int r = (tid >> 2) + i * (kThreads / 4);
      w_elem[i] = min(n0 + r, p.n - 1) * p.k + w_h * 32;
    }
#pragma unroll
    for (int i = 0; i < C::kXChunks; ++i) {
      const int r = (tid >> 4) + i * (kThreads / 16);
      x_row_ok[i] = m0 + r < p.m && r < C::BM;
      x_elem[i] = (x_row_ok[i] ? (m0 + r) * p.k : 0) + x_ch * 8;
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int c = tid + i * kThreads;
      const int r = row_scales ? c : c >> 2, sg = row_scales ? 0 : c & 3;
      s_elem[i] = min(n0 + r, p.n - 1) * p.k + sg * 32;
    }

    // One stage: W (BN rows x 4 chunks), x (BM rows x 16 chunks, swizzled),
    // the scale slots (BN rows x 4 segments, or 1 a row).
    auto load_stage = [&](int slot, int kt) {
      const uint32_t base = stages_addr + uint32_t(slot * kStageBytes);
      const int64_t k0 = int64_t(kt) * kTileK;
#pragma unroll
      for (int i = 0; i < C::kWChunks; ++i) {
        if (C::BN * 4 < kThreads && tid >= C::BN * 4) break;
        const bool valid = k0 + w_h * 32 < p.k;
        cp_async16(base + uint32_t((tid + i * kThreads) * 16), p.packed + (w_elem[i] + (valid ? k0 : 0)) / 2, valid);
      }
#pragma unroll
      for (int i = 0; i < C::kXChunks; ++i) {
        if (C::BM * 16 < kThreads && tid >= C::BM * 16) break;
        const int r = (tid >> 4) + i * (kThreads / 16);
        const bool valid = x_row_ok[i] && k0 + x_ch * 8 < p.k;
        cp_async16(base + uint32_t(kXOffset + r * 256 + x_chunk(x_ch, r) * 16), x + (valid ? x_elem[i] + k0 : 0),
                   valid);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int c = tid + i * kThreads;
        if (c >= scale_count) break;
        const int slot_index = row_scales ? c * kSegments : c;
        const int sg = row_scales ? 0 : c & 3;
        const bool valid = k0 + sg * 32 < p.k;
        const int64_t block = (s_elem[i] + (valid ? k0 : 0)) >> p.block_shift;
        const uint32_t dst = base + uint32_t(kScaleOffset + slot_index * 4);
        if constexpr (kNested) {
          // The aligned word holding the code; the last few codes one by one
          // (a word there would read past the array).
          if ((block | 3) < scale_blocks) cp_async4(dst, p.qabsmax + (block & ~int64_t(3)), valid);
          else store_shared_u32(dst, valid ? uint32_t(p.qabsmax[block]) << (8 * (block & 3)) : 0u);
          cp_async4(dst + C::kScaleBytes, p.nested_absmax + (block >> p.nested_shift), valid);
        } else {
          cp_async4(dst, p.absmax + block, valid);
        }
      }
    };

    int write_slot = 0;
#pragma unroll
    for (int s = 0; s < C::kStages - 1; ++s) {
      if (s < nk) load_stage(s, kt_begin + s);
      cp_async_commit();
    }
    write_slot = C::kStages - 1;
    // The first item's loads are in flight while the tables are built.
    if (!tables_built) {
      build_shared_tables<T, kNested>(smem, kPairTableWords, p);
      tables_built = true;
    }

    // This lane's weight rows (A rows g and g + 8 of each fragment) within
    // the tile, and row * k (mod 2^32: enough for the low block-index bits
    // that pick a double-quantized code's byte).
    int wrow[C::NA][2];
    uint32_t rowk[C::NA][2];
#pragma unroll
    for (int na = 0; na < C::NA; ++na)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        wrow[na][h] = warp_n * 16 * C::NA + na * 16 + g + 8 * h;
        rowk[na][h] = uint32_t(min(n0 + wrow[na][h], p.n - 1)) * uint32_t(p.k);
      }

    float acc[C::kChains][C::NA][C::NB][4] = {};
    int read_slot = 0;
    for (int it = 0; it < nk; ++it) {
      cp_async_wait<C::kStages - 2>();
      __syncthreads();
      if (it + C::kStages - 1 < nk) load_stage(write_slot, kt_begin + it + C::kStages - 1);
      cp_async_commit();
      write_slot = write_slot == C::kStages - 1 ? 0 : write_slot + 1;

      const uint8_t* stage = stages + read_slot * kStageBytes;
      read_slot = read_slot == C::kStages - 1 ? 0 : read_slot + 1;
      const uint32_t elem = uint32_t(kt_begin + it) * kTileK + uint32_t(32 * t);
      uint4 wv[C::NA][2];
      uint32_t scale[C::NA][2];
#pragma unroll
      for (int na = 0; na < C::NA; ++na)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          wv[na][h] = *reinterpret_cast<const uint4*>(stage + wrow[na][h] * 64 + 16 * t);
          const int slot = wrow[na][h] * kSegments + seg_slot;
          float v;
          if constexpr (kNested) {
            const uint32_t packed = reinterpret_cast<const uint32_t*>(stage + kScaleOffset)[slot];
            const uint32_t block = (rowk[na][h] + elem) >> p.block_shift;
            const uint32_t code = (packed >> (8 * (block & 3))) & 0xffu;
            const float nested = reinterpret_cast<const float*>(stage + kNestedOffset)[slot];
            v = __fadd_rn(__fmul_rn(nested_map[code], nested), nested_offset_at(p, block >> p.nested_shift));
          } else {
            v = reinterpret_cast<const float*>(stage + kScaleOffset)[slot];
          }
          scale[na][h] = pack_pair<T>(v, v);
        }
#pragma unroll
      for (int j = 0; j < 4; ++j) {  // 16-byte quarters of the lane's x segment: steps 2j, 2j + 1
        uint4 xv[C::NB];
#pragma unroll
        for (int nb = 0; nb < C::NB; ++nb) {
          const int r = warp_m * 8 * C::NB + nb * 8 + g;
          xv[nb] = *reinterpret_cast<const uint4*>(stage + kXOffset + r * 256 + x_chunk(4 * t + j, g) * 16);
        }
#pragma unroll
        for (int s2 = 0; s2 < 2; ++s2) {
          const int s = 2 * j + s2;
#pragma unroll
          for (int na = 0; na < C::NA; ++na) {
            uint32_t a[4];
            lookup_a_fragment(table, word(wv[na][0], j), word(wv[na][1], j), lane4, s2, a);
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = scale_codes<T>(a[i], scale[na][i & 1]);
#pragma unroll
            for (int nb = 0; nb < C::NB; ++nb)
              mma_16816<T>(acc[s % C::kChains][na][nb], a, s2 ? xv[nb].z : xv[nb].x, s2 ? xv[nb].w : xv[nb].y);
          }
        }
      }
    }
    cp_async_wait<0>();
    __syncthreads();  // the next item's prologue rewrites the stages

    // C fragment: weight rows g, g + 8; batch rows 2t, 2t + 1.
#pragma unroll
    for (int na = 0; na < C::NA; ++na)
#pragma unroll
      for (int nb = 0; nb < C::NB; ++nb)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          float v = acc[0][na][nb][i];
          if constexpr (C::kChains == 2) v += acc[1][na][nb][i];
          const int64_t row = n0 + wrow[na][i >> 1];
          const int64_t b = m0 + warp_m * 8 * C::NB + nb * 8 + 2 * t + (i & 1);
          if (row >= p.n || b >= p.m) continue;
          if (split_k == 1) {
            if (p.bias) v += to_float(static_cast<const T*>(p.bias)[row]);
            static_cast<T*>(p.out)[b * p.n + row] = from_float<T>(v);
          } else {
            partial[(int64_t(slice) * p.m + b) * p.n + row] = v;
          }
        }
  }
}

template <typename T, class C, bool kNested>
void launch(const Params& p, int split_k, cudaStream_t stream) {
  constexpr size_t smem = C::template smem_bytes<kNested>();
  static_assert(smem <= 227 * 1024, "the tiled 4-bit GEMM's shared memory fits an SM");
  constexpr auto kernel = gemm_4bit_large_kernel<T, C, kNested>;
  const int64_t slots = resident_block_slots<kernel>(kThreads, smem);
  const int64_t tiles = ((p.n + C::BN - 1) / C::BN) * ((p.m + C::BM - 1) / C::BM);
  const int k_tiles = int((p.k + kTileK - 1) / kTileK);
  // Split k where that evens out the waves: cost in stage times of one wave,
  // waves x (stages a slice + the pipeline's fill), plus the f32 partials
  // written and read back, counted against the bytes a wave's stage loads.
  if (split_k <= 0) {
    double best = 0.0;
    for (int s = 1; s <= 16 && (s == 1 || k_tiles / s >= 4); ++s) {
      const int64_t waves = (tiles * s + slots - 1) / slots;
      double cost = double(waves) * ((k_tiles + s - 1) / s + C::kStages);
      if (s > 1) cost += 8.0 * s * p.m * p.n / (double(slots) * (C::kWBytes + C::kXBytes)) + 1.0;
      if (s == 1 || cost < best) {
        best = cost;
        split_k = s;
      }
    }
  }
  split_k = std::max(1, std::min(split_k, k_tiles));
  // Empty trailing slices would leave partial tiles unwritten.
  const int per_slice = (k_tiles + split_k - 1) / split_k;
  split_k = (k_tiles + per_slice - 1) / per_slice;
  const int64_t items = tiles * split_k;
  const int64_t grid = std::min(items, slots);
  const int64_t scale_blocks = (p.n * p.k + (int64_t(1) << p.block_shift) - 1) >> p.block_shift;
  float* partial = allocate_k_slices(p, split_k, stream);
  kernel<<<unsigned(grid), kThreads, smem, stream>>>(p, split_k, per_slice, items, scale_blocks, partial);
  LOWBIT_CUDA_CHECK_LAUNCH();
  finish_k_slices<T>(p, partial, split_k, stream);
}

template <typename T, class C>
void launch_nested(const Params& p, bool nested, int split_k, cudaStream_t stream) {
  if (nested) launch<T, C, true>(p, split_k, stream);
  else launch<T, C, false>(p, split_k, stream);
}

// Tile shapes by batch (forced_tile 1-5 picks one for benchmarks).
template <typename T>
void launch_tile(const Params& p, bool nested, int split_k, cudaStream_t stream) {
  int tile = forced_tile;
  if (tile <= 0 || tile > 5) tile = p.m <= 16 ? 1 : p.m <= 32 ? 2 : p.m <= 64 ? 3 : 4;
  switch (tile) {
    case 1: launch_nested<T, Tile16>(p, nested, split_k, stream); return;
    case 2: launch_nested<T, Tile32>(p, nested, split_k, stream); return;
    case 3: launch_nested<T, Tile64>(p, nested, split_k, stream); return;
    case 4: launch_nested<T, Tile128>(p, nested, split_k, stream); return;
    default: launch_nested<T, Tile128x64>(p, nested, split_k, stream); return;
  }
}

}  // namespace

void set_large_tile(int tile) { forced_tile = tile; }

bool large_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x) {
  return layout_supported(dtype, w, x) && m >= 1 && m <= kLargeMaxBatch && w.k > 0 && w.k % 32 == 0 &&
         w.blocksize >= 32 && w.n * w.k / 2 < (int64_t(1) << 40);
}

void large(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out, int split_k,
           cudaStream_t stream) {
  const Params p = make_params(w, x, m, bias, out);
  const bool nested = w.qabsmax != nullptr;
  if (dtype == DType::BF16) launch_tile<__nv_bfloat16>(p, nested, split_k, stream);
  else launch_tile<__half>(p, nested, split_k, stream);
}

}  // namespace lowbit::ops::cuda::fused4
