// Fused blockwise 4-bit (NF4/FP4) x bf16/f16 product for up to 16 rows on
// tensor cores, shaped like the one-row GEMV: the packed weight streams
// through registers once, the activations sit in shared memory, and k is cut
// across the blocks of a thread-block cluster whose partial sums meet through
// distributed shared memory (no second kernel, no global round trip).
//
// Work split:
//
//   cluster c (grid.y) : a contiguous range of 8-row weight tiles
//   block   q (grid.x) : k slice q of that range (cluster rank q); it stages
//                        x[0..16)[its k slice] in shared memory, arranged so
//                        that one 16-byte load is a lane's mma A fragment
//   unit               : J = 4 or 3 tiles (32 or 24 rows, whichever fills
//                        the warps better) over the block's k slice; warp w
//                        takes units w, w + 16, ... in one stream of steps (a
//                        step = one round), the next step's weights loaded
//                        before the current one is computed
//   round              : 128 weights of k (4 lanes x 32 weights)
//
// One m16n8k16 mma: A = x (16 tokens x 16 k, from the staged slice), B = the
// decoded codes of 8 weight rows, C = [16 tokens, 8 rows]; one A fragment
// serves the unit's J tiles. The k order inside a round is permuted as in
// gemm_4bit_cuda.cu's x kernel: lane (g, t) loads 16 bytes (32 weights) of
// row g of each tile at weights [32t, 32t + 32) of the round, step s uses its
// weights 4s .. 4s + 3; the staged x holds the matching values in the order
// the lanes read them. A lane's 32 weights lie in one absmax block; the four
// lanes of a step may not, so the absmax scales the B registers (one HMUL2 a
// code pair, the weight rounded to the compute dtype as bitsandbytes rounds
// it) and the mma sums in f32.
//
// A unit's sums go to the block's shared memory; after a cluster barrier
// each block adds the ks blocks' sums of its share of the rows in rank order
// (deterministic), adds the bias and stores; a second barrier keeps every
// block's sums until they are read.
//
// Launched as a programmatic dependent: weights are loaded and the code table
// built before the previous kernel's results are awaited; only x waits.
// Shared memory: 64 KB table + 1 KB nested map + 4 KB a staged round + the
// sums (16 x rows x 4 bytes); one block (16 warps, 128 registers a thread)
// an SM. docs/cuda.md has the measurements.
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "lowbit/core/cuda_check.h"
#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_4bit_common.cuh"
#include "ops/cuda/gemm_4bit_kernels.h"
#include "ops/cuda/hopper_cuda.h"

