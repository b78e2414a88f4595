// Blockwise 4-bit (NF4/FP4) x bf16/f16 GEMM on Hopper's warpgroup MMA
// (wgmma, sm_90a) for the batches between decoding and long prompts: the
// packed weight is decoded in registers straight into wgmma's A operand (no
// dequantized copy of the weight is written anywhere), and the activations
// reach shared memory by TMA in the layout wgmma reads.
//
// Block tile (three warpgroups, 384 threads, persistent over work items):
//
//              k ->  stage 0 | stage 1 | ...         (kStageK = 64 weights a stage)
//     128      +---------+---------+---
//     weight   | WG 0: rows 0-63     |  A: codes -> pair table -> x absmax, in registers
//     rows     | WG 1: rows 64-127   |
//              +---------+---------+---
//     BN       | x tile  | x tile  |      B: BN rows x 128 bytes, 128-byte swizzle
//     tokens   +---------+---------+---
//
//   out^T[128 x BN] = W[128 x k] x^T[k x BN]: each consumer warpgroup issues
//   four m64nBNk16 wgmma a stage (its 64 weight rows against all BN tokens,
//   BN = 8 to 256), f32 accumulators in registers (BN / 2 a thread).
//   WG 2 is the producer; setmaxnreg moves its registers to the consumers.
//
// Pipeline (kStages slots, each: x tile, the 128 rows' 32 code bytes, one
// scale a row; a 64-weight stage row lies in one absmax block since the
// blocksize is a multiple of 64 and k % 64 == 0). The producer's lane 0
// issues two TMA loads a stage (x with the 128-byte swizzle, chunk c of row r
// at c ^ (r % 8), rows past m read as zeros; the codes), its 32 lanes copy
// the scales (cp.async, the f32 absmax or the aligned word holding the u8
// code plus its nested scale), all counted on the slot's `full` mbarrier. A
// consumer warp waits on `full`, decodes, issues its wgmma, and after the
// wgmma wait that retires the stage kInFlight back (wait_group 2 with wide
// tiles: two stages of wgmma stay in flight while the next is decoded; 1
// with narrow ones) arrives on that slot's `empty` barrier, which the
// producer waits on before refilling it. A block's items follow one another
// without draining the pipeline.
//
// Narrow tiles (8-32 tokens: decode-sized batches) are bound by the latency
// of each stage's decode rather than by the tensor cores, so two blocks
// share an SM there (104 registers a consumer thread, one stage in flight,
// fewer slots).
//
// A operand: lane (g, t) of warp w holds rows 16w + g and 16w + g + 8, k
// values 2t, 2t + 1, 2t + 8, 2t + 9 of each k16 step, i.e. byte t of words
// 2s and 2s + 1 of the row's 32 code bytes. One byte permute and a
// shift-add give the pair-table address (gemm_4bit_common.cuh, packed 32 KB
// form; narrow tiles: 64-word rows, the byte permute alone), one LDS the
// code pair, one HMUL2 applies the absmax (the weight rounded to the compute
// dtype after the scale, as the other fused kernels do). The kInFlight + 1 A
// register sets rotate (the loop is unrolled by that many so that each has
// its own registers; ptxas serializes the wgmma otherwise).
//
// Work items are (token tile, weight tile, k slice), token tiles fastest;
// the token tile and the k split come from a cost model (`choose`); split
// items write f32 partials that a second kernel sums in slice order, or,
// with 256-token tiles and a block for every item, the slices' blocks sum
// them among themselves (SplitSums below). Shapes whose tiles leave SMs
// idle may run stream-K instead (StreamK below: equal ranges of stages a
// block, the tiles that blocks share summed through partial slots in the
// kernel).
//
// Memory traffic per call: n*k/2 bytes of codes + the scales per token tile
// (the repeats mostly from L2: the tiles of one weight tile run together),
// m*k*2 bytes of x per weight tile (from L2), m*n*2 out (+ 8*split*m*n).
// Shared memory: 33 KB tables (65 KB with narrow tiles) + kStages x (BN*128
// + 4096 + 1024) bytes.
//
// Epilogue (16 tokens and more, n % 8 == 0, no k split): each warpgroup
// writes its 64 rows of the tile by stmatrix into the x tile of the item's
// last slot, held from the producer until then, and one TMA store a pass of
// BN / 2 tokens writes them out (rows past n, tokens past m clipped). Thread
// by thread, a 256-token tile's stores took 5-6 us an item (H200: two bytes
// a store, four 16-byte pieces a warp instruction), ~7% of a 512-row GEMM.
//
// SwiGLU output (kSwiGLU, prompts on [gate | up] weights): the tile's rows
// pair gate and up rows so that a lane's accumulators of rows g and g + 8
// are the gate and up values of one output column (weight_row; the codes
// arrive in that order by a 4-D TMA box), each thread forms the swiglu of
// its own columns and the block stores 64 columns x BN tokens by one TMA
// store, saving the swiglu kernel's pass and half the output.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <utility>

#include "lowbit/core/cuda_check.h"
#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_4bit_common.cuh"
#include "ops/cuda/gemm_4bit_kernels.h"
#include "ops/cuda/hopper_cuda.h"
#include "ops/cuda/wgmma_epilogue_sm90a.cuh"
#include "ops/cuda/wgmma_sm90a.cuh"
#include "ops/cuda/zeroed_stream_buffer_cuda.h"

