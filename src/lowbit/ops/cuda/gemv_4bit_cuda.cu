// Blockwise 4-bit (NF4/FP4) GEMV on CUDA cores for batches of 1 to 4:
// out[m, n] = x[m, k] W^T, W read from memory once as packed codes.
//
// Work split (persistent grid; a block = kWarps warps, kConfigs below):
//
//   rows of W in groups of R (a warp carries the R rows of a group together,
//   so one activation load serves R rows)
//   k in chunks of 1024 weights (32 segments of 32 weights, one 16-byte load
//   each: lane L takes segment L of every chunk, so a warp reads 512
//   contiguous bytes of each row)
//
//   block b: floor(G / grid) groups, one more for the first G % grid blocks
//            (G = ceil(n / R))
//   unit   : one group x one of S k slices (slice = consecutive chunks)
//   warp w : units w, w + kWarps, ... of its block, in one stream of steps
//            (a step = one chunk of one unit); the next step's weights and
//            scales are loaded before the current one is computed
//
// A unit's lanes sum their products, meet in a halving shuffle reduction and
// leave R x m partial sums in shared memory; the block adds the S slices of
// each row in a fixed order and writes the output. S is picked on the host so
// that the units of a block fill its warps evenly (the 7B shapes have only
// ~10 segments a lane in all, so a spare unit is a 10% tail).
//
// Decode and math, per code byte (two weights): one PRMT forms the address of
// the pair in a 256-entry table of bf16x2/f16x2 code pairs (one copy per lane,
// conflict-free; gemm_4bit_common.cuh), one LDS reads it, one HFMA2 per batch
// row multiplies it with the activation pair (the 16-byte x load is already
// in pair form) and adds it to a packed partial sum. Every kChainWords words
// (8 products a half) the packed partials are widened to f32 and added with
// the block's absmax (two FFMA): the half-precision sums stay short (their
// rounding adds ~0.25 ulp of the largest |y|; f16 partials overflow only for
// |x| > 8K), the long sums are f32. Measured 2.9 instructions a weight at
// m = 1 (ncu), against 4.4 for f32 products (unpack + 2 FFMA a pair).
// Element offsets are 32-bit (n * k < 2^32), advanced by a chunk a load.
//
// One row (m = 1) with 4-row groups is staged: each block makes the row in
// shared memory first (copied, or an RMSNorm / SwiGLU of its source: the fused
// inputs of a decoding step, stage_input) and reads it from there; the output
// may be added to `out` or taken as gate/up pairs through SwiGLU (GemvInput).
// Every variant of a call cuts k in the plain product's slices, so a row's sum
// is the same bits whatever the launch shape.
//
// Memory traffic per call: n*k/2 bytes of codes and n*k/blocksize scales (f32,
// or u8 + the nested f32), streamed past L1; m*k*2 bytes of activations, L1/L2
// resident (or staged). Shared memory: 64 KB table + 1 KB nested map + the
// unit sums (kMaxUnits x R x m floats) + the staged row (36 KB). docs/cuda.md
// has the measurements.
#include <algorithm>

#include "lowbit/core/cuda_check.h"
#include "ops/cuda/activation_cuda.cuh"
#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_4bit_common.cuh"
#include "ops/cuda/gemm_4bit_kernels.h"
#include "ops/cuda/reduce_cuda.h"
#include "ops/cuda/rms_norm_cuda.h"

