// LLM.int8 on Hopper's warpgroup MMA (wgmma, sm_90a): int8 x int8 with
// int32 sums, both operands brought to shared memory by TMA, bitsandbytes'
// dequantization (and the outlier columns' 16-bit product, computed before:
// linear_int8_cuda.cu) in the epilogue, so the int32 products never leave
// the registers.
//
// Block tile (two or three consumer warpgroups and a producer, persistent
// over tiles):
//
//              k ->  stage 0 | stage 1 | ...          (kStageK = 128 codes a stage)
//     128      +---------+---------+---
//     or 192   | WG 0: rows 0-63     |  A: rows x 128 bytes } TMA, 128-byte swizzle,
//     weight   | WG 1: rows 64-127   |                      } kStages deep
//     rows     | (WG 2: rows 128-191)|
//              +---------+---------+---
//     BN       | x codes | x codes |    B: BN x 128 bytes
//     tokens   +---------+---------+---
//
//   out^T[rows x BN] = W[rows x k] codes^T[k x BN]: each consumer warpgroup
//   issues four m64nBNk32 wgmma a stage (BN = 64, 96 or 128; a 256-token tile,
//   two n128 wgmma a step, measured no faster on an H200). The last warpgroup is the producer: its first thread waits for a free slot
//   (`empty` mbarrier, one arrival a consumer warp once its wgmma reading the
//   slot retired) and issues the two TMA loads counted on the slot's `full`
//   barrier; setmaxnreg moves its registers to the consumers. Codes past k
//   and rows past m or n read as zeros.
//
// Epilogue, as epilogue_kernel of linear_int8_cuda.cu (and the CPU op):
// f16(fma(acc * row_stat * SCB, 1/127^2, bias)), + the outlier product
// rounded to f16 once more when there are outlier columns, in x's dtype;
// up to kSummedOutliers columns the product is summed here from the
// columns' f16 values (Int8OutlierTerms), in the CPU's order.
// Shapes with few tiles for the SMs split k: work items are (token tile,
// weight tile, k slice); the slices add their int32 sums into a zeroed
// [m, n] buffer (integer sums: the order does not change a bit) and a second
// kernel applies the same epilogue.
// Memory traffic: the weight once per token tile (the repeats from L2: the
// token tiles of a weight tile run together), the codes once per weight tile
// (from L2), m x n outputs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "lowbit/core/cuda_check.h"
#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_int8_cuda.h"
#include "ops/cuda/hopper_cuda.h"
#include "ops/cuda/int8_epilogue.cuh"
#include "ops/cuda/wgmma_epilogue_sm90a.cuh"
#include "ops/cuda/wgmma_sm90a.cuh"