namespace lowbit::ops::cuda::fused4 {
namespace {

constexpr int kConsumerThreads = 256;         // two warpgroups: decode + wgmma
constexpr int kThreads = kConsumerThreads + 128;  // and one whose first thread issues the TMA loads
constexpr int kProducerRegisters = 24;  // after setmaxnreg: the rest go to the consumers
constexpr int kBlockRows = 128;  // weight rows of a block tile: 64 a warpgroup (wgmma's M)
constexpr int kStageK = 64;      // k of a stage: one 128-byte swizzle row of x
constexpr int kConsumerWarps = kConsumerThreads / 32;

// Narrow tiles (decode-sized batches) hold few accumulators and are bound by
// each stage's chain of waits (codes -> table lookup -> wgmma), not by the
// tensor cores: two blocks share an SM there, so that four consumer
// warpgroups hide one another's latency.
constexpr int blocks_per_sm(int tokens) { return tokens <= 32 ? 2 : 1; }

template <int BN_>
struct Config {
  static constexpr int BN = BN_;  // tokens (batch rows) of a block tile: wgmma's N
  static constexpr int kBlocksPerSM = blocks_per_sm(BN);
  // Registers after setmaxnreg, from the block's launch registers (one
  // block: 2 x 240 + 24 <= 512 a lane of each SM sub-partition; two: the 12
  // warps' 80 each, 4 x 24 + 8 x 104 <= 12 x 80).
  static constexpr int kConsumerRegisters = kBlocksPerSM == 2 ? 104 : 240;
  // Stages whose wgmma stay in flight while the next one is decoded, each
  // with its own A registers: two where registers are plenty; one in 104
  // registers (a second set there makes ptxas serialize the wgmma).
  static constexpr int kInFlight = kBlocksPerSM == 2 ? 1 : 2;
  // The code-pair table's rows (a lane's copy of byte value v at v * row +
  // lane * 4): 64 words (64 KB) where one byte permute forms the address
  // (narrow tiles, issue-bound), else packed in 32 (32 KB: more stages fit).
  static constexpr int kTableRowWords = kBlocksPerSM == 2 ? 64 : 32;
  static constexpr int kTableWords = 256 * kTableRowWords;
  static constexpr int kXBytes = BN * 128;
  static constexpr int kWBytes = kBlockRows * 32;
  // A scale a row: the f32 absmax, or the word holding the u8 code, then
  // (double quantization) its nested f32 scale.
  static constexpr int kScaleBytes = kBlockRows * 4;
  static constexpr int kStageBytes = kXBytes + kWBytes + 1024;  // a multiple of 1024: slots stay swizzle-aligned
  // 64-token tiles keep more of the weight stream in flight; narrow ones
  // take what two blocks with 64 KB tables leave (two blocks hold more).
  static constexpr int kStages = BN == 256 ? 5 : BN == 128 ? 8 : BN == 64 ? 10 : BN == 32 ? 5 : BN == 16 ? 6 : 7;
  // The epilogue stages the output in the x tile of the item's last slot
  // (its wgmma have retired): a warpgroup's 64 rows for BN / 2 tokens at a
  // time, [token][64 rows] in 128-byte rows, TMA's 128-byte swizzle. From 16
  // tokens (stmatrix writes 8 tokens at a time).
  static constexpr bool kTmaEpilogue = BN >= 16;
  static constexpr int kPassTokens = BN / 2;
  static constexpr int kTablesOffset = kStages * kStageBytes;
  static constexpr int kBarriersOffset = kTablesOffset + (kTableWords + 256) * 4;
  static constexpr int kTicketOffset = kBarriersOffset + 2 * kStages * 8;  // a stream-K block's ticket
  static constexpr size_t kSmemBytes = size_t(kTicketOffset) + 16 + 1024;
  static_assert(kStageBytes % 1024 == 0, "stage slots keep the 1024-byte swizzle alignment");
  static_assert(!kTmaEpilogue || (kPassTokens * 128) % 1024 == 0, "staging halves keep the swizzle alignment");
  static_assert(kBlocksPerSM * (kSmemBytes + 1024) <= 228 * 1024, "kBlocksPerSM blocks' shared memory fits an SM");
};

int forced_tokens = 0;
// Token tiles with a SwiGLU output: from the prompts' rows that take it
// (narrower tiles would double the kernels built for little gain).
constexpr int kSwiGLUMinTokens = int(kWgmmaSwiGLUMinRows);

// The weight row of row r of the block tile at n0 (clamped to the weight).
// With a SwiGLU output (Params::swiglu) the tile's output columns are n0 / 2
// .. n0 / 2 + 63, and its rows pair gate and up rows so that one thread
// holds both of a column: in each 16-row warp slice s, rows 0-7 are the gate
// rows of columns n0 / 2 + 8 s .. + 7 and rows 8-15 their up rows (n / 2
// further on), the wgmma accumulators' rows g and g + 8 of a lane.
template <bool kSwiGLU>
__device__ __forceinline__ int64_t weight_row(const Params& p, int64_t n0, int r) {
  if constexpr (!kSwiGLU) return min(n0 + r, p.n - 1);
  const int64_t half = p.n >> 1, j = min((n0 >> 1) + 8 * (r >> 4) + (r & 7), half - 1);
  return (r & 8) ? half + j : j;
}
// Block tiles along the weight rows (SwiGLU: along the output columns, 64 a tile).
int64_t weight_tiles(const Params& p) {
  return p.swiglu ? (p.n / 2 + 63) / 64 : (p.n + kBlockRows - 1) / kBlockRows;
}

// Stream-K (shapes whose tiles leave SMs idle in the last wave): the units
// (tile, stage), tile by tile and stage by stage within a tile, are cut in
// equal ranges, block b taking [b U / G, (b + 1) U / G) of U units over G
// blocks. A block's number b is a ticket taken when it starts (an atomic
// counter), not its index, so that every block it waits for has started.
// It walks its range backwards, segment by segment (each segment's stages
// forwards). A segment that ends before its tile does (at most one a block:
// the last of its range, so computed first) writes its sums to the block's
// partial slot, and a flag, set once the block's next segment is computed
// (or at its end), says they are there. The block holding a tile's last
// stage adds the earlier blocks' partials to its own, in block order (the
// same bits from run to run), and stores the tile. Those earlier blocks
// computed the tile first, this block computes it last, so the wait is
// short, and it waits only for blocks with lower tickets: each of them has
// started and waits only for lower ones, so none waits forever whatever
// else holds the GPU, and the launch is a plain programmatic one. The flags
// and the ticket counters live in the stream's zeroed buffer
// (ZeroedStreamBuffer); each flag is cleared by the block that read it, the
// counters by the last block to finish.
struct StreamK {
  int64_t units = 0;          // 0: work items instead
  float* partials = nullptr;  // [G][BN / 8][256] float4: a block's hand-over sums, thread-interleaved
  uint32_t* flags = nullptr;  // [G + 2], zero on entry and on exit: [b] set once block b's partial is
                              // written; [G]: the next ticket; [G + 1]: blocks finished