namespace lowbit::ops::cuda::fused4 {
namespace {

constexpr int kSeg = 32;          // weights of one 16-byte load
constexpr int kChunkSegs = 32;    // segments of a chunk: one a lane
constexpr int kChainWords = 2;    // 32-bit code words per packed partial sum
constexpr int kMaxUnits = 256;    // units of a block in one round (shared sums)

// Launch shape: warps a block, rows a warp, blocks an SM (registers). Each
// warp keeps its next step (R x 512 bytes) in flight while computing one.
struct Config {
  int warps, rows, min_blocks;
};
constexpr Config kConfigs[] = {
    {12, 4, 2},  // 0: m = 1, 80 registers (a few bytes spilled), 24 warps an SM
    {10, 4, 2},  // 1: m = 1, 96 registers, no spills, 20 warps an SM
    {20, 4, 1},  // 2: m = 1, the same in one block an SM (one table, one staged row)
    {16, 4, 1},  // 3: m = 2, 128 registers, 16 warps an SM
    {16, 2, 1},  // 4: m = 3, 4
};
// m >= 2: R x m packed sums and m activation words need the registers.
template <int M> constexpr int kBatchConfig = M <= 2 ? 3 : 4;

constexpr int pad_pow2(int v) { return v <= 1 ? 1 : v <= 2 ? 2 : v <= 4 ? 4 : v <= 8 ? 8 : v <= 16 ? 16 : 32; }
constexpr int log2_const(int v) { return v <= 1 ? 0 : 1 + log2_const(v / 2); }

// a * b + c on packed pairs, rounded once per half.
template <typename T> __device__ __forceinline__ uint32_t fma2(uint32_t a, uint32_t b, uint32_t c);
template <> __device__ __forceinline__ uint32_t fma2<__nv_bfloat16>(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
template <> __device__ __forceinline__ uint32_t fma2<__half>(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

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

// How the rows and k are cut (host-chosen, see pick_split), with what the
// kernel would otherwise divide for in every warp before its first load (the
// prologue is on each call's path: 24 warps an SM share its issue slots).
struct Split {
  int64_t groups;  // row groups of R rows
  int slices;      // k slices a group
  int chunks;      // chunks of k (the last may be partial)
  int64_t groups_per_round;
  double steps;  // the cost model's steps of a warp (pick_split)
  // Block b owns groups [b q + min(b, r), + q + (b < r)): q, r = groups
  // divided by the grid.
  int64_t block_groups;
  int extra_groups;
  // A warp's units advance by the block's warps: group_step groups and
  // slice_step slices. Warp w starts at unit (w / S, w % S); slice s is
  // chunks [s chunks / S, (s + 1) chunks / S).
  int group_step, slice_step;
  uint32_t slice_magic;  // a / S = umulhi(a, slice_magic) for a < 2^28 (S > 1)
};

// a / sp.slices without a division (a < 2^28: see Split::slice_magic).
__device__ __forceinline__ uint32_t divide_by_slices(uint32_t a, const Split& sp) {
  return sp.slices == 1 ? a : __umulhi(a, sp.slice_magic);
}

template <int R>
struct Stage {
  uint4 w[R];
  ScaleRaw sc[R];
  uint32_t block[R];  // absmax block of each row (read by the nested decode only)
};

// The kernels' view of GemvInput (the norm's thread count comes from the host).
struct InputParams {
  int kind;
  const void* norm_weight;
  float eps;
  int norm_threads;  // rms_norm_layout(k).threads: the norm kernel's sum order
  int output;        // GemvInput::Output
};

// The one-block shape (config 2) has the shared memory for rows twice as long.
constexpr int64_t staged_max_k(int config) { return config == 2 ? 2 * kGemvStagedMaxK : kGemvStagedMaxK; }
// A staged row is k values in 16-byte chunks (8 values), chunk c stored at
// c ^ ((c >> 3) & 7): lane L reads chunk 4 (32 j + L) + i in one instruction
// (i = 0..3), and the XOR sends the 8 lanes of each quarter warp to 8
// different bank groups (unswizzled, two lanes in four share one).
__device__ __forceinline__ uint32_t staged_chunk(uint32_t c) { return c ^ ((c >> 3) & 7u); }

// Calls fn(c, load(c)) for the 16-byte chunks c < chunks a thread owns (c =
// threadIdx.x + j * blockDim.x), kBatch loads in flight at a time: a row
// costs one or two memory round trips, not one a chunk.
template <int kBatch, typename Load, typename Fn>
__device__ __forceinline__ void for_chunks(int chunks, Load load, Fn fn) {
  for (int c0 = threadIdx.x; c0 < chunks; c0 += kBatch * blockDim.x) {
    decltype(load(0)) v[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b)
      if (c0 + b * int(blockDim.x) < chunks) v[b] = load(c0 + b * int(blockDim.x));
#pragma unroll
    for (int b = 0; b < kBatch; ++b)
      if (c0 + b * int(blockDim.x) < chunks) fn(c0 + b * int(blockDim.x), v[b]);
  }
}

struct ChunkPair {
  uint4 a, b;
};

// Makes the activation row in shared memory from p.x as `in` says, with the
// roundings of the ops it replaces: RMSNorm copies the row in, sums the
// squares in the order of the norm kernel for this length (virtual threads of
// rms_norm_layout, each warp's butterfly, then the warps' sums) and scales it
// in place; SwiGLU computes silu as ops::swiglu. `scratch`: 32 floats. Ends
// with a barrier.
template <typename T, int kWarps>
__device__ void stage_input(const Params& p, const InputParams& in, uint4* stage, float* scratch) {
  const int chunks = int(p.k / 8);
  const uint4* src = static_cast<const uint4*>(p.x);
  const auto load_src = [&](int c) { return __ldg(src + c); };
  if (in.kind == GemvInput::kRmsNorm) {
    for_chunks<4>(chunks, load_src, [&](int c, uint4 v) { stage[staged_chunk(c)] = v; });
    __syncthreads();
    const T* row = reinterpret_cast<const T*>(stage);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, vt = in.norm_threads, dim = int(p.k);
    for (int vw = warp; vw < vt / 32; vw += kWarps) {
      float sum = 0.0f;
#pragma unroll 4
      for (int i = vw * 32 + lane; i < dim; i += vt) {
        const float v = to_float(row[staged_chunk(uint32_t(i) >> 3) * 8 + (i & 7)]);
        sum = fmaf(v, v, sum);
      }
      sum = warp_sum(sum);
      if (lane == 0) scratch[vw] = sum;
    }
    __syncthreads();
    const float inv = rms_inverse(warp_sum(lane < vt / 32 ? scratch[lane] : 0.0f), dim, in.eps);
    const uint4* weight = static_cast<const uint4*>(in.norm_weight);
    for_chunks<4>(chunks, [&](int c) { return __ldg(weight + c); }, [&](int c, uint4 wv) {
      uint4& slot = stage[staged_chunk(c)];
      const uint4 hv = slot;
      uint32_t o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 x = unpack_pair<T>(word(hv, j)), w = unpack_pair<T>(word(wv, j));
        o[j] = pack_pair<T>(__fmul_rn(w.x, round_to<T>(__fmul_rn(x.x, inv))),
                            __fmul_rn(w.y, round_to<T>(__fmul_rn(x.y, inv))));
      }
      slot = make_uint4(o[0], o[1], o[2], o[3]);
    });
  } else if (in.kind == GemvInput::kSwiGLU) {
    const auto load_pair = [&](int c) { return ChunkPair{__ldg(src + c), __ldg(src + chunks + c)}; };
    for_chunks<4>(chunks, load_pair, [&](int c, const ChunkPair& v) {
      uint32_t o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 g = unpack_pair<T>(word(v.a, j)), u = unpack_pair<T>(word(v.b, j));
        o[j] = pack_pair<T>(swiglu_of<T>(g.x, u.x), swiglu_of<T>(g.y, u.y));
      }
      stage[staged_chunk(c)] = make_uint4(o[0], o[1], o[2], o[3]);
    });
  } else {
    for_chunks<4>(chunks, load_src, [&](int c, uint4 v) { stage[staged_chunk(c)] = v; });
  }
  __syncthreads();
}

// kStaged (m = 1): the activation row is made in shared memory first
// (stage_input) and read from there; otherwise it is read through L1.
template <typename T, int M, bool kNested, int C, bool kStaged>
__global__ void __launch_bounds__(kConfigs[C].warps * 32, kConfigs[C].min_blocks)
    gemv_4bit_kernel(const Params p, const Split sp, const InputParams in) {
  constexpr int kWarps = kConfigs[C].warps, R = kConfigs[C].rows;
  constexpr int MP = pad_pow2(M);  // sums a row carries, padded for the reduction
  constexpr int N = R * MP;
  static_assert(!kStaged || M == 1, "a staged row is one activation row");
  extern __shared__ __align__(16) uint32_t smem[];
  const int S = sp.slices;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t lane4 = uint32_t(lane) * 4;
  const uint32_t table = shared_address(smem);
  float* const nested_map = reinterpret_cast<float*>(smem + kPairTableWords);
  float* const red = nested_map + 256;  // [unit][N] partial sums of a round
  uint4* const stage = reinterpret_cast<uint4*>(red + kMaxUnits * N);
  const uint32_t stage_address = shared_address(stage);
  const int64_t segs = p.k / kSeg;
  const int64_t x_row = p.k / 8;  // 16-byte words of an activation row
  const int group_step = sp.group_step, slice_step = sp.slice_step;
  const T* x = static_cast<const T*>(p.x);

  const int block = int(blockIdx.x);
  const int64_t g_lo = int64_t(block) * sp.block_groups + min(block, sp.extra_groups);
  const int64_t g_hi = g_lo + sp.block_groups + (block < sp.extra_groups ? 1 : 0);
  int64_t g_round = g_lo;
  int groups = 0;  // row groups of this round

  // Step state: unit (group g, slice sl), chunk c of [c, c_end); e[r]: the
  // element this lane loads next in row r (32-bit: n * k < 2^32), advanced
  // by a chunk each load; rows past n reread row n - 1.
  int g = 0, sl = 0, c = 0, c_end = 0;
  uint32_t e[R];
  // kSwiGLUOut: a group's first R / 2 rows are gate rows j.., the others the
  // up rows n / 2 + j.. (their sums meet in one thread at the end).
  // (Read from the parameters where used: values kept live across the step
  // loop cost registers that the loads in flight need.)
  auto enter_unit = [&] {
    c = int(divide_by_slices(uint32_t(sl * sp.chunks), sp));
    c_end = int(divide_by_slices(uint32_t((sl + 1) * sp.chunks), sp));
    const int64_t group = g_round + g;
    const uint32_t first = uint32_t(c) * (kChunkSegs * kSeg) + uint32_t(lane) * kSeg;
    if (in.output == GemvInput::kSwiGLUOut) {
      const int64_t half = p.n >> 1;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t j = min(group * (R / 2) + r % (R / 2), half - 1);
        e[r] = uint32_t((r < R / 2 ? j : half + j) * p.k) + first;
      }
    } else {
#pragma unroll
      for (int r = 0; r < R; ++r)  // 32-bit: n * k < 2^32
        e[r] = min(uint32_t(group) * R + r, uint32_t(p.n) - 1) * uint32_t(p.k) + first;
    }
  };
  auto load = [&](Stage<R>& st) {
    const bool inside = int64_t(c) * kChunkSegs + lane < segs;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      st.block[r] = e[r] >> p.block_shift;
      if (inside) {
        st.w[r] = load_streaming16(p.packed + (e[r] >> 1));
        st.sc[r] = load_scale<kNested>(p, st.block[r]);
      } else {
        st.w[r] = make_uint4(0, 0, 0, 0);
        st.sc[r] = ScaleRaw{0.0f, 0u};
      }
      e[r] += kChunkSegs * kSeg;
    }
  };
  float acc[N] = {};
  auto compute = [&](int chunk, const Stage<R>& st) {
    const int64_t s = int64_t(chunk) * kChunkSegs + lane;
    if (s >= segs) return;
    float scale[R];
#pragma unroll
    for (int r = 0; r < R; ++r) scale[r] = decode_scale<kNested>(p, nested_map, st.sc[r], st.block[r]);
    const uint4* xs = reinterpret_cast<const uint4*>(x + s * kSeg);
    const uint32_t s32 = uint32_t(s), swizzle = (s32 >> 1) & 7u;
#pragma unroll
    for (int i0 = 0; i0 < 4; i0 += kChainWords) {
      uint32_t h[R][M] = {};
#pragma unroll
      for (int i = i0; i < i0 + kChainWords; ++i) {  // word i: weights 8i .. 8i + 7 of the segment
        uint4 xv[M];
        if constexpr (kStaged) {
          xv[0] = load_shared16(stage_address + (((s32 * 4 + uint32_t(i)) ^ swizzle) << 4));
        } else {
#pragma unroll
          for (int m = 0; m < M; ++m) xv[m] = __ldg(xs + m * x_row + i);
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const uint32_t wd = word(st.w[r], i);
          const uint32_t pairs[4] = {lookup<0>(table, wd, lane4), lookup<1>(table, wd, lane4),
                                     lookup<2>(table, wd, lane4), lookup<3>(table, wd, lane4)};
#pragma unroll
          for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int m = 0; m < M; ++m) h[r][m] = fma2<T>(pairs[j], word(xv[m], j), h[r][m]);
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) {
          const float2 f = unpack_pair<T>(h[r][m]);
          acc[r * MP + m] = fmaf(f.x, scale[r], acc[r * MP + m]);
          acc[r * MP + m] = fmaf(f.y, scale[r], acc[r * MP + m]);
        }
    }
  };
  auto flush = [&](int unit) {
    const float total = warp_sum_spread<N>(acc, lane);
    if ((lane & (32 / N - 1)) == 0) red[unit * N + (lane >> (5 - log2_const(N)))] = total;
#pragma unroll
    for (int i = 0; i < N; ++i) acc[i] = 0.0f;
  };
  // One step: moves to the next (a new unit after the last chunk), loads
  // it, then computes the current one; false when the warp has no step left.
  auto step = [&](Stage<R>& cur, Stage<R>& next) {
    const int chunk = c, unit = g * S + sl;
    bool more = true;
    const bool last = ++c == c_end;
    if (last) {
      g += group_step;
      sl += slice_step;
      if (sl >= S) {
        sl -= S;
        ++g;
      }
      more = g < groups;
      if (more) enter_unit();
    }
    if (more) load(next);
    compute(chunk, cur);
    if (last) flush(unit);
    return more;
  };
  // A round's first step: its unit, and the weights of its first chunk.
  Stage<R> a, b;
  auto start_round = [&] {
    groups = int(g_hi - g_round < sp.groups_per_round ? g_hi - g_round : sp.groups_per_round);
    g = int(divide_by_slices(uint32_t(warp), sp));
    sl = warp - g * S;
    if (g < groups) {
      enter_unit();
      load(a);
    }
  };
  // Launched as a programmatic dependent (it may start while the previous
  // kernel finishes): the first weights are loaded and the tables built from
  // the weight's constant code maps meanwhile; activations are read, and the
  // output written, only after that kernel's results are visible. The grid
  // is persistent, so the next kernel may launch at once (cuda_common.h).
  allow_dependent_launch();
  if (g_round < g_hi) start_round();
  // The staged row's barrier (stage_input) also covers the tables.
  build_shared_tables<T, kNested, 64, !kStaged>(smem, kPairTableWords, p);
  wait_for_previous_grid();
  if constexpr (kStaged) stage_input<T, kWarps>(p, in, stage, red);