namespace lowbit::ops::cuda::fused4 {
namespace {

namespace cg = cooperative_groups;

constexpr int kWarps = 16;
constexpr int kThreads = kWarps * 32;
constexpr int kRound = 128;          // k of one round
constexpr int kRoundBytes = 4096;    // a staged round: 16 tokens x 128 values x 2 bytes
constexpr int kTokens = 16;          // the mma's M
constexpr int kMaxSliceRounds = 24;  // a block's staged rounds (96 KB)
constexpr int kMaxClusterBlocks = 8;  // the portable cluster size
constexpr size_t kSmemLimit = 227 * 1024;

// How rows and k are cut (host-chosen, plan_for).
struct Plan {
  int ks;                 // blocks of a cluster = k slices
  int slice_rounds;       // rounds of a k slice (the last may have fewer)
  int rounds;             // k / kRound
  int64_t cluster_tiles;  // 8-row tiles a cluster: this many, one more for the first extra_tiles clusters
  int extra_tiles;
  int clusters;
  int rows_stride;  // rows of a block's sums (its most tiles x 8)
  size_t smem;
  int cost;  // plan_for's, in quarter rounds
};

template <int J>
struct Stage {
  uint4 w[J];
  ScaleRaw sc[J];
  uint32_t block[J];  // absmax block of each tile's row (the nested decode reads it)
};

template <typename T, bool kNested, int J>
__global__ void __launch_bounds__(kThreads, 1) gemm_4bit_cluster_kernel(const Params p, const Plan plan) {
  extern __shared__ __align__(16) uint32_t smem[];
  float* const nested_map = reinterpret_cast<float*>(smem + kPairTableWords);
  uint4* const stage = reinterpret_cast<uint4*>(nested_map + 256);
  float* const sums = reinterpret_cast<float*>(stage + size_t(plan.slice_rounds) * (kRoundBytes / 16));

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t lane4 = uint32_t(lane) * 4;
  const uint32_t table = shared_address(smem);
  const uint32_t stage_address = shared_address(stage);

  // This block's tiles and rounds.
  const int rank = int(blockIdx.x), cluster = int(blockIdx.y);
  const int64_t tile_lo = int64_t(cluster) * plan.cluster_tiles + min(cluster, plan.extra_tiles);
  const int tiles = int(plan.cluster_tiles) + (cluster < plan.extra_tiles ? 1 : 0);
  const int round0 = rank * plan.slice_rounds;
  const int block_rounds = min(plan.slice_rounds, plan.rounds - round0);
  const int units = (tiles + J - 1) / J;
  const uint32_t n_last = uint32_t(p.n) - 1, k32 = uint32_t(p.k);

  // Step state: unit u, round r of the block's; e[j]: the element this lane
  // loads next in tile j (32-bit: n * k < 2^32), advanced by a round each
  // load; rows past n reread row n - 1.
  int u = warp, r = 0, live = 0;
  uint32_t e[J];
  auto enter_unit = [&] {
    r = 0;
    live = min(J, tiles - u * J);
    const uint32_t row0 = uint32_t(tile_lo + u * J) * 8 + uint32_t(g);
    const uint32_t first = uint32_t(round0) * kRound + uint32_t(t) * 32;
#pragma unroll
    for (int j = 0; j < J; ++j) e[j] = min(row0 + 8 * j, n_last) * k32 + first;
  };
  auto load = [&](Stage<J>& st) {
#pragma unroll
    for (int j = 0; j < J; ++j) {
      st.block[j] = e[j] >> p.block_shift;
      if (j < live) {
        st.w[j] = load_streaming16(p.packed + (e[j] >> 1));
        st.sc[j] = load_scale<kNested>(p, st.block[j]);
      } else {
        st.w[j] = make_uint4(0, 0, 0, 0);
        st.sc[j] = ScaleRaw{0.0f, 0u};
      }
      e[j] += kRound;
    }
  };

  float acc[J][4] = {};
  // All J tiles, live or not (a dead tile's codes are zeros and its sums
  // are dropped): a branch per tile would put the mma under divergence
  // checks (WARPSYNC a step) and double the step's instructions.
  auto compute = [&](int round, const Stage<J>& st) {
    uint32_t scale[J];
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const float absmax = decode_scale<kNested>(p, nested_map, st.sc[j], st.block[j]);
      scale[j] = pack_pair<T>(absmax, absmax);
    }
    const uint32_t base = stage_address + ((uint32_t(round) * 256 + uint32_t(lane)) << 4);
#pragma unroll
    for (int s = 0; s < 8; ++s) {  // mma step s: weights 4s .. 4s + 3 of the lane's segment
      const uint4 xa = load_shared16(base + (s * 32 << 4));
      const uint32_t a[4] = {xa.x, xa.y, xa.z, xa.w};
#pragma unroll
      for (int j = 0; j < J; ++j) {
        const uint32_t wd = word(st.w[j], s >> 1);
        const uint32_t b0 = (s & 1) ? lookup<2, false>(table, wd, lane4) : lookup<0, false>(table, wd, lane4);
        const uint32_t b1 = (s & 1) ? lookup<3, false>(table, wd, lane4) : lookup<1, false>(table, wd, lane4);
        mma_16816<T>(acc[j], a, scale_codes<T>(b0, scale[j]), scale_codes<T>(b1, scale[j]));
      }
    }
  };
  // A unit's sums: tile j's C fragment (tokens g, g + 8; rows 8j + 2t, +1)
  // into the block's [token][row] sums.
  auto flush = [&](int unit, int tiles_live) {
    float* const dst = sums + unit * J * 8 + 2 * t;
#pragma unroll
    for (int j = 0; j < J; ++j) {
      if (j < tiles_live) {
        *reinterpret_cast<float2*>(dst + g * plan.rows_stride + 8 * j) = make_float2(acc[j][0], acc[j][1]);
        *reinterpret_cast<float2*>(dst + (g + 8) * plan.rows_stride + 8 * j) = make_float2(acc[j][2], acc[j][3]);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[j][i] = 0.0f;
    }
  };
  // One step: moves to the next (a new unit after the unit's last round),
  // loads it, then computes the current one; false when none is left.
  auto step = [&](Stage<J>& cur, Stage<J>& next) {
    const int round = r, unit = u, tiles_live = live;  // (enter_unit moves them)
    bool more = true;
    const bool last = ++r == block_rounds;
    if (last) {
      u += kWarps;
      more = u < units;
      if (more) enter_unit();
    }
    if (more) load(next);
    compute(round, cur);
    if (last) flush(unit, tiles_live);
    return more;
  };

  allow_dependent_launch();  // every block is resident (clusters <= what the GPU holds)
  Stage<J> a, b;
  if (u < units) {
    enter_unit();
    load(a);
  }
  // The staging's barrier below also covers the tables.
  build_shared_tables<T, kNested, 64, false>(smem, kPairTableWords, p);
  wait_for_previous_grid();
  // Stage x: chunk (rl * 8 + s) * 32 + lane of the block's round rl is the
  // A fragment of mma step s for that lane (g, t): x rows g and g + 8 at
  // weights 4s .. 4s + 3 of its segment, k = (round0 + rl) * 128 + 32t + 4s,
  // as {x[g][k, k+1], x[g+8][k, k+1], x[g][k+2, k+3], x[g+8][k+2, k+3]}, so
  // that one 16-byte load is the fragment. A thread makes steps 2q and
  // 2q + 1 from two 16-byte loads; tokens past m are zeros (their C rows are
  // never stored), and are not read.
  {
    const uint4* const x = static_cast<const uint4*>(p.x);
    const int64_t row_chunks = p.k / 8;
    const int items = block_rounds * 128;
    auto item_load = [&](int i, uint4 (&v)[2]) {
      const int ln = i & 31, q = (i >> 5) & 3, rl = i >> 7;
      const int64_t chunk = int64_t(round0 + rl) * (kRound / 8) + (ln & 3) * 4 + q;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int token = (ln >> 2) + 8 * h;
        v[h] = token < p.m ? __ldg(x + token * row_chunks + chunk) : make_uint4(0, 0, 0, 0);
      }
    };
    auto item_store = [&](int i, const uint4 (&v)[2]) {
      const int ln = i & 31, q = (i >> 5) & 3, rl = i >> 7;
      uint4* const dst = stage + (rl * 8 + 2 * q) * 32 + ln;
      dst[0] = make_uint4(v[0].x, v[1].x, v[0].y, v[1].y);
      dst[32] = make_uint4(v[0].z, v[1].z, v[0].w, v[1].w);
    };
    // Four items' loads in flight before their stores.
    for (int i0 = threadIdx.x; i0 < items; i0 += 4 * kThreads) {
      uint4 v[4][2];
#pragma unroll
      for (int c = 0; c < 4; ++c)
        if (i0 + c * kThreads < items) item_load(i0 + c * kThreads, v[c]);
#pragma unroll
      for (int c = 0; c < 4; ++c)
        if (i0 + c * kThreads < items) item_store(i0 + c * kThreads, v[c]);
    }
  }
  __syncthreads();  // the tables and the staged x