  __device__ __forceinline__ int64_t begin(int64_t block) const { return units * block / gridDim.x; }
  // The block whose range holds unit u.
  __device__ __forceinline__ int64_t owner(int64_t u) const {
    int64_t b = u * gridDim.x / units;
    while (b + 1 < gridDim.x && begin(b + 1) <= u) ++b;
    while (b > 0 && begin(b) > u) --b;
    return b;
  }
};

// A k split summed in the kernel (kFusedSplit slices, 256-token tiles, one
// item a block): each slice's block writes its sums of the tile's other
// token quarters, the S blocks of a tile meet at a counter, and the block of
// slice s sums quarter s in slice order (the bits of the summing kernel) and
// stores it. The counter counts S arrivals, then S departures, and the last
// departure zeroes it for the next launch. Block b takes slice b % S of tile
// b / S, so that a tile's S blocks can be one thread-block cluster: resident
// together by the hardware's guarantee, they may wait for one another under
// a plain programmatic launch whatever else holds the GPU. Where the GPU
// cannot hold every tile's cluster at once (32 clusters of 4 on an H200: a
// cluster's SMs share a GPC) the launch is cooperative instead.
struct SplitSums {
  float* partials = nullptr;    // [tiles][S][BN / 8][256] float4, thread-interleaved
  uint32_t* counters = nullptr;  // [tiles], zero on entry and on exit
};

// fn(item) for each (token tile, weight tile, k range) this block computes,
// in order; `ticket` is a stream-K block's number.
template <int BN, bool kStreamK, int kFusedSplit, class Fn>
__device__ __forceinline__ void for_each_item(const wgmma::WorkItems& work, const StreamK& sk, int64_t ticket,
                                              Fn&& fn) {
  if constexpr (kFusedSplit > 1) {  // one item a block, a tile's slices in one cluster
    const int64_t tile = blockIdx.x / kFusedSplit, slice = blockIdx.x % kFusedSplit;
    fn(work.at<BN, kBlockRows>(tile + work.items / kFusedSplit * slice));
    return;
  }
  if constexpr (!kStreamK) {
    for (int64_t item = blockIdx.x; item < work.items; item += gridDim.x) fn(work.at<BN, kBlockRows>(item));
    return;
  }
  const int64_t begin = sk.begin(ticket);
  for (int64_t end = sk.begin(ticket + 1); end > begin;) {  // the range's segments, last first
    const int64_t tile = (end - 1) / work.k_tiles, start = max(begin, tile * work.k_tiles);
    fn(wgmma::WorkItems::Item{(tile % work.m_tiles) * BN, (tile / work.m_tiles) * kBlockRows, 0,
                              int(start - tile * work.k_tiles), int(end - tile * work.k_tiles)});
    end = start;
  }
}

// The consumer warpgroups alone (named barrier 1; the producer warp is busy).
__device__ __forceinline__ void consumer_sync() {
  wgmma::named_barrier_sync(1, kConsumerThreads);
}

template <typename T, class C, bool kNested, bool kStreamK, int kFusedSplit = 0, bool kSwiGLU = false>
__global__ void __launch_bounds__(kThreads, C::kBlocksPerSM)
    gemm_4bit_wgmma_kernel(const __grid_constant__ CUtensorMap x_map, const __grid_constant__ CUtensorMap w_map,
                           const __grid_constant__ CUtensorMap out_map, const Params p, const wgmma::WorkItems work,
                           const StreamK sk, const SplitSums ss, const int64_t scale_blocks, float* partial,
                           const bool tma_out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t raw_addr = shared_address(smem_raw);
  const uint32_t base = (raw_addr + 1023u) & ~1023u;
  uint8_t* smem = smem_raw + (base - raw_addr);
  uint32_t* tables = reinterpret_cast<uint32_t*>(smem + C::kTablesOffset);
  const float* nested_map = reinterpret_cast<const float*>(tables + C::kTableWords);
  const uint32_t full_bar = base + C::kBarriersOffset, empty_bar = full_bar + 8 * C::kStages;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int t = lane & 3;
  // This thread's weight rows in the block tile (A rows g and g + 8 of its warp).
  const int row0 = (warp >> 2) * 64 + (warp & 3) * 16 + (lane >> 2), row1 = row0 + 8;
  const uint32_t table = shared_address(tables), table_lane = table + uint32_t(lane) * 4;
  // Byte t of a word, alone (packed rows: shifted to the row next), or above
  // lane * 4 (64-word rows: the whole offset).
  const uint32_t pick_t = C::kTableRowWords == 64 ? pair_offset_selector(uint32_t(t)) : 0x4440u | uint32_t(t);
  const uint32_t lane4 = uint32_t(lane) * 4;
  // The code tile's 32-byte swizzle puts the first 16 bytes of row r at byte
  // 16 * ((r / 4) % 2) (rows g and g + 4 of a warp then hit different banks);
  // row0 and row1 share r / 4 % 2, bit 2 of g.
  const int code_half = (lane & 16);


  // full: the TMA's expect and the producer lanes' scale copies; empty: the consumer warps.
  if (tid == 0) wgmma::init_stage_barriers(full_bar, empty_bar, C::kStages, 1 + 32, kConsumerWarps);
  build_shared_tables<T, kNested, C::kTableRowWords>(tables, C::kTableWords, p);  // ends with __syncthreads
  // The prologue above may overlap the previous kernel's tail (launched as a
  // programmatic dependent); x, the output and the workspaces wait for it.
  // The grid is persistent, so the next kernel may prepare meanwhile.
  allow_dependent_launch();
  wait_for_previous_grid();
  // A stream-K block's ticket (after the wait: the previous launch on the
  // stream leaves the counter zeroed when it ends).
  int64_t ticket = blockIdx.x;
  if constexpr (kStreamK) {
    uint32_t* const taken = reinterpret_cast<uint32_t*>(smem + C::kTicketOffset);
    if (tid == 0) *taken = atomicAdd(sk.flags + gridDim.x, 1u);
    __syncthreads();
    ticket = *taken;
  }

  // The producer, the last warp: it fills the slots in order, stage after
  // stage of this block's items, each slot once every consumer warp has
  // released the stage that used it before. Lane 0 issues the TMA loads of x
  // and the codes; the 32 lanes copy the 128 rows' scales (cp.async, counted
  // on the same barrier).
  if (warp >= kConsumerWarps) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kProducerRegisters));
    if (warp != kConsumerWarps) return;
    wgmma::StageRing<C::kStages> ring{full_bar, empty_bar};
    for_each_item<C::BN, kStreamK, kFusedSplit>(work, sk, ticket, [&](const wgmma::WorkItems::Item& it) {
      int64_t rowk[kBlockRows / 32];
#pragma unroll
      for (int r = 0; r < kBlockRows / 32; ++r) rowk[r] = weight_row<kSwiGLU>(p, it.n0, lane + 32 * r) * p.k;
      for (int kt = it.kt0; kt < it.kt1; ++kt) {
        ring.wait_empty();
        const uint32_t dst = base + uint32_t(ring.slot * C::kStageBytes), bar = ring.full();
        if (lane == 0) {
          wgmma::barrier_arrive_expect(bar, C::kXBytes + C::kWBytes);
          wgmma::tma_load_2d(dst, &x_map, kt * kStageK, int(it.m0), bar);
          if constexpr (kSwiGLU) {  // [8 column groups][gate, up][8 rows] (swiglu_code_map)
            wgmma::tma_load_4d(dst + C::kXBytes, &w_map, kt * (kStageK / 2), 0, 0, int(it.n0 >> 4), bar);
          } else {
            wgmma::tma_load_2d(dst + C::kXBytes, &w_map, kt * (kStageK / 2), int(it.n0), bar);
          }
        }
#pragma unroll
        for (int r = 0; r < kBlockRows / 32; ++r) {
          const int64_t block = (rowk[r] + int64_t(kt) * kStageK) >> p.block_shift;
          const uint32_t to = dst + uint32_t(C::kXBytes + C::kWBytes + (lane + 32 * r) * 4);
          if constexpr (kNested) {
            // The aligned word holding the code; the last few codes one by
            // one (a word there would read past the array).
            if ((block | 3) < scale_blocks) cp_async4(to, p.qabsmax + (block & ~int64_t(3)), true);
            else store_shared_u32(to, uint32_t(p.qabsmax[block]) << (8 * (block & 3)));
            cp_async4(to + C::kScaleBytes, p.nested_absmax + (block >> p.nested_shift), true);
          } else {
            cp_async4(to, p.absmax + block, true);
          }
        }
        asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(bar) : "memory");
        ring.advance();
      }
    });
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(C::kConsumerRegisters));
  wgmma::StageRing<C::kStages> ring{full_bar, empty_bar};  // this thread's next stage
  // Stream-K: this block's partial is written, its flag not yet set (see the hand-over).
  bool flag_pending = false;
  const auto set_flag = [&] {
    consumer_sync();  // orders every consumer's stores before thread 0's (cumulative) release
    if (tid == 0) asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(sk.flags + ticket), "r"(1u) : "memory");
    flag_pending = false;
  };
  for_each_item<C::BN, kStreamK, kFusedSplit>(work, sk, ticket, [&](const wgmma::WorkItems::Item& it) {
    const int nk = it.kt1 - it.kt0;
    const int64_t rowk0 = weight_row<kSwiGLU>(p, it.n0, row0) * p.k, rowk1 = weight_row<kSwiGLU>(p, it.n0, row1) * p.k;
    // A double-quantized row's offset: its part's (parts are whole rows), once
    // an item; a stage of 256-token tiles picks it itself (two more live
    // registers there spill 32 bytes more).
    constexpr bool kItemOffsets = kNested && C::BN < 256;
    const auto row_offset = [&](int64_t rowk) {
      return kItemOffsets ? nested_offset_at(p, uint32_t((rowk >> p.block_shift) >> p.nested_shift)) : 0.0f;
    };
    const float offset0 = row_offset(rowk0), offset1 = row_offset(rowk1);
    float acc[C::BN / 2];
    // A register sets: kInFlight + 1 (a2, a placeholder with one stage in flight).
    uint32_t a0[4][4], a1[4][4], a2[C::kInFlight == 2 ? 4 : 1][4];

    // Local stage i: wait for its copies, decode its
    // A fragments into `a`, issue its four wgmma; the wait at the end retires
    // stage i - kInFlight (that many stages of wgmma stay in flight while the
    // next ones are decoded), releases its slot and frees `retired`, its
    // registers.
    auto stage_step = [&](int i, uint32_t (&a)[4][4], auto& retired) {
      ring.wait_full();

      const uint8_t* w_tile = smem + ring.slot * C::kStageBytes + C::kXBytes;
      const uint4 r0a = *reinterpret_cast<const uint4*>(w_tile + row0 * 32 + code_half);
      const uint4 r0b = *reinterpret_cast<const uint4*>(w_tile + row0 * 32 + (code_half ^ 16));
      const uint4 r1a = *reinterpret_cast<const uint4*>(w_tile + row1 * 32 + code_half);
      const uint4 r1b = *reinterpret_cast<const uint4*>(w_tile + row1 * 32 + (code_half ^ 16));
      const uint8_t* scales = w_tile + C::kWBytes;
      auto row_scale = [&](int row, int64_t rowk, float offset) {
        float v;
        if constexpr (kNested) {
          const uint32_t word = reinterpret_cast<const uint32_t*>(scales)[row];
          const int64_t block = (rowk + int64_t(it.kt0 + i) * kStageK) >> p.block_shift;
          const uint32_t shift = 8 * uint32_t(block & 3);
          const float nested = reinterpret_cast<const float*>(scales + C::kScaleBytes)[row];
          v = __fadd_rn(__fmul_rn(nested_map[(word >> shift) & 0xffu], nested),
                        kItemOffsets ? offset : nested_offset_at(p, uint32_t(block >> p.nested_shift)));
        } else {
          v = reinterpret_cast<const float*>(scales)[row];
        }
        return pack_pair<T>(v, v);
      };
      const uint32_t s0 = row_scale(row0, rowk0, offset0), s1 = row_scale(row1, rowk1, offset1);
      const uint32_t w0[8] = {r0a.x, r0a.y, r0a.z, r0a.w, r0b.x, r0b.y, r0b.z, r0b.w};
      const uint32_t w1[8] = {r1a.x, r1a.y, r1a.z, r1a.w, r1b.x, r1b.y, r1b.z, r1b.w};
      auto decode = [&](uint32_t word, uint32_t scale_pair) {
        uint32_t pair;
        const uint32_t address = C::kTableRowWords == 64 ? table + __byte_perm(word, lane4, pick_t)
                                                         : table_lane + (__byte_perm(word, 0, pick_t) << 7);
        asm volatile("ld.shared.b32 %0, [%1];" : "=r"(pair) : "r"(address));
        return scale_codes<T>(pair, scale_pair);
      };
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        a[s][0] = decode(w0[2 * s], s0);
        a[s][1] = decode(w1[2 * s], s1);
        a[s][2] = decode(w0[2 * s + 1], s0);
        a[s][3] = decode(w1[2 * s + 1], s1);
      }
      // Everything the wgmma read is computed before the fence: an operand
      // defined between them would serialize them.
      // The k16 steps 32 bytes apart: +2 in the descriptor's 16-byte address
      // field, which cannot carry (shared addresses < 2^18).
      const uint64_t desc0 = wgmma::sw128_desc(base + uint32_t(ring.slot * C::kStageBytes));
      uint64_t desc[4];
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        desc[s] = desc0 + uint64_t(2 * s);
        wgmma::keep(desc[s]);
#pragma unroll
        for (int j = 0; j < 4; ++j) wgmma::keep(a[s][j]);
      }
#pragma unroll
      for (int j = 0; j < C::BN / 2; ++j) wgmma::keep(acc[j]);
      wgmma::fence();
#pragma unroll
      for (int s = 0; s < 4; ++s) wgmma::wgmma_rs<T, C::BN>(acc, a[s], desc[s], i > 0 || s > 0);
      wgmma::commit();
      wgmma::wait<C::kInFlight>();
      if (i >= C::kInFlight && lane == 0) ring.release(C::kInFlight);
#pragma unroll
      for (int s = 0; s < 4; ++s)
#pragma unroll
        for (int j = 0; j < 4; ++j) wgmma::keep(retired[s][j]);
#pragma unroll
      for (int j = 0; j < C::BN / 2; ++j) wgmma::keep(acc[j]);
      ring.advance();
    };

    // Triples (pairs) of stages, the rest peeled: a conditional step inside
    // the loop hides from ptxas which register set is in flight, and it then
    // serializes the wgmma.
    int i = 0;
    if constexpr (C::kInFlight == 2) {
      for (; i + 2 < nk; i += 3) {
        stage_step(i, a0, a1);
        stage_step(i + 1, a1, a2);
        stage_step(i + 2, a2, a0);
      }
      if (i < nk) stage_step(i, a0, a1);
      if (i + 1 < nk) stage_step(i + 1, a1, a2);
    } else {
      for (; i + 1 < nk; i += 2) {
        stage_step(i, a0, a1);
        stage_step(i + 1, a1, a0);
      }
      if (i < nk) stage_step(i, a0, a1);
    }
    wgmma::wait<0>();