  while (g_round < g_hi) {
    if (g < groups) {
      while (step(a, b) && step(b, a)) {
      }
    }
    __syncthreads();
    const bool paired = in.output == GemvInput::kSwiGLUOut;
    if (paired) {
      // SwiGLU of the gate and up sums, each rounded to T first (ops::swiglu
      // of the stored projection).
      const T* bias = static_cast<const T*>(p.bias);
      for (int i = threadIdx.x; i < groups * (R / 2); i += kWarps * 32) {
        const int gi = i / (R / 2), r = i % (R / 2);
        float gate = 0.0f, up = 0.0f;
        for (int k = 0; k < S; ++k) {
          gate += red[(gi * S + k) * N + r];
          up += red[(gi * S + k) * N + R / 2 + r];
        }
        const int64_t j = (g_round + gi) * (R / 2) + r, half = p.n >> 1;
        if (j < half) {
          if (bias) {
            gate += to_float(bias[j]);
            up += to_float(bias[half + j]);
          }
          static_cast<T*>(p.out)[j] = from_float<T>(swiglu_of<T>(round_to<T>(gate), round_to<T>(up)));
        }
      }
    }
    const int sums = paired ? 0 : groups * N;
    for (int i = threadIdx.x; i < sums; i += kWarps * 32) {
      const int gi = i / N, id = i % N;
      float sum = 0.0f;
      for (int k = 0; k < S; ++k) sum += red[(gi * S + k) * N + id];
      const int64_t row = (g_round + gi) * R + id / MP;
      if (id % MP < M && row < p.n) {
        if (p.bias) sum += to_float(static_cast<const T*>(p.bias)[row]);
        T* out = static_cast<T*>(p.out) + int64_t(id % MP) * p.n + row;
        *out = in.output == GemvInput::kAdd ? from_float<T>(to_float(*out) + round_to<T>(sum)) : from_float<T>(sum);
      }
    }
    __syncthreads();  // `red` is rewritten by the next round
    g_round += sp.groups_per_round;
    if (g_round < g_hi) start_round();
  }
}