  if (u < units) {
    while (step(a, b) && step(b, a)) {
    }
  }

  // The block's sums are whole once its warps pass a barrier, the cluster's
  // once every block passes the cluster barrier. Block q then stores tiles
  // [q * share, (q + 1) * share) of the range, each row the ks blocks' sums
  // added in rank order (deterministic) through distributed shared memory.
  const T* bias = static_cast<const T*>(p.bias);
  auto store_row = [&](int token, int64_t out_row, float total) {
    if (bias) total += to_float(bias[out_row]);
    static_cast<T*>(p.out)[int64_t(token) * p.n + out_row] = from_float<T>(total);
  };
  if (plan.ks == 1) {
    __syncthreads();
    const int rows = tiles * 8;
    for (int i = threadIdx.x; i < p.m * rows; i += kThreads) {
      const int token = i / rows, row = i - token * rows;
      if (tile_lo * 8 + row < p.n) store_row(token, tile_lo * 8 + row, sums[token * plan.rows_stride + row]);
    }
    return;
  }
  cg::cluster_group block_cluster = cg::this_cluster();
  block_cluster.sync();
  const int share = (tiles + plan.ks - 1) / plan.ks;
  const int own_lo = min(rank * share, tiles) * 8, own = min((rank + 1) * share, tiles) * 8 - own_lo;
  // A thread a (token, row), its ks loads issued together (a few hundred
  // cycles each).
  for (int i = threadIdx.x; i < p.m * own; i += kThreads) {
    const int token = i / own, row = own_lo + (i - token * own);
    const int64_t out_row = tile_lo * 8 + row;
    if (out_row >= p.n) continue;
    const int offset = token * plan.rows_stride + row;
    float part[kMaxClusterBlocks];
#pragma unroll
    for (int q = 0; q < kMaxClusterBlocks; ++q)
      part[q] = q < plan.ks ? block_cluster.map_shared_rank(sums, q)[offset] : 0.0f;
    float total = part[0];
#pragma unroll
    for (int q = 1; q < kMaxClusterBlocks; ++q)
      if (q < plan.ks) total += part[q];
    store_row(token, out_row, total);
  }
  block_cluster.sync();  // keep this block's sums until every block has read them
}

// The table and nested map, the staged rounds and the block's sums.
size_t smem_for(int slice_rounds, int rows_stride) {
  return (size_t(kPairTableWords) + 256) * 4 + size_t(slice_rounds) * kRoundBytes +
         size_t(kTokens) * rows_stride * 4;
}

// Clusters of `ks` blocks the GPU holds at once (one block an SM; at least
// one, so that a plan always has a grid).
template <auto kKernel>
int max_clusters(int ks) {
  allow_shared_memory<kKernel>(int(kSmemLimit));
  return ks == 1 ? multiprocessors() : std::max(max_active_clusters<kKernel>(ks, kThreads, int(kSmemLimit)), 1);
}

int g_forced_ks = 0;     // set_cluster_k_slices
int g_forced_tiles = 0;  // set_cluster_unit_tiles

// The k slices with the least work a warp (units a warp x rounds a block x
// tiles a unit), plus two rounds for each unit past a warp's first and for
// clusters of 8 (their barriers wait on more blocks); J (tiles a unit) is
// picked the same way by the caller. Fitted on an H200 at 8-16 rows, us by k
// slices 2 / 4 / 8 with 4-tile units: 4096 x 11008 19.2 / 15.6 / 17.0,
// 11008 x 4096 - / 23.5 / 16.4, 8192 x 28672 - / 63.2 / 79.3, 4096 x 22016
// 26.3 / 28.0 / 29.7; 3-tile units where they fill the warps better (16
// rows, 4 / 3 tiles: 4096 x 11008 16.0 / 15.5, 11008 x 4096 17.2 / 15.8,
// 4096 x 4096 9.3 / 8.7, 8192 x 28672 64.5 / 67.4). (Cutting a block's
// rounds among more warps measured slower everywhere: the sums of the extra
// slices cost more than the idle warps.)
template <auto kKernel, int J>
Plan plan_for(const Params& p, int forced_ks) {
  Plan best{};
  best.cost = 1 << 30;
  const int rounds = int(p.k / kRound);
  const int64_t tiles = (p.n + 7) / 8;
  for (int ks = 1; ks <= kMaxClusterBlocks; ks *= 2) {
    if (forced_ks > 0 && ks != forced_ks) continue;
    const int slice_rounds = (rounds + ks - 1) / ks;
    if (slice_rounds > kMaxSliceRounds || (ks - 1) * slice_rounds >= rounds) continue;
    const int clusters = int(std::min<int64_t>(tiles, max_clusters<kKernel>(ks)));
    const int64_t cluster_tiles = tiles / clusters;
    const int extra = int(tiles % clusters);
    const int most_tiles = int(cluster_tiles) + (extra > 0 ? 1 : 0);
    const size_t smem = smem_for(slice_rounds, most_tiles * 8);
    if (smem > kSmemLimit) continue;
    const int passes = ((most_tiles + J - 1) / J + kWarps - 1) / kWarps;
    const int cost = passes * slice_rounds * J + 8 * (passes - 1) + (ks == kMaxClusterBlocks ? 8 : 0);
    if (cost < best.cost)
      best = Plan{ks, slice_rounds, rounds, cluster_tiles, extra, clusters, most_tiles * 8, smem, cost};
  }
  return best;
}

template <typename T, bool kNested, int J>
void launch(const Params& p, const Plan& plan, cudaStream_t stream) {
  constexpr auto kernel = gemm_4bit_cluster_kernel<T, kNested, J>;
  if (plan.ks == 0)
    throw_error("gemm_4bit_cluster: no cut of k = " + std::to_string(p.k) + " and n = " + std::to_string(p.n) +
                " fits shared memory (forced k slices " + std::to_string(g_forced_ks) + ")");
  launch_cluster_dependent(kernel, dim3(unsigned(plan.ks), unsigned(plan.clusters)), dim3(kThreads), plan.smem, stream,
                           plan.ks, p, plan);
}

// Units of 4 or 3 tiles, whichever plan costs less (3 on a tie: fewer
// registers, which double-quantized weights use).
template <typename T, bool kNested>
void launch_tiles(const Params& p, cudaStream_t stream) {
  const Plan four = plan_for<gemm_4bit_cluster_kernel<T, kNested, 4>, 4>(p, g_forced_ks);
  const Plan three = plan_for<gemm_4bit_cluster_kernel<T, kNested, 3>, 3>(p, g_forced_ks);
  const bool use_four = g_forced_tiles == 4 || (g_forced_tiles != 3 && four.cost < three.cost);
  if (use_four) launch<T, kNested, 4>(p, four, stream);
  else launch<T, kNested, 3>(p, three, stream);
}

}  // namespace