#pragma unroll
    for (int j = 0; j < C::BN / 2; ++j) wgmma::keep(acc[j]);
    // The last slot is released after the epilogue, which may stage the
    // output in it; with two stages in flight, the one before it now.
    if (C::kInFlight == 2 && lane == 0 && nk >= 2) ring.release(2);
    const int last_slot = ring.slot == 0 ? C::kStages - 1 : ring.slot - 1;
    const uint32_t last_x = base + uint32_t(last_slot * C::kStageBytes), last_empty = empty_bar + 8 * last_slot;
    const auto release_last_slot = [&] {
      if (lane == 0) wgmma::barrier_arrive(last_empty);
    };

    // The biases of this thread's two weight rows.
    const auto bias_of = [&](int row) {
      return p.bias ? to_float(static_cast<const T*>(p.bias)[weight_row<kSwiGLU>(p, it.n0, row)]) : 0.0f;
    };
    // The tile's output by TMA through the last slot's x tile: SwiGLU of each
    // thread's gate / up pairs, 64 columns for all the tokens at once, or each
    // warpgroup's 64 rows through its half, kPassTokens at a time.
    const auto store_by_tma = [&]<int kBN, int kPassTokens>(auto&& value, int64_t m0) {
      if constexpr (kSwiGLU) {
        wgmma::store_swiglu_tile_by_tma<T, kBN>(value, last_x, 1, out_map, it.n0 >> 1, m0, p.m, p.n >> 1);
      } else {
        const int wg = tid >> 7;
        wgmma::store_tile_by_tma<T, kBN, kPassTokens>(value, last_x + uint32_t(wg * C::kPassTokens * 128), 2 + wg,
                                                       out_map, it.n0 + 64 * wg, m0, p.m, p.n);
      }
    };

    if constexpr (kFusedSplit > 1) {
      constexpr int S = kFusedSplit, kQuads = C::BN / 8, kQuarter = kQuads / S;
      static_assert(C::kTmaEpilogue && kQuads % S == 0, "whole token blocks a slice");
      const int64_t tile = (it.n0 / kBlockRows) * work.m_tiles + it.m0 / C::BN;
      float4* const slots = reinterpret_cast<float4*>(ss.partials) + tile * S * kQuads * kConsumerThreads + tid;
      // This slice's sums of the other slices' quarters.
#pragma unroll
      for (int q = 0; q < kQuads; ++q)
        if (q / kQuarter != it.slice)
          __stcg(slots + (it.slice * kQuads + q) * kConsumerThreads,
                 make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]));
      consumer_sync();  // every consumer's stores before thread 0's (cumulative) release
      if (tid == 0) {
        uint32_t seen = 0;
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(ss.counters + tile) : "memory");
        do {
          asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(ss.counters + tile) : "memory");
        } while (seen < uint32_t(S));
      }
      consumer_sync();
      const float b0 = bias_of(row0), b1 = bias_of(row1);
      // Quarter s: its sums in slice order (a compile-time quarter, so
      // that the accumulators stay in registers), then stored by TMA.
      const auto finish = [&](auto quarter) {
        constexpr int s = decltype(quarter)::value;
        // Four quads at a time: their loads in flight together, the next
        // group's held back (all of them at once spill the accumulators).
#pragma unroll
        for (int q0 = s * kQuarter; q0 < (s + 1) * kQuarter; q0 += 4) {
#pragma unroll
          for (int q = q0; q < q0 + 4; ++q) {
            const auto slice_sums = [&](int from) {
              return from == s ? make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3])
                               : __ldcg(slots + (from * kQuads + q) * kConsumerThreads);
            };
            float4 v = slice_sums(0);
#pragma unroll
            for (int from = 1; from < S; ++from) {
              const float4 w = slice_sums(from);
              v.x += w.x;
              v.y += w.y;
              v.z += w.z;
              v.w += w.w;
            }
            // Quarter s's sums move to the first quarter's registers (the
            // others were handed over): the store below reads them there.
            const int to = q - s * kQuarter;
            acc[4 * to] = v.x;
            acc[4 * to + 1] = v.y;
            acc[4 * to + 2] = v.z;
            acc[4 * to + 3] = v.w;
          }
          asm volatile("" ::: "memory");
        }
        if (tid == 0) {  // a departure; the last one zeroes the counter
          uint32_t before = 0;
          asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], 1;" : "=r"(before) : "l"(ss.counters + tile) : "memory");
          if (before == uint32_t(2 * S - 1)) ss.counters[tile] = 0u;
        }
      };
      [&]<int... kS>(std::integer_sequence<int, kS...>) {
        ((it.slice == kS ? finish(std::integral_constant<int, kS>{}) : void()), ...);
      }(std::make_integer_sequence<int, S>{});
      store_by_tma.template operator()<C::BN / S, C::BN / S>([&](int j) { return acc[j] + ((j & 2) ? b1 : b0); },
                                                             it.m0 + it.slice * (C::BN / S));
      release_last_slot();
      return;
    }
    if (kStreamK && flag_pending) set_flag();
    if (kStreamK && !(it.kt0 == 0 && it.kt1 == work.k_tiles)) {
      // A block's partial: float4 q of thread i at q * kConsumerThreads + i
      // (a warp's stores and loads are 512 contiguous bytes).
      constexpr int kQuads = C::BN / 8;
      constexpr int64_t kSlot = int64_t(kQuads) * kConsumerThreads;
      if (it.kt1 < work.k_tiles) {  // the tile ends in a later block: hand the sums over
        float4* slot = reinterpret_cast<float4*>(sk.partials) + ticket * kSlot + tid;
#pragma unroll
        for (int q = 0; q < kQuads; ++q)
          __stcg(slot + q * kConsumerThreads, make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]));
        // The flag is set after this block's next segment (or at its end),
        // when the stores have drained: a release now waits ~2 us for them
        // with the pipeline stopped. The tile's last block reads it at the
        // end of its range, long after this block's next segment ends.
        flag_pending = true;
        release_last_slot();
        return;
      }
      // The tile's last stages: the earlier blocks' sums added in block
      // order. Each flag is read by this block alone, which clears it for
      // the next launch on the stream (the flags stay zeroed between calls).
      const int64_t tile = (it.n0 / kBlockRows) * work.m_tiles + it.m0 / C::BN;
      for (int64_t b = sk.owner(tile * work.k_tiles); b < ticket; ++b) {
        if (tid == 0) {
          uint32_t ready = 0;
          do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(ready) : "l"(sk.flags + b) : "memory");
          } while (ready == 0);
          sk.flags[b] = 0u;
        }
        consumer_sync();
        const float4* slot = reinterpret_cast<const float4*>(sk.partials) + b * kSlot + tid;