// Slices a group so that a block's units fill its warps evenly: the time of a
// block is about ceil(units / warps) units of ceil(chunks / S) chunks each,
// plus a reduction per unit (~1/4 chunk).
Split pick_split(int64_t groups, int64_t k, int warps, int64_t grid, int forced_slices) {
  Split sp{};
  sp.groups = groups;
  sp.chunks = int((k / kSeg + kChunkSegs - 1) / kChunkSegs);
  const int64_t per_block = (sp.groups + grid - 1) / grid;
  const auto cost = [&](int s) {
    const int64_t units = std::min<int64_t>(per_block, kMaxUnits / s) * s;
    const int64_t rounds = (per_block * s + units - 1) / units;
    return double(rounds) * double((units + warps - 1) / warps) * (double((sp.chunks + s - 1) / s) + 0.25);
  };
  int best = 1;
  for (int s = 2; s <= std::min(sp.chunks, 16); ++s)
    if (cost(s) < cost(best) - 1e-9) best = s;
  sp.slices = forced_slices > 0 ? std::min(forced_slices, std::min(sp.chunks, kMaxUnits)) : best;
  sp.groups_per_round = kMaxUnits / sp.slices;
  sp.steps = cost(sp.slices);
  sp.block_groups = sp.groups / grid;
  sp.extra_groups = int(sp.groups % grid);
  sp.group_step = warps / sp.slices;
  sp.slice_step = warps % sp.slices;
  // ceil(2^32 / S) = 2^32 / S + e (e < 1): umulhi(a, it) = floor(a / S + a e / 2^32), exact while
  // a e / 2^32 < 1 / S, so for a < 2^32 / S (2^28 at S = 16; the kernel's a <= S chunks < 2^27).
  sp.slice_magic = sp.slices > 1 ? uint32_t(((uint64_t(1) << 32) + sp.slices - 1) / sp.slices) : 0u;
  return sp;
}