namespace lowbit::ops::cuda {
namespace {

constexpr int kProducerRegisters = 24;
constexpr int kStageK = 128;

constexpr int kOutlierChunk = 16, kXStride = 20;

// kSparse: threshold > 0, so the epilogue may add outlier columns (their
// shared memory beside the stages). Giving it a stage to stay in the 196 KB
// carveout measured 5-10% faster while the epilogue loaded each token's row
// statistic from memory; with those loaded before the k loop, keeping every
// stage measured 0-5% faster in 8 of 9 cases (16 / 256 / 512 rows on the
// three shapes of the benchmark), 1% slower in one.
// kWarpgroups consumer warpgroups of 64 weight rows each: two (128-row
// tiles) or three (192 rows: fewer, larger tiles, which fill one wave where
// 128-row tiles leave part of a second). A warpgroup's wgmma reads (64 + BN)
// x 128 bytes of shared memory a stage for 64 x BN x 128 products whatever
// the tile's height; a taller tile writes fewer TMA bytes a product.
template <int BN_, bool kSparse_, int kWarpgroups_ = 2>
struct Config {
  static constexpr int BN = BN_;
  static constexpr bool kSparse = kSparse_;
  static constexpr int kWarpgroups = kWarpgroups_;
  static constexpr int kRows = 64 * kWarpgroups;  // weight rows of a block tile
  static constexpr int kConsumerThreads = 128 * kWarpgroups;
  static constexpr int kThreads = kConsumerThreads + 128;  // and the producer warpgroup
  static constexpr int kConsumerWarps = kConsumerThreads / 32;
  // After setmaxnreg, a lane of each SM sub-partition: 2 x 240 + 24 or 3 x 160 + 24 <= 512.
  static constexpr int kConsumerRegisters = kWarpgroups == 2 ? 240 : 160;
  static_assert(kWarpgroups == 2 || kWarpgroups == 3, "two or three consumer warpgroups");
  static constexpr int kABytes = kRows * kStageK;
  static constexpr int kBBytes = BN * kStageK;
  static constexpr int kStageBytes = kABytes + kBBytes;
  // Tokens a TMA store of the output passes: their staging buffer
  // (kPassTokens x 128 bytes) is a warpgroup's own weight rows of the last
  // stage's slot.
  static constexpr int kPassTokens = BN % 64 == 0 ? 64 : 32;
  // The epilogue's outlier columns, kOutlierChunk at a time: the tile's
  // tokens' values (rows of kXStride floats: the four tokens a warp reads
  // together fall in distinct banks); the tile rows' weights, as f32 values
  // gathered beforehand or (the same bytes) the codes of all kSummedOutliers
  // columns taken from the weight tiles; then the ordered column list.
  static constexpr int kOutlierBytes =
      kSparse ? BN * kXStride * 4 + kOutlierChunk * kRows * 4 + kSummedOutliers * 4 : 0;
  static constexpr int kFitStages = (227 * 1024 - 1024 - kOutlierBytes - 2 * 8 * 8) / kStageBytes;
  static constexpr int kStages =
      kWarpgroups == 2 ? (BN == 128 ? 6 : BN == 96 ? 7 : 8) : (kFitStages < 8 ? kFitStages : 8);
  static constexpr int kOutlierXOffset = kStages * kStageBytes;
  static constexpr int kOutlierWOffset = kOutlierXOffset + (kSparse ? BN * kXStride * 4 : 0);
  static constexpr int kOutlierColsOffset = kOutlierWOffset + (kSparse ? kOutlierChunk * kRows * 4 : 0);
  static constexpr int kBarriersOffset = kOutlierColsOffset + (kSparse ? kSummedOutliers * 4 : 0);
  static_assert(kSummedOutliers * kRows <= kOutlierChunk * kRows * 4, "captured codes fit the weights' area");
  static constexpr size_t kSmemBytes = size_t(kBarriersOffset) + 2 * kStages * 8 + 1024;
  static_assert(kStageBytes % 1024 == 0, "stage slots keep the 1024-byte swizzle alignment");
  static_assert(kStages >= 4, "a pipeline of at least four stages");
  static_assert(kSmemBytes <= 227 * 1024, "the int8 wgmma GEMM's shared memory fits an SM");
};

// The consumer warpgroups alone (named barrier 1; the producer warp is busy).
template <int kCount>
__device__ __forceinline__ void consumer_sync() {
  wgmma::named_barrier_sync(1, kCount);
}

// The epilogue of split items, one thread an output.
template <typename T, typename B>
__global__ void int8_split_epilogue_kernel(const int32_t* sums, const float* row_stats, const float* scb,
                                           const B* bias, const Int8OutlierTerms outliers, T* out, int64_t m,
                                           int64_t n) {
  wait_for_previous_grid();
  const int32_t count = outliers.count ? *outliers.count : 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m * n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t token = i / n, row = i % n;
    const float b = bias ? round_f16(to_float(bias[row])) : 0.0f;
    float extra = 0.0f;
    if (count > kSummedOutliers) {
      extra = outliers.product[i];
    } else {
      for (int32_t o = 0; o < count; ++o)
        extra = __fadd_rn(extra, __fmul_rn(outliers.x_cols[token * kSummedOutliers + o], outliers.w_cols[o * n + row]));
    }
    out[i] = from_float<T>(int8_output(sums[i], row_stats[token], scb[row], b, count > 0, extra));
  }
}

template <typename T, typename B, class C>
__global__ void __launch_bounds__(C::kThreads, 1)
    gemm_int8_wgmma_kernel(const __grid_constant__ CUtensorMap w_map, const __grid_constant__ CUtensorMap codes_map,
                           const __grid_constant__ CUtensorMap out_map, const float* row_stats, const float* scb,
                           const B* bias, const Int8OutlierTerms outliers, T* out, const int64_t m, const int64_t n,
                           const wgmma::WorkItems work, int32_t* sums, const bool tma_out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t raw_addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  const uint32_t base = (raw_addr + 1023u) & ~1023u;
  const uint32_t full_bar = base + C::kBarriersOffset, empty_bar = full_bar + 8 * C::kStages;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  if (tid == 0) wgmma::init_stage_barriers(full_bar, empty_bar, C::kStages, 1, C::kConsumerWarps);
  __syncthreads();
  wait_for_previous_grid();  // a programmatic dependent of the row quantization (and outlier kernel)

  if (warp >= C::kConsumerWarps) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kProducerRegisters));
    if (tid != C::kConsumerThreads) return;
    wgmma::StageRing<C::kStages> ring{full_bar, empty_bar};
    for (int64_t item = blockIdx.x; item < work.items; item += gridDim.x) {
      const auto it = work.at<C::BN, C::kRows>(item);
      for (int kt = it.kt0; kt < it.kt1; ++kt) {
        ring.wait_empty();
        const uint32_t dst = base + uint32_t(ring.slot * C::kStageBytes), bar = ring.full();
        wgmma::barrier_arrive_expect(bar, C::kStageBytes);
        wgmma::tma_load_2d(dst, &w_map, kt * kStageK, int(it.n0), bar);
        wgmma::tma_load_2d(dst + C::kABytes, &codes_map, kt * kStageK, int(it.m0), bar);
        ring.advance();
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(C::kConsumerRegisters));
  const int32_t outlier_count = C::kSparse && outliers.count ? *outliers.count : 0;
  // Up to kSummedOutliers outlier columns the epilogue sums their product
  // from shared memory: an item's first kOutlierChunk columns are copied
  // there by cp.async before its k loop (they land while it runs), the
  // rest (if any) in the epilogue.
  const bool stage_outliers = C::kSparse && !sums && outlier_count > 0 && outlier_count <= kSummedOutliers;
  // Without gathered weights (w_cols null; never with a k split) the
  // columns' codes are copied from each weight tile as it passes: code[o][r]
  // for column o and tile row r, all kSummedOutliers columns at once.
  const bool capture = stage_outliers && outliers.w_cols == nullptr;
  int8_t* const captured = reinterpret_cast<int8_t*>(smem_raw + (base - raw_addr) + C::kOutlierWOffset);
  int32_t* const cols_s = reinterpret_cast<int32_t*>(smem_raw + (base - raw_addr) + C::kOutlierColsOffset);
  if (capture) {
    for (int i = tid; i < outlier_count; i += C::kConsumerThreads) cols_s[i] = outliers.cols[i];
    consumer_sync<C::kConsumerThreads>();
  }
  const uint32_t xs_addr = base + C::kOutlierXOffset, ws_addr = base + C::kOutlierWOffset;
  const auto stage_outlier_chunk = [&](int64_t m0, int64_t n0, int o0) {
    const int cols = min(kOutlierChunk, outlier_count - o0);
    for (int i = tid; i < C::BN * (kOutlierChunk / 4); i += C::kConsumerThreads) {
      const int64_t token = m0 + i / (kOutlierChunk / 4);
      const int q = i % (kOutlierChunk / 4);
      cp_async16(xs_addr + uint32_t(((i / (kOutlierChunk / 4)) * kXStride + 4 * q) * 4),
                 outliers.x_cols + (token < m ? token : 0) * kSummedOutliers + o0 + 4 * q, token < m);
    }
    for (int i = tid; i < (capture ? 0 : cols * C::kRows); i += C::kConsumerThreads) {
      const int64_t row = n0 + i % C::kRows;
      cp_async4(ws_addr + uint32_t(i * 4), outliers.w_cols + int64_t(o0 + i / C::kRows) * n + (row < n ? row : 0),
                row < n);
    }
    cp_async_commit();
  };
  const int wg = warp >> 2, t = lane & 3;
  const int row0 = wg * 64 + (warp & 3) * 16 + (lane >> 2), row1 = row0 + 8;
  wgmma::StageRing<C::kStages> ring{full_bar, empty_bar};
  for (int64_t item = blockIdx.x; item < work.items; item += gridDim.x) {
    const auto it = work.at<C::BN, C::kRows>(item);
    if (stage_outliers) {
      consumer_sync<C::kConsumerThreads>();  // the item before has read its columns
      stage_outlier_chunk(it.m0, it.n0, 0);
    }
    // The epilogue's operands are loaded before the k loop, whose barriers
    // keep them there, so that their latency hides behind it: loaded in the
    // epilogue, each token's row statistic was a memory round trip between
    // two stores (ncu at 256 x 4096 x 11008: the epilogue took ~40% of the
    // consumer warps' stall samples). stat[i]: token_of(j) for j = 4 (i / 2) + i % 2.
    const int64_t r0 = it.n0 + row0, r1 = it.n0 + row1;
    const auto token_of = [&](int j) { return it.m0 + 8 * (j >> 2) + 2 * t + (j & 1); };
    float stat[C::BN / 4];
    float s0 = 0.0f, s1 = 0.0f, b0 = 0.0f, b1 = 0.0f;
    if (!sums) {
#pragma unroll
      for (int i = 0; i < C::BN / 4; ++i) {
        const int64_t token = token_of(4 * (i >> 1) + (i & 1));
        stat[i] = token < m ? __ldg(row_stats + token) : 0.0f;
      }
      if (r0 < n) s0 = __ldg(scb + r0);
      if (r1 < n) s1 = __ldg(scb + r1);
      if (bias && r0 < n) b0 = round_f16(to_float(bias[r0]));
      if (bias && r1 < n) b1 = round_f16(to_float(bias[r1]));
    }
    int32_t acc[C::BN / 2];
    int next_outlier = 0;  // capture: the next column to copy, and where it is
    int32_t next_col = capture ? cols_s[0] : 0;
    for (int kt = it.kt0; kt < it.kt1; ++kt) {
      ring.wait_full();
      if (capture) {
        // Lane t copies the columns o = t (mod 4) of its two rows; the tile
        // sits in TMA's 128-byte swizzle (16-byte chunk j of row r at j ^ (r % 8)).
        const uint8_t* tile = smem_raw + (base - raw_addr) + ring.slot * C::kStageBytes;
        const auto code_at = [&](int r, int c) {
          return int8_t(tile[r * kStageK + ((((c >> 4) ^ (r & 7)) << 4) | (c & 15))]);
        };
        while (next_outlier < outlier_count && next_col < (kt + 1) * kStageK) {
          if ((next_outlier & 3) == t) {
            const int c = next_col - kt * kStageK;
            captured[next_outlier * C::kRows + row0] = code_at(row0, c);
            captured[next_outlier * C::kRows + row1] = code_at(row1, c);
          }
          ++next_outlier;
          next_col = next_outlier < outlier_count ? cols_s[next_outlier] : 0x7fffffff;
        }
      }
      const uint32_t a_addr = base + uint32_t(ring.slot * C::kStageBytes) + uint32_t(wg * 64 * kStageK);
      const uint32_t b_addr = base + uint32_t(ring.slot * C::kStageBytes + C::kABytes);
      // The k32 steps 32 bytes apart: +2 in the descriptors' 16-byte address
      // field, which cannot carry (shared addresses < 2^18).
      const uint64_t a_desc0 = wgmma::sw128_desc(a_addr), b_desc0 = wgmma::sw128_desc(b_addr);
      uint64_t a_desc[4], b_desc[4];
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        a_desc[s] = a_desc0 + uint64_t(2 * s);
        b_desc[s] = b_desc0 + uint64_t(2 * s);
        wgmma::keep(a_desc[s]);
        wgmma::keep(b_desc[s]);
      }
#pragma unroll
      for (int j = 0; j < C::BN / 2; ++j) wgmma::keep(acc[j]);
      wgmma::fence();
#pragma unroll
      for (int s = 0; s < 4; ++s) wgmma::wgmma_ss_s8<C::BN>(acc, a_desc[s], b_desc[s], kt > it.kt0 || s > 0);
      wgmma::commit();
      wgmma::wait<1>();
#pragma unroll
      for (int j = 0; j < C::BN / 2; ++j) wgmma::keep(acc[j]);
      // The stage before retired: its slot is free.
      if (kt > it.kt0 && lane == 0) ring.release(1);
      ring.advance();
    }
    wgmma::wait<0>();
#pragma unroll
    for (int j = 0; j < C::BN / 2; ++j) wgmma::keep(acc[j]);
    // With the output by TMA the last slot is released after the epilogue,
    // which stages the warpgroup's rows in the slot's weight rows (read by
    // this warpgroup's wgmma alone).
    const int last_slot = ring.slot == 0 ? C::kStages - 1 : ring.slot - 1;
    const uint32_t staging = base + uint32_t(last_slot * C::kStageBytes + wg * 64 * kStageK);
    if (lane == 0 && !tma_out) ring.release(1);

    // Accumulator j: weight row (j & 2 ? row1 : row0), token 8 * (j / 4) + 2t + (j & 1).
    if (sums) {  // a k slice: its int32 sums added to the others'
#pragma unroll
      for (int j = 0; j < C::BN / 2; ++j) {
        const int64_t token = token_of(j), row = (j & 2) ? r1 : r0;
        if (token < m && row < n) atomicAdd(sums + token * n + row, acc[j]);
      }
      continue;
    }
    // The outlier product: loaded (beyond kSummedOutliers columns; all loads
    // in flight together, one at a time they cost a memory latency each), or
    // summed here from the staged columns, the tile's sums in registers.
    float extra[C::BN / 2];
#pragma unroll
    for (int j = 0; j < C::BN / 2; ++j) extra[j] = 0.0f;
    if (C::kSparse && outlier_count > kSummedOutliers) {
#pragma unroll
      for (int j = 0; j < C::BN / 2; ++j) {
        const int64_t token = token_of(j), row = (j & 2) ? r1 : r0;
        if (token < m && row < n) extra[j] = __ldg(outliers.product + token * n + row);
      }
    } else if (stage_outliers) {
      // The staged columns summed, kOutlierChunk at a time.
      const float* xs = reinterpret_cast<const float*>(smem_raw + (base - raw_addr) + C::kOutlierXOffset);
      const float* ws = reinterpret_cast<const float*>(smem_raw + (base - raw_addr) + C::kOutlierWOffset);
      for (int32_t o0 = 0; o0 < outlier_count; o0 += kOutlierChunk) {
        const int cols = min(kOutlierChunk, outlier_count - o0);
        if (o0 > 0) {
          consumer_sync<C::kConsumerThreads>();  // the chunk before is read
          stage_outlier_chunk(it.m0, it.n0, o0);
        }
        cp_async_wait<0>();
        consumer_sync<C::kConsumerThreads>();
        for (int o = 0; o < cols; ++o) {
          // Captured codes: the weight as int8_outlier_product's gather makes it.
          const float w0 = capture ? round_f16(outlier_weight(captured[(o0 + o) * C::kRows + row0], s0))
                                   : ws[o * C::kRows + row0];
          const float w1 = capture ? round_f16(outlier_weight(captured[(o0 + o) * C::kRows + row1], s1))
                                   : ws[o * C::kRows + row1];
#pragma unroll
          for (int j = 0; j < C::BN / 2; ++j) {
            if (j & 2) continue;  // accumulators j and j + 2: one token, rows r0 and r1
            const float xv = xs[(token_of(j) - it.m0) * kXStride + o];
            extra[j] = __fadd_rn(extra[j], __fmul_rn(xv, w0));
            extra[j + 2] = __fadd_rn(extra[j + 2], __fmul_rn(xv, w1));
          }
        }
      }
    }
    const bool add_extra = outlier_count > 0;
    if constexpr (sizeof(T) == 2) {
      if (tma_out) {
        wgmma::store_tile_by_tma<T, C::BN, C::kPassTokens>(
            [&](int j) {
              return int8_output(acc[j], stat[2 * (j >> 2) + (j & 1)], (j & 2) ? s1 : s0, (j & 2) ? b1 : b0,
                                 add_extra, extra[j]);
            },
            staging, 2 + wg, out_map, it.n0 + 64 * wg, it.m0, m, n);
        if (lane == 0) ring.release(1);
        continue;
      }
    }
#pragma unroll
    for (int j = 0; j < C::BN / 2; ++j) {
      const int64_t token = token_of(j), row = (j & 2) ? r1 : r0;
      if (token >= m || row >= n) continue;
      out[token * n + row] = from_float<T>(int8_output(acc[j], stat[2 * (j >> 2) + (j & 1)], (j & 2) ? s1 : s0,
                                                       (j & 2) ? b1 : b0, add_extra, extra[j]));
    }
  }
  // The output's TMA stores are written before the block exits.
  if (tma_out && (tid & 127) == 0) wgmma::tma_store_wait_all();