#pragma unroll
        for (int q = 0; q < kQuads; ++q) {
          const float4 v = __ldcg(slot + q * kConsumerThreads);
          acc[4 * q] += v.x;
          acc[4 * q + 1] += v.y;
          acc[4 * q + 2] += v.z;
          acc[4 * q + 3] += v.w;
        }
      }
    }
    // Accumulator j of a thread: weight row (j & 2 ? row1 : row0), token
    // 8 * (j / 4) + 2t + (j & 1).
    const int64_t r0 = it.n0 + row0, r1 = it.n0 + row1;
    if (partial) {
      float* out = partial + int64_t(it.slice) * p.m * p.n;
#pragma unroll
      for (int j = 0; j < C::BN / 2; ++j) {
        const int64_t token = it.m0 + 8 * (j >> 2) + 2 * t + (j & 1);
        const int64_t row = (j & 2) ? r1 : r0;
        if (token < p.m && row < p.n) out[token * p.n + row] = acc[j];
      }
      release_last_slot();
      return;
    }
    const float b0 = bias_of(row0), b1 = bias_of(row1);
    if constexpr (C::kTmaEpilogue) {
      if (tma_out) {
        // Both warpgroups' wgmma have read the slot's x tile; each stages
        // its 64 rows in its half.
        consumer_sync();
        store_by_tma.template operator()<C::BN, C::kPassTokens>([&](int j) { return acc[j] + ((j & 2) ? b1 : b0); },
                                                                it.m0);
        release_last_slot();
        return;
      }
    }
    release_last_slot();
    T* out = static_cast<T*>(p.out);
