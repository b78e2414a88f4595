// The epilogue of the wgmma GEMMs (sm_90a): a warpgroup's 64 x kBN tile of
// accumulators (M = output columns, N = tokens) stored by TMA through a
// shared-memory buffer, instead of two-byte stores thread by thread (at 256
// tokens those took 5-6 us a tile on an H200: four 16-byte pieces a warp
// instruction).
#pragma once

#include <cuda.h>

#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "ops/cuda/activation_cuda.cuh"
#include "ops/cuda/hopper_cuda.h"
#include "ops/cuda/mma_cuda.cuh"
#include "ops/cuda/wgmma_sm90a.cuh"

namespace lowbit::ops::cuda::wgmma {

// Whether an output [m, n] of 16-bit values at `out` can be stored by TMA:
// its rows must be 16-byte aligned (else the kernels store thread by thread).
inline bool output_fits_tma(const void* out, int64_t n) {
  return n % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
}

// The TMA element type of a 16-bit compute dtype (f16 or bf16).
template <typename T>
constexpr CUtensorMapDataType tensor_map_type() {
  static_assert(sizeof(T) == 2, "16-bit values");
  return std::is_same_v<T, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
}

// The tensor map that store_tile_by_tma writes through: out [m, n] of T,
// boxes of [box_tokens, 64] in the 128-byte swizzle.
template <typename T>
CUtensorMap output_tensor_map(void* out, int64_t m, int64_t n, int box_tokens) {
  return hopper::tensor_map_2d(out, tensor_map_type<T>(), 2, m, n, box_tokens, 64, CU_TENSOR_MAP_SWIZZLE_128B);
}

// Barrier `id` among the 128 threads of a warpgroup.
__device__ __forceinline__ void warpgroup_sync(int id) { named_barrier_sync(id, 128); }

// Writes pass `pass` of a warpgroup's tile into `buffer` (kPassTokens x 128
// bytes, 1024-byte aligned) as the TMA store of store_tile_by_tma reads it.
// packed(j, h) is the pair (tokens 2t, 2t + 1) of output column 16 w + g +
// 8 h of token block j (8 tokens) that lane (g, t) of warp w holds: a warp's
// two 8x8 matrices of a token block (columns g and g + 8 of its 16) are
// stored transposed by stmatrix into [token][64 columns]; chunk c of token
// row r lands at chunk c ^ (r % 8) as TMA's 128-byte swizzle has it (the
// eight rows of a matrix then hit different banks).
template <int kPassTokens, class Packed>
__device__ __forceinline__ void stage_pass(Packed&& packed, int pass, uint32_t buffer) {
  const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
  // Lane i addresses row i % 8 of matrix i / 8: matrices (columns 0-7, block
  // J), (8-15, J), (0-7, J + 1), (8-15, J + 1).
  const int matrix = lane >> 3;
  const uint32_t chunk = uint32_t(2 * warp + (matrix & 1));
  constexpr int kBlocks = kPassTokens / 8;
#pragma unroll
  for (int jb = 0; jb < kBlocks; jb += 2) {
    const int j = pass * kBlocks + jb;  // the pass's token block jb, among the tile's
    const uint32_t token = uint32_t(8 * (jb + (kBlocks > 1 ? (matrix >> 1) : 0)) + (lane & 7));
    const uint32_t address = buffer + token * 128 + ((chunk ^ (token & 7)) << 4);
    if constexpr (kBlocks > 1) {
      stmatrix_x4_trans(address, packed(j, 0), packed(j, 1), packed(j + 1, 0), packed(j + 1, 1));
    } else {
      stmatrix_x2_trans(address, packed(j, 0), packed(j, 1));
    }
  }
}

// value(j) is the output of accumulator j of this thread: output column
// (row of the wgmma's M) row0 + 16 w + g (+ 8 for j & 2), token m0 + 8 (j /
// 4) + 2t + (j & 1), for lane (g, t) of warp w of the warpgroup. The tile
// goes out kPassTokens tokens at a time through `buffer` (stage_pass).
// Thread 0 of the warpgroup stores the box of `map` (a [m, n] tensor, box
// [kPassTokens, 64], 128-byte swizzle); columns past n and tokens past m are
// not written. Returns once the stores have read `buffer`. `barrier`: the
// warpgroup's named barrier.
template <typename T, int kBN, int kPassTokens, class Value>
__device__ __forceinline__ void store_tile_by_tma(Value&& value, uint32_t buffer, int barrier,
                                                  const CUtensorMap& map, int64_t row0, int64_t m0, int64_t m,
                                                  int64_t n) {
  static_assert(kPassTokens % 8 == 0 && kBN % kPassTokens == 0, "passes of whole token blocks");
  const bool leader = (threadIdx.x & 127) == 0;
#pragma unroll
  for (int pass = 0; pass < kBN / kPassTokens; ++pass) {
    const int64_t token0 = m0 + int64_t(pass) * kPassTokens;
    if (token0 >= m) break;
    if (pass > 0) {
      if (leader) tma_store_wait_read();
      warpgroup_sync(barrier);
    }
    stage_pass<kPassTokens>(
        [&](int j, int h) { return pack_pair<T>(value(4 * j + 2 * h), value(4 * j + 2 * h + 1)); }, pass, buffer);
    fence_async_shared();
    warpgroup_sync(barrier);
    if (leader && row0 < n) {
      tma_store_2d(&map, int(row0), int(token0), buffer);
      tma_store_commit();
    }
  }
  if (leader) tma_store_wait_read();
  warpgroup_sync(barrier);
}

// SwiGLU of a block tile whose rows come in gate / up pairs, stored by TMA:
// lane (g, t) of consumer warp w (0-7, both warpgroups) holds the gate row
// of output column col0 + 8 w + g in its accumulators j with j & 2 == 0 and
// the up row of the same column in j + 2 (value(j) as in store_tile_by_tma),
// so each thread forms its own swiglu(gate, up) with ops::swiglu's roundings
// (both rounded to T, then swiglu_of). The 8 warps write the
// 64 columns x kBN tokens into `buffer` (kBN x 128 bytes, 1024-byte aligned,
// warp w's columns in 16-byte chunk w, TMA's 128-byte swizzle) and thread 0
// stores the box of `map` ([m, n], box [kBN, 64]) at (m0, col0); columns past
// n and tokens past m are not written. `barrier`: a named barrier of the 256
// threads. Returns once the store has read `buffer`.
template <typename T, int kBN, class Value>
__device__ __forceinline__ void store_swiglu_tile_by_tma(Value&& value, uint32_t buffer,
                                                         int barrier, const CUtensorMap& map, int64_t col0,
                                                         int64_t m0, int64_t m, int64_t n) {
  constexpr int kBlocks = kBN / 8;
  static_assert(kBlocks % 4 == 0, "four token blocks a stmatrix");
  const int lane = threadIdx.x & 31;
  const uint32_t warp = (threadIdx.x >> 5) & 7;
  // Token block b's pair (tokens 2t, 2t + 1) of this thread's column.
  const auto packed = [&](int b) {
    const float2 gate = unpack_pair<T>(pack_pair<T>(value(4 * b), value(4 * b + 1)));
    const float2 up = unpack_pair<T>(pack_pair<T>(value(4 * b + 2), value(4 * b + 3)));
    return pack_pair<T>(swiglu_of<T>(gate.x, up.x), swiglu_of<T>(gate.y, up.y));
  };
  // Lane i addresses token row i % 8 of matrix i / 8: token blocks jb .. jb + 3.
#pragma unroll
  for (int jb = 0; jb < kBlocks; jb += 4) {
    const uint32_t token = uint32_t(8 * (jb + (lane >> 3)) + (lane & 7));
    stmatrix_x4_trans(buffer + token * 128 + ((warp ^ (token & 7)) << 4), packed(jb), packed(jb + 1), packed(jb + 2),
                      packed(jb + 3));
  }
  fence_async_shared();
  named_barrier_sync(barrier, 256);
  if (threadIdx.x == 0 && col0 < n && m0 < m) {
    tma_store_2d(&map, int(col0), int(m0), buffer);
    tma_store_commit();
    tma_store_wait_read();
  }
  named_barrier_sync(barrier, 256);
}

}  // namespace lowbit::ops::cuda::wgmma