template <int M, int C, bool kStaged>
constexpr size_t smem_bytes() {
  return (size_t(kPairTableWords) + 256) * 4 + size_t(kMaxUnits) * kConfigs[C].rows * pad_pow2(M) * 4 +
         (kStaged ? size_t(staged_max_k(C)) * 2 : 0);
}

template <typename T, int M, bool kNested, int C, bool kStaged>
int64_t block_slots() {
  return resident_block_slots<gemv_4bit_kernel<T, M, kNested, C, kStaged>>(kConfigs[C].warps * 32,
                                                                           smem_bytes<M, C, kStaged>());
}

// Launched as a programmatic dependent of the previous kernel on `stream`:
// its blocks may be scheduled while that kernel drains (the kernel waits for
// its results before reading anything); a CUDA graph keeps the edge.
// slices: the k slices a row is cut in (see plain_slices).
template <typename T, int M, bool kNested, int C, bool kStaged>
void launch(const Params& p, const InputParams& in, int slices, cudaStream_t stream) {
  constexpr int kThreads = kConfigs[C].warps * 32;
  const int64_t slots = block_slots<T, M, kNested, C, kStaged>();
  constexpr int R = kConfigs[C].rows;
  // kSwiGLUOut: gate and up rows in pairs of half groups.
  const int64_t groups =
      in.output == GemvInput::kSwiGLUOut ? (p.n / 2 + R / 2 - 1) / (R / 2) : (p.n + R - 1) / R;
  const int64_t grid = std::min(groups, slots);
  Split sp = pick_split(groups, p.k, kConfigs[C].warps, grid, slices);
  launch_dependent(gemv_4bit_kernel<T, M, kNested, C, kStaged>, dim3(unsigned(grid)), dim3(kThreads),
                   smem_bytes<M, C, kStaged>(), stream, p, sp, in);
}