#pragma unroll
    for (int j = 0; j < C::BN / 2; ++j) {
      const int64_t token = it.m0 + 8 * (j >> 2) + 2 * t + (j & 1);
      const int64_t row = (j & 2) ? r1 : r0;
      if (token < p.m && row < p.n) out[token * p.n + row] = from_float<T>(acc[j] + ((j & 2) ? b1 : b0));
    }
  });
  if constexpr (kStreamK) {
    if (flag_pending) set_flag();
    if (tid == 0) {  // the last block to finish zeroes the ticket counters for the next launch
      uint32_t before = 0;
      asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], 1;" : "=r"(before) : "l"(sk.flags + gridDim.x + 1) : "memory");
      if (before == gridDim.x - 1) {
        sk.flags[gridDim.x] = 0u;
        sk.flags[gridDim.x + 1] = 0u;
      }
    }
  }
  // The output's TMA stores are written before the block exits.
  if (tma_out && (tid & 127) == 0) wgmma::tma_store_wait_all();
#endif
}

// Clusters of kSplit blocks of the 256-token kernel that the GPU holds at
// once (every instantiation has the same threads and shared memory).
template <int kSplit>
int fused_split_clusters() {
  return max_active_clusters<gemm_4bit_wgmma_kernel<__nv_bfloat16, Config<256>, false, false, kSplit, false>>(
      kSplit, kThreads, Config<256>::kSmemBytes);
}
// The output by TMA where its rows are 16-byte aligned (else thread by
// thread, as with 8-token tiles; split k into a summing kernel writes f32
// partials instead).
bool output_by_tma(const Params& p) { return wgmma::output_fits_tma(p.out, p.swiglu ? p.n / 2 : p.n); }

// The codes of a SwiGLU output's tiles ([gate | up] rows, weight_row): a
// stage's box is [8 column groups][gate, up][8 rows][32 bytes], 128 rows
// in the tile's order.
CUtensorMap swiglu_code_map(const Params& p) {
  const int64_t half = p.n / 2, row_bytes = p.k / 2;
  const int64_t dims[4] = {row_bytes, 8, 2, half / 8}, strides[3] = {row_bytes, half * row_bytes, 8 * row_bytes};
  const int box[4] = {kStageK / 2, 8, 2, 8};
  return hopper::tensor_map(p.packed, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, dims, strides, box, CU_TENSOR_MAP_SWIZZLE_32B);
}