void set_cluster_unit_tiles(int tiles) { g_forced_tiles = tiles == 3 || tiles == 4 ? tiles : 0; }

bool cluster_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x) {
  if (!layout_supported(dtype, w, x) || m < 1 || m > kClusterMaxBatch || w.k % kRound != 0 || w.blocksize < 32 ||
      uint64_t(w.n) * uint64_t(w.k) >= (uint64_t(1) << 32))
    return false;
  if (!hopper::device_is_sm90()) return false;
  // A cut whose staged x (at most kMaxSliceRounds rounds a block) and sums fit
  // shared memory.
  return plan_for<gemm_4bit_cluster_kernel<__nv_bfloat16, false, 4>, 4>(make_params(w, x, m, nullptr, nullptr),
                                                                        g_forced_ks)
             .ks != 0;
}

void set_cluster_k_slices(int ks) { g_forced_ks = ks == 1 || ks == 2 || ks == 4 || ks == 8 ? ks : 0; }

void cluster(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out,
             cudaStream_t stream) {
  const Params p = make_params(w, x, m, bias, out);
  const bool nested = w.qabsmax != nullptr;
  if (dtype == DType::BF16)
    nested ? launch_tiles<__nv_bfloat16, true>(p, stream) : launch_tiles<__nv_bfloat16, false>(p, stream);
  else nested ? launch_tiles<__half, true>(p, stream) : launch_tiles<__half, false>(p, stream);
}

}  // namespace lowbit::ops::cuda::fused4