// The launch shape of a call. One row (M = 1): 4-row groups, the row made
// in shared memory where it fits (`stage`; a fused input must be), in blocks
// of 12 warps (config 0) or 10 (config 1), whichever the cost model's steps
// a warp times the warps an SM (their share of the SM) say is faster, and
// the 10 warps as one 20-warp block an SM (config 2) where each of those
// blocks gets at least kOneBlockMinGroups row groups: half the blocks, so
// half the tables and staged rows (the model does not see that). The
// 12-warp blocks spill (80 registers): about 5% a step, 25% with
// double-quantized scales. H200, one row, plain / fused RMSNorm input us,
// 12 x 2 against 10 x 2 (against 20 x 1) warps x blocks: 4096 x 11008
// 10.0 / 11.6 against 11.1 / 13.0 (11.5 / 12.7), 4096 x 4096 5.5 against
// 5.2 (6.0), 4096 x 14336 13.5 / 15.4 against 12.2 / 14.2, 8192 x 28672
// 39.8 / 42.2 against 39.2 / 42.1 (37.0-37.3 / 38.5-38.8); 8-row groups of
// 8-warp blocks, what large n took before, 44.2 there.
int g_launch_shape = 0;  // set_gemv_launch_shape
constexpr int64_t kOneBlockMinGroups = 40;