// kFusedSplit > 1: that many k slices summed in the kernel (fused_split_fits).
// kSwiGLU: p.swiglu.
template <typename T, class C, bool kNested, bool stream_k, int kFusedSplit, bool kSwiGLU>
void launch(const Params& p, int split_k, cudaStream_t stream) {
  constexpr auto kernel = gemm_4bit_wgmma_kernel<T, C, kNested, stream_k, kFusedSplit, kSwiGLU>;
  if (p.swiglu != kSwiGLU)
    throw_error("wgmma 4-bit GEMM: a SwiGLU output needs token tiles of " + std::to_string(kSwiGLUMinTokens) +
                " or more (forced: " + std::to_string(C::BN) + ") and no k split into partials");
  const int64_t slots = resident_block_slots<kernel>(kThreads, C::kSmemBytes);
  if constexpr (stream_k) split_k = 1;
  if constexpr (kFusedSplit > 1) split_k = kFusedSplit;
  const wgmma::WorkItems work =
      wgmma::WorkItems::make((p.m + C::BN - 1) / C::BN, weight_tiles(p), int(p.k / kStageK), split_k);
  StreamK sk;
  SplitSums ss;
  void* sk_buffer = nullptr;
  ZeroedStreamBuffer::Lease flags;  // held until the kernel is queued
  int64_t grid = std::min(work.items, slots);
  // `bytes` of workspace, and zeroed flags or counters of the stream (while
  // it is captured, of their own after the workspace).
  const auto workspace = [&](size_t bytes, ZeroedBufferUse use, size_t flag_bytes) {
    LOWBIT_CUDA_CHECK(cudaMallocAsync(&sk_buffer, bytes + flag_bytes, stream));
    flags = ZeroedStreamBuffer::get(stream, use, flag_bytes, static_cast<char*>(sk_buffer) + bytes);
    return static_cast<uint32_t*>(flags.data);
  };
  if constexpr (stream_k) {
    sk.units = work.items * work.k_tiles;
    grid = std::min(sk.units, slots);
    sk.flags = workspace(size_t(grid) * (C::BN / 2) * kConsumerThreads * 4, ZeroedBufferUse::kStreamKFlags,
                         size_t(grid + 2) * 4);
    sk.partials = static_cast<float*>(sk_buffer);
  }
  if constexpr (kFusedSplit > 1) {
    if (split_k != kFusedSplit || work.items > slots || !output_by_tma(p))
      throw_error("wgmma 4-bit GEMM: a k split summed in the kernel needs one resident item a block");
    const size_t tiles = size_t(work.m_tiles * work.n_tiles);
    ss.counters = workspace(tiles * kFusedSplit * (C::BN / 2) * kConsumerThreads * 4, ZeroedBufferUse::kSplitCounters,
                            tiles * 4);
    ss.partials = static_cast<float*>(sk_buffer);
  }
  const CUtensorMap x_map =
      hopper::tensor_map_2d(p.x, wgmma::tensor_map_type<T>(), 2, p.m, p.k, C::BN, kStageK, CU_TENSOR_MAP_SWIZZLE_128B);
  const CUtensorMap w_map = kSwiGLU ? swiglu_code_map(p)
                                     : hopper::tensor_map_2d(p.packed, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, p.n, p.k / 2,
                                                             kBlockRows, kStageK / 2, CU_TENSOR_MAP_SWIZZLE_32B);
  float* partial = kFusedSplit > 1 ? nullptr : allocate_k_slices(p, split_k, stream);
  const bool tma_out = C::kTmaEpilogue && !partial && output_by_tma(p);
  if (p.swiglu && !tma_out)
    throw_error("wgmma 4-bit GEMM: a SwiGLU output needs no k split into partials and the output by TMA");
  // A fused split's block stores a slice's share of the tile's tokens.
  constexpr int kBoxTokens = kFusedSplit > 1 ? C::BN / kFusedSplit : kSwiGLU ? C::BN : C::kPassTokens;
  const CUtensorMap out_map =
      tma_out ? wgmma::output_tensor_map<T>(p.out, p.m, p.swiglu ? p.n / 2 : p.n, kBoxTokens) : CUtensorMap{};
  const int64_t scale_blocks = (p.n * p.k + (int64_t(1) << p.block_shift) - 1) >> p.block_shift;
  // A fused split's tiles as clusters where the GPU holds them all at once,
  // else cooperatively (SplitSums); stream-K as a plain programmatic
  // dependent (StreamK: its blocks wait only for ones that started first).
  bool clustered = false;
  if constexpr (kFusedSplit > 1) clustered = work.items / kFusedSplit <= fused_split_clusters<kFusedSplit>();
  if (clustered) {
    launch_cluster_dependent(kernel, dim3(unsigned(grid)), dim3(kThreads), C::kSmemBytes, stream, kFusedSplit, x_map,
                             w_map, out_map, p, work, sk, ss, scale_blocks, partial, tma_out);
  } else if (kFusedSplit > 1) {
    launch_cooperative(kernel, dim3(unsigned(grid)), dim3(kThreads), C::kSmemBytes, stream, x_map, w_map, out_map, p,
                       work, sk, ss, scale_blocks, partial, tma_out);
  } else {
    launch_dependent(kernel, dim3(unsigned(grid)), dim3(kThreads), C::kSmemBytes, stream, x_map, w_map, out_map, p, work,
                     sk, ss, scale_blocks, partial, tma_out);
  }
  LOWBIT_CUDA_CHECK_LAUNCH();
  if (sk_buffer) LOWBIT_CUDA_CHECK(cudaFreeAsync(sk_buffer, stream));
  finish_k_slices<T>(p, partial, split_k, stream);
}

// Stream-K with 64-, 128- and 256-token tiles (narrower ones have no tiles
// to share out: their items are k slices instead).
// Splits of 2 and 4 summed in the kernel with 256-token tiles.
template <typename T, int BN>
void launch_nested(const Params& p, bool nested, int split_k, bool stream_k, int fused_split, cudaStream_t stream) {
  const auto with_output = [&]<bool kNested, bool kStreamK, int kFusedSplit>() {
    if constexpr (BN >= kSwiGLUMinTokens) {
      if (p.swiglu) return launch<T, Config<BN>, kNested, kStreamK, kFusedSplit, true>(p, split_k, stream);
    }
    launch<T, Config<BN>, kNested, kStreamK, kFusedSplit, false>(p, split_k, stream);
  };
  const auto with_absmax = [&]<bool kStreamK, int kFusedSplit>() {
    if (nested) with_output.template operator()<true, kStreamK, kFusedSplit>();
    else with_output.template operator()<false, kStreamK, kFusedSplit>();
  };
  if constexpr (BN == 256) {
    if (fused_split == 2) return with_absmax.template operator()<false, 2>();
    if (fused_split == 4) return with_absmax.template operator()<false, 4>();
  }
  if constexpr (BN == 64 || BN == 128 || BN == 256) {
    if (stream_k) return with_absmax.template operator()<true, 0>();
  }
  with_absmax.template operator()<false, 0>();
}

// Token tile and k split: the least time by a model fitted on an H200. A
// stage costs ~640-685 cycles at 8-32 tokens, ~850 / 1030 / 1550 at 64 / 128 / 256 tokens (more
// tokens a stage, more stages hidden behind the tensor cores), an item its
// stages plus ~4 of pipeline fill and epilogue, a wave of items the longest
// item; a split adds its f32 partials, written and read back (~1.2 KB a
// cycle), and the summing kernel's launch. Matches 11 measured choices within
// 10% (8192 x 28672 at 256 rows: 207 predicted, 197 us measured).
struct Choice {
  int tokens, split_k;
  bool stream_k;
  int fused_split = 0;  // 2 or 4: the split summed in the kernel
};
int forced_stream_k = 0;  // 1: stream-K wherever the token tile allows it (64-256), -1: never
int forced_fused_split = 0;  // 2 or 4: that split summed in the kernel where it fits, -1: never
// Narrow tiles (8-32 tokens) run two blocks an SM: a block's stage takes
// ~800 cycles alone on its SM and ~1050 beside another (H200, 16 rows of
// 8192 x 28672, 4096 x 11008 and 11008 x 4096 at each k split), so that an
// SM's pair does a stage in ~525.
double stage_cycles(int tokens, bool paired) {
  switch (tokens) {
    case 8:
    case 16:
    case 32: return paired ? 1050.0 : 800.0;  // the decode's latency, not the tensor cores
    case 64: return 850.0;
    case 128: return 1030.0;
    default: return 1550.0;
  }
}
// A split of `split` summed in the kernel: one 256-token item a block, all
// resident on `slots` blocks, slices that split k exactly that many ways,
// the output by TMA.
bool fused_split_fits(const Params& p, int split, int64_t slots) {
  const int64_t tiles = ((p.m + 255) / 256) * weight_tiles(p);
  const int k_tiles = int(p.k / kStageK), per_slice = (k_tiles + split - 1) / split;
  return tiles * split <= slots && (k_tiles + per_slice - 1) / per_slice == split && output_by_tma(p);
}