#endif
}

template <typename T, typename B, class C>
void launch(const int8_t* codes, const float* row_stats, int64_t m, const int8_t* w, const float* scb, int64_t n,
            int64_t k, const B* bias, const Int8OutlierTerms& outliers, T* out, int split_k,
            cudaStream_t stream) {
  constexpr auto kernel = gemm_int8_wgmma_kernel<T, B, C>;
  allow_shared_memory<kernel>(int(C::kSmemBytes));
  const wgmma::WorkItems work = wgmma::WorkItems::make((m + C::BN - 1) / C::BN, (n + C::kRows - 1) / C::kRows,
                                                       int((k + kStageK - 1) / kStageK), split_k);
  const int64_t grid = std::min<int64_t>(work.items, multiprocessors());
  const CUtensorMap w_map =
      hopper::tensor_map_2d(w, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, n, k, C::kRows, kStageK, CU_TENSOR_MAP_SWIZZLE_128B);
  const CUtensorMap codes_map =
      hopper::tensor_map_2d(codes, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, m, k, C::BN, kStageK, CU_TENSOR_MAP_SWIZZLE_128B);
  int32_t* sums = nullptr;
  if (split_k > 1) {
    LOWBIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&sums), size_t(m * n) * 4, stream));
    LOWBIT_CUDA_CHECK(cudaMemsetAsync(sums, 0, size_t(m * n) * 4, stream));
  }
  // The output by TMA where its rows are 16-byte aligned (else thread by thread).
  const bool tma_out = sizeof(T) == 2 && !sums && wgmma::output_fits_tma(out, n);
  CUtensorMap out_map{};
  if constexpr (sizeof(T) == 2) {
    if (tma_out) out_map = wgmma::output_tensor_map<T>(out, m, n, C::kPassTokens);
  }
  launch_dependent(kernel, dim3(unsigned(grid)), dim3(C::kThreads), C::kSmemBytes, stream, w_map, codes_map, out_map,
                   row_stats, scb, bias, outliers, out, m, n, work, sums, tma_out);
  LOWBIT_CUDA_CHECK_LAUNCH();
  if (sums) {
    const int64_t blocks = std::min<int64_t>((m * n + 255) / 256, int64_t(multiprocessors()) * 16);
    launch_dependent(int8_split_epilogue_kernel<T, B>, dim3(unsigned(blocks)), dim3(256), 0, stream,
                     static_cast<const int32_t*>(sums), row_stats, scb, bias, outliers, out, m, n);
    LOWBIT_CUDA_CHECK_LAUNCH();
    LOWBIT_CUDA_CHECK(cudaFreeAsync(sums, stream));
  }
}