// The plain product's split (R-row groups, no SwiGLU pairing) in config C.
template <typename T, int M, bool kNested, int C, bool kStaged>
Split plain_split(const Params& p, int split_k) {
  const int64_t groups = (p.n + kConfigs[C].rows - 1) / kConfigs[C].rows;
  const int64_t grid = std::min(groups, block_slots<T, M, kNested, C, kStaged>());
  return pick_split(groups, p.k, kConfigs[C].warps, grid, split_k);
}

template <typename T, int M, bool kNested>
int launch_shape(const Params& p, bool stage, int split_k) {
  if (!stage) return 0;
  // Rows past kGemvStagedMaxK: staged only by the one-block shape (H200,
  // 28672 x 8192: 37.7-38.0 against 42.5-42.7 us read through L1 by 12 x 2;
  // 27648 x 5120 25.0 against 27.8).
  if (p.k > kGemvStagedMaxK) return g_launch_shape == 0 || g_launch_shape == 2 ? 2 : 0;
  if (g_launch_shape != 0) return g_launch_shape < 0 ? 0 : g_launch_shape;
  const double time0 = plain_split<T, M, kNested, 0, true>(p, split_k).steps * kConfigs[0].warps;
  const double time1 = plain_split<T, M, kNested, 1, true>(p, split_k).steps * kConfigs[1].warps;
  if (!(time1 < time0 * (kNested ? 1.25 : 1.05))) return 0;
  const int64_t groups = (p.n + kConfigs[2].rows - 1) / kConfigs[2].rows;
  return groups >= kOneBlockMinGroups * block_slots<T, M, kNested, 2, true>() ? 2 : 1;
}

// The k slices of the plain product (a row's order of summation) in launch
// shape `shape`: every variant of a call uses them, so that the fused ones
// give its bits whatever their launch shape (the rows and warps of a block do
// not change a row's sum).
template <typename T, int M, bool kNested>
int plain_slices(const Params& p, int shape, bool stage, int split_k) {
  switch (shape) {
    case 1: return plain_split<T, M, kNested, 1, true>(p, split_k).slices;
    case 2: return plain_split<T, M, kNested, 2, true>(p, split_k).slices;
    default:
      return stage && p.k <= kGemvStagedMaxK ? plain_split<T, M, kNested, 0, true>(p, split_k).slices
                                             : plain_split<T, M, kNested, 0, false>(p, split_k).slices;
  }
}