Choice choose(const Params& p, int forced_split) {
  const int sms = multiprocessors();
  const int64_t n_tiles = weight_tiles(p);
  const int k_tiles = int(p.k / kStageK);
  Choice best{64, 1, false};
  double best_cost = -1.0;
  for (int bn : {8, 16, 32, 64, 128, 256}) {
    if (forced_tokens && bn != forced_tokens) continue;
    // A SwiGLU output: kSwiGLUMinTokens or more (the instantiated tiles),
    // no split into partials.
    if (p.swiglu && bn < kSwiGLUMinTokens) continue;
    const double stage = stage_cycles(bn, false);
    const int64_t slots = int64_t(sms) * blocks_per_sm(bn);
    for (int s = 1; s <= 8; ++s) {
      if (forced_split > 0 && s != forced_split) continue;
      if (p.swiglu && s > 1) break;
      if (forced_split <= 0 && s > 1 && k_tiles / s < 4) break;
      const int64_t items = n_tiles * ((p.m + bn - 1) / bn) * s;
      const double waves = double((items + slots - 1) / slots);
      double cost = waves * ((k_tiles + s - 1) / s + 4) * stage_cycles(bn, items > sms);
      if (s > 1) cost += 8.0 * s * double(p.m) * double(p.n) / 1260.0 + 3000.0;
      if ((forced_stream_k <= 0 || bn < 64) && (best_cost < 0 || cost < best_cost)) {
        best_cost = cost;
        best = {bn, s, false};
      }
    }
    // Stream-K: every SM busy to the end; a tile's first block reads the
    // later blocks' partial sums at the end of its range, ~4 stages for each
    // block a tile spans, beside the pipeline fill. Taken where it is 10%
    // faster by this count (15% with 256-token tiles, whose stages measured
    // slower under stream-K). H200 (docs/cuda.md), against the best plain
    // items or k split: 4096 x 11008 at 64 / 128 / 256 / 512 rows 31.5 /
    // 37.6 / 49.8 / 100.8 -> 26.2 / 32.2 / 47.8 / 80.7 us, 4096 x 12288 32.0
    // / 37.8 / 50.8 / 101.2 -> 28.6 / 34.3 / 50.7 / 90.4, 8192 x 28672 at
    // 512 rows 402.6 -> 386.8; slower than a k split where a tile spans five
    // or more blocks (11008 x 4096 at 256 rows: 50.5 against 46.8).
    const int64_t tiles = n_tiles * ((p.m + bn - 1) / bn);
    // A split of 2 or 4 summed in the kernel (256-token tiles, one item a
    // block, all resident, the output by TMA): its blocks exchange the
    // quarters of their partial sums, ~2 stages, instead of a summing
    // kernel's pass over all of them.
    for (int fs : {2, 4}) {
      if (bn != 256 || forced_fused_split < 0 || (forced_fused_split > 0 && fs != forced_fused_split) ||
          forced_stream_k > 0 || (forced_split > 0 && forced_split != fs) || !fused_split_fits(p, fs, sms))
        continue;
      const double cost = double((k_tiles + fs - 1) / fs + 4 + 2) * stage;
      if (best_cost < 0 || cost < best_cost || forced_fused_split > 0) {
        best_cost = cost;
        best = {bn, fs, false, fs};
      }
    }
    if (forced_fused_split > 0) continue;
    if (bn >= 64 && forced_stream_k >= 0 && forced_split <= 0) {
      const int64_t units = tiles * k_tiles, per_block = (units + sms - 1) / sms;
      const int64_t spans = (k_tiles + per_block - 1) / per_block + 1;  // blocks a tile reaches, at most
      const double margin = forced_stream_k > 0 ? 1.0 : bn == 256 ? 1.15 : 1.1;
      const double cost = double(per_block + 4 + 4 * (spans - 1)) * stage * margin;
      if (best_cost < 0 || cost < best_cost || (forced_stream_k > 0 && !best.stream_k)) {
        best_cost = cost;
        best = {bn, 1, true};
      }
    }
  }
  return best;
}

template <typename T>
void launch_choice(const Params& p, bool nested, int split_k, cudaStream_t stream) {
  const Choice c = choose(p, split_k);
  switch (c.tokens) {
    case 8: launch_nested<T, 8>(p, nested, c.split_k, false, 0, stream); return;
    case 16: launch_nested<T, 16>(p, nested, c.split_k, false, 0, stream); return;
    case 32: launch_nested<T, 32>(p, nested, c.split_k, false, 0, stream); return;
    case 64: launch_nested<T, 64>(p, nested, c.split_k, c.stream_k, 0, stream); return;
    case 128: launch_nested<T, 128>(p, nested, c.split_k, c.stream_k, 0, stream); return;
    default: launch_nested<T, 256>(p, nested, c.split_k, c.stream_k, c.fused_split, stream); return;
  }
}

}  // namespace

void set_wgmma_tokens(int tokens) { forced_tokens = tokens; }
void set_wgmma_stream_k(int mode) { forced_stream_k = mode; }
void set_wgmma_fused_split(int mode) { forced_fused_split = mode; }

bool wgmma_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x) {
  return layout_supported(dtype, w, x) && m >= 1 && m < (int64_t(1) << 31) && w.k >= kStageK &&
         w.k % kStageK == 0 && w.blocksize >= kStageK && w.n * w.k / 2 < (int64_t(1) << 40) && hopper::device_is_sm90();
}

bool wgmma_swiglu_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x, const void* out) {
  return wgmma_supported(dtype, w, m, x) && m >= kWgmmaSwiGLUMinRows && w.n % 16 == 0 &&
         wgmma::output_fits_tma(out, w.n / 2);
}

std::string wgmma_choice(const Packed4bit& w, int64_t m, void* out) {
  const Choice c = choose(make_params(w, nullptr, m, nullptr, out), 0);
  return std::to_string(c.tokens) + " tokens" + (c.stream_k ? ", stream-K" : "") +
         (c.fused_split > 1 ? ", split " + std::to_string(c.fused_split) + " summed in the kernel"
          : c.split_k > 1   ? ", split " + std::to_string(c.split_k)
                            : "");
}

void wgmma(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out, int split_k,
           cudaStream_t stream, bool swiglu) {
  Params p = make_params(w, x, m, bias, out);
  p.swiglu = swiglu;
  const bool nested = w.qabsmax != nullptr;
  if (dtype == DType::BF16) launch_choice<__nv_bfloat16>(p, nested, split_k, stream);
  else launch_choice<__half>(p, nested, split_k, stream);
}

}  // namespace lowbit::ops::cuda::fused4