// Token tile and k split by a cost model fitted on an H200 (64-512 rows of
// 4096 x 11008, 11008 x 4096, 8192 x 28672, thresholds 0 and 6): a stage
// costs ~470 / 700 / 850 cycles at 64 / 96 / 128 tokens (the 64-token tile
// wins wherever it fills the SMs, the 96-token one where the others leave a
// wave partly empty), ~100 more with outlier columns (the epilogue's sums and
// the weight codes taken from the tiles, spread over the stages; it was ~240
// while that configuration had a stage fewer and gathered the weights), an
// item its stages plus ~2 of pipeline fill and epilogue, a wave of items the
// longest item; a split adds zeroing, adding and reading back the int32 sums
// and two launches, ~20000 cycles plus the sums' traffic (refitted with
// the 192-row tiles: 128 x 11008 x 4096 took two slices at 27.1 us where one
// measured 25.2; each launch in a dependent chain costs ~1-2 us). In the 24
// cases of `--int8-sweep` (64-512 rows, thresholds 0 and 6, the three
// shapes) it picks a choice 0.6% slower than the fastest forced one on
// average (worst 4.4%: 8192 x 28672 at 128 rows, threshold 0).
// 192-row tiles (~1.5x a 128-row stage's time for 1.5x its products) serve
// shapes whose 128-row tiles leave part of a wave: 256 x 4096 x 11008 at
// threshold 0 takes 116 items of 192 x 128 in one wave, 25.5 us against
// 28.5 for 258 items of 128 x 96 in two (H200, same call).
struct Int8Choice {
  int tokens, split_k, rows;
};
int forced_int8_tokens = 0, forced_int8_split = 0, forced_int8_rows = 0;