template <typename T, int M, bool kNested>
void launch_config(const Params& p, const InputParams& in, bool stage, int split_k, cudaStream_t stream) {
  if constexpr (M == 1) {
    const int shape = launch_shape<T, M, kNested>(p, stage, split_k);
    const int slices = plain_slices<T, M, kNested>(p, shape, stage, split_k);
    switch (shape) {
      case 1: launch<T, M, kNested, 1, true>(p, in, slices, stream); break;
      case 2: launch<T, M, kNested, 2, true>(p, in, slices, stream); break;
      default:
        if ((stage && p.k <= kGemvStagedMaxK) || in.kind != GemvInput::kPlain)
          launch<T, M, kNested, 0, true>(p, in, slices, stream);
        else launch<T, M, kNested, 0, false>(p, in, slices, stream);
    }
  } else {
    launch<T, M, kNested, kBatchConfig<M>, false>(p, in, split_k, stream);
  }
}

template <typename T>
void launch_m(const Params& p, const InputParams& in, bool nested, bool stage, int split_k, cudaStream_t stream) {
  const auto with = [&]<int M>() {
    if (nested) launch_config<T, M, true>(p, in, stage, split_k, stream);
    else launch_config<T, M, false>(p, in, stage, split_k, stream);
  };
  switch (p.m) {
    case 1: with.template operator()<1>(); break;
    case 2: with.template operator()<2>(); break;
    case 3: with.template operator()<3>(); break;
    default: with.template operator()<4>(); break;
  }
}

// Plain one-row GEMVs with 4-row groups stage the row: 10.4 against 11.9 us
// on 4096 x 11008, level on 11008 x 4096 (H200).
bool g_staging = true;

void run(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, const InputParams& in,
         bool stage, void* out, int split_k, cudaStream_t stream) {
  const Params p = make_params(w, x, m, bias, out);
  const bool nested = w.qabsmax != nullptr;
  if (split_k < 0 || split_k > 16) split_k = 0;
  if (dtype == DType::BF16) launch_m<__nv_bfloat16>(p, in, nested, stage, split_k, stream);
  else launch_m<__half>(p, in, nested, stage, split_k, stream);
}

}  // namespace

bool gemv_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x) {
  return layout_supported(dtype, w, x) && m >= 1 && m <= kGemvMaxBatch && w.k % kSeg == 0 && w.blocksize >= kSeg &&
         uint64_t(w.n) * uint64_t(w.k) < (uint64_t(1) << 32);  // 32-bit element offsets
}

void gemv(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out, int split_k,
          cudaStream_t stream) {
  const bool staged = g_staging && m == 1 && w.k <= staged_max_k(2);
  run(dtype, x, m, w, bias, InputParams{GemvInput::kPlain, nullptr, 0.0f, 0, GemvInput::kStore}, staged, out, split_k,
      stream);
}

bool gemv_fused_supported(DType dtype, const Packed4bit& w, const void* src) {
  return gemv_supported(dtype, w, 1, src) && w.k <= kGemvStagedMaxK;
}

void gemv_fused(DType dtype, const void* src, const Packed4bit& w, const void* bias, const GemvInput& in, void* out,
                cudaStream_t stream) {
  if (in.output == GemvInput::kSwiGLUOut && w.n % 2 != 0)
    throw_error("gemv_fused: a SwiGLU output needs gate and up rows, got " + std::to_string(w.n) + " rows");
  const InputParams params{in.kind, in.norm_weight, in.eps, rms_norm_layout(w.k).threads, in.output};
  run(dtype, src, 1, w, bias, params, g_staging, out, 0, stream);
}

void set_gemv_staging(bool on) { g_staging = on; }

void set_gemv_launch_shape(int shape) { g_launch_shape = shape < 0 ? -1 : shape > 2 ? 0 : shape; }

}  // namespace lowbit::ops::cuda::fused4