// A stage's cycles by token tile and tile rows (192 rows: three consumer
// warpgroups, 1.5x the tensor work of a 128-row stage). With outlier columns
// 192-row tiles lose more (H200, 256 x 4096 x 11008 at threshold 6: 96-token
// tiles of 128 rows 35.8 us, 64 of 192 rows 37.1, against 27.1 and 28.1 at
// threshold 0).
double int8_stage_cycles(int tokens, int rows, bool sparse) {
  const double base = rows == 128 ? (tokens == 64 ? 470.0 : tokens == 96 ? 700.0 : 850.0)
                                  : (tokens == 64 ? 640.0 : tokens == 96 ? 900.0 : 1150.0);
  return base + (sparse ? (rows == 128 ? 100.0 : tokens == 64 ? 200.0 : 150.0) : 0.0);
}

Int8Choice choose(int64_t m, int64_t n, int64_t k, bool sparse) {
  const int64_t sms = multiprocessors();
  const int k_tiles = int((k + kStageK - 1) / kStageK);
  Int8Choice best{64, 1, 128};
  double best_cost = -1.0;
  for (int rows : {128, 192}) {
    if (forced_int8_rows && rows != forced_int8_rows) continue;
    const int64_t n_tiles = (n + rows - 1) / rows;
    for (int bn : {64, 96, 128}) {
      if (forced_int8_tokens && bn != forced_int8_tokens) continue;
      if (rows == 192 && sparse && bn == 128) continue;  // not offered: see gemm_int8_wgmma
      const double stage = int8_stage_cycles(bn, rows, sparse);
      for (int s = 1; s <= 8; ++s) {
        if (forced_int8_split > 0 && s != forced_int8_split) continue;
        if (forced_int8_split <= 0 && s > 1 && k_tiles / s < 4) break;
        const int64_t items = n_tiles * ((m + bn - 1) / bn) * s;
        const double waves = double((items + sms - 1) / sms);
        double cost = waves * ((k_tiles + s - 1) / s + 2) * stage;
        if (s > 1) cost += 4.0 * double(m) * double(n) * (s + 2) / 1000.0 + 20000.0;
        if (best_cost < 0 || cost < best_cost) {
          best_cost = cost;
          best = {bn, s, rows};
        }
      }
    }
  }
  return best;
}

}  // namespace

bool gemm_int8_wgmma_splits_k(int64_t m, int64_t n, int64_t k, bool sparse) {
  return choose(m, n, k, sparse).split_k > 1;
}

void set_gemm_int8_wgmma_tokens(int tokens, int split_k, int rows) {
  forced_int8_tokens = tokens == 64 || tokens == 96 || tokens == 128 ? tokens : 0;
  forced_int8_split = split_k;
  forced_int8_rows = rows == 128 || rows == 192 ? rows : 0;
}

bool gemm_int8_wgmma_supports(int64_t k, const void* codes, const int8_t* w) {
  return k > 0 && k % 16 == 0 && reinterpret_cast<uintptr_t>(codes) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0 && hopper::device_is_sm90();
}

void gemm_int8_wgmma(DType dtype, const int8_t* codes, const float* row_stats, int64_t m, const int8_t* w,
                     const float* scb, int64_t n, int64_t k, DType bias_dtype, const void* bias,
                     const Int8OutlierTerms& outliers, void* out, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const Int8Choice c = choose(m, n, k, outliers.count != nullptr);
  dispatch_device_float(dtype, "linear_int8", [&](auto tag) {
    using T = decltype(tag);
    dispatch_device_float(bias_dtype, "linear_int8 bias", [&](auto btag) {
      using Bias = decltype(btag);
      const auto run = [&](auto config) {
        launch<T, Bias, decltype(config)>(codes, row_stats, m, w, scb, n, k, static_cast<const Bias*>(bias),
                                          outliers, static_cast<T*>(out), c.split_k, stream);
      };
      const auto by_rows = [&](auto tokens, auto sparse) {
        constexpr int BN = decltype(tokens)::value;
        constexpr bool kSparse = decltype(sparse)::value;
        // Three warpgroups have 128 registers a thread (512 threads): with
        // outlier columns the 128-token tile's epilogue spills there, so it is not offered.
        if constexpr (!(kSparse && BN == 128)) {
          if (c.rows == 192) return run(Config<BN, kSparse, 3>{});
        }
        run(Config<BN, kSparse, 2>{});
      };
      const auto by_tokens = [&](auto sparse) {
        if (c.tokens == 128) by_rows(std::integral_constant<int, 128>{}, sparse);
        else if (c.tokens == 96) by_rows(std::integral_constant<int, 96>{}, sparse);
        else by_rows(std::integral_constant<int, 64>{}, sparse);
      };
      if (outliers.count != nullptr) by_tokens(std::true_type{});
      else by_tokens(std::false_type{});
    });
  });
}

}  // namespace lowbit::ops::cuda
