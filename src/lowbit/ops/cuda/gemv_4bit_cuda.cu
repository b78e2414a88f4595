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
//   block b: groups [b G / grid, (b + 1) G / grid)      (G = ceil(n / R))
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
// Memory traffic per call: n*k/2 bytes of codes and n*k/blocksize scales (f32,
// or u8 + the nested f32), streamed past L1; m*k*2 bytes of activations, L1/L2
// resident. Shared memory: 64 KB table + 1 KB nested map + the unit sums
// (kMaxUnits x R x m floats). docs/cuda.md has the measurements.
#include <algorithm>

#include "lowbit/core/cuda_check.h"
#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_4bit_common.cuh"
#include "ops/cuda/gemm_4bit_kernels.h"

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
    {12, 4, 2},  // 0: m = 1, 85 registers, 24 warps an SM
    {8, 8, 2},   // 1: m = 1, large n: 128 registers, 16 warps an SM, half the x loads a weight
    {16, 4, 1},  // 2: m = 2, 128 registers, 16 warps an SM
    {16, 2, 1},  // 3: m = 3, 4
};
// m >= 2: R x m packed sums and m activation words need the registers.
template <int M> constexpr int kBatchConfig = M <= 2 ? 2 : 3;
// Row groups a block of the m = 1 kernels needs before 8-row groups pay: with
// fewer, the last group of a block is a long tail (measured on an H200:
// 8192 x 28672 2-3% faster with 8 rows, 4096 x 11008 5-10% slower).
constexpr int64_t kWideRowsMinGroups = 10;

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

template <typename T> __device__ __forceinline__ float2 unpack(uint32_t v);
template <> __device__ __forceinline__ float2 unpack<__nv_bfloat16>(uint32_t v) {
  return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
}
template <> __device__ __forceinline__ float2 unpack<__half>(uint32_t v) {
  return __half22float2(*reinterpret_cast<const __half2*>(&v));
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

// How the rows and k are cut (host-chosen, see pick_split).
struct Split {
  int64_t groups;  // row groups of R rows
  int slices;      // k slices a group
  int chunks;      // chunks of k (the last may be partial)
  int64_t groups_per_round;
};

template <int R>
struct Stage {
  uint4 w[R];
  ScaleRaw sc[R];
  uint32_t block[R];  // absmax block of each row (read by the nested decode only)
};

template <typename T, int M, bool kNested, int C>
__global__ void __launch_bounds__(kConfigs[C].warps * 32, kConfigs[C].min_blocks)
    gemv_4bit_kernel(const Params p, const Split sp) {
  constexpr int kWarps = kConfigs[C].warps, R = kConfigs[C].rows;
  constexpr int MP = pad_pow2(M);  // sums a row carries, padded for the reduction
  constexpr int N = R * MP;
  extern __shared__ __align__(16) uint32_t smem[];
  __shared__ int slice_first[17];  // first chunk of each slice, then the end
  const int S = sp.slices;
  if (threadIdx.x <= unsigned(S)) slice_first[threadIdx.x] = int(threadIdx.x) * sp.chunks / S;
  float* nested_map = build_shared_tables<T, kNested>(smem, kPairTableWords, p);  // ends with a barrier
  // Launched as a programmatic dependent (it may start while the previous
  // kernel finishes): the tables come from the weight's constant code maps and
  // are built meanwhile; activations are read, and the output written, only
  // after that kernel's results are visible.
  wait_for_previous_grid();
  float* red = nested_map + 256;  // [unit][N] partial sums of a round

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t lane4 = uint32_t(lane) * 4;
  const uint32_t table = shared_address(smem);
  const int64_t segs = p.k / kSeg;
  const int64_t x_row = p.k / 8;  // 16-byte words of an activation row
  // A warp's units advance by kWarps: that many slices, carried into groups.
  const int group_step = kWarps / S, slice_step = kWarps % S;
  const T* x = static_cast<const T*>(p.x);

  const int64_t g_lo = int64_t(blockIdx.x) * sp.groups / gridDim.x;
  const int64_t g_hi = int64_t(blockIdx.x + 1) * sp.groups / gridDim.x;
  for (int64_t g_round = g_lo; g_round < g_hi; g_round += sp.groups_per_round) {
    const int groups = int(g_hi - g_round < sp.groups_per_round ? g_hi - g_round : sp.groups_per_round);

    // Step state: unit (group g, slice sl), chunk c of [c, c_end); e[r]: the
    // element this lane loads next in row r (32-bit: n * k < 2^32), advanced
    // by a chunk each load; rows past n reread row n - 1.
    int g = warp / S, sl = warp % S, c = 0, c_end = 0;
    uint32_t e[R];
    auto enter_unit = [&] {
      c = slice_first[sl];
      c_end = slice_first[sl + 1];
      const int64_t row0 = (g_round + g) * R;
      const uint32_t first = uint32_t(c) * (kChunkSegs * kSeg) + uint32_t(lane) * kSeg;
#pragma unroll
      for (int r = 0; r < R; ++r) e[r] = uint32_t(min(row0 + r, p.n - 1) * p.k) + first;
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
#pragma unroll
      for (int i0 = 0; i0 < 4; i0 += kChainWords) {
        uint32_t h[R][M] = {};
#pragma unroll
        for (int i = i0; i < i0 + kChainWords; ++i) {  // word i: weights 8i .. 8i + 7 of the segment
          uint4 xv[M];
#pragma unroll
          for (int m = 0; m < M; ++m) xv[m] = __ldg(xs + m * x_row + i);
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
            const float2 f = unpack<T>(h[r][m]);
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
    if (g < groups) {
      enter_unit();
      Stage<R> a, b;
      load(a);
      while (step(a, b) && step(b, a)) {
      }
    }
    __syncthreads();
    const int sums = groups * N;
    for (int i = threadIdx.x; i < sums; i += kWarps * 32) {
      const int gi = i / N, id = i % N;
      float sum = 0.0f;
      for (int k = 0; k < S; ++k) sum += red[(gi * S + k) * N + id];
      const int64_t row = (g_round + gi) * R + id / MP;
      if (id % MP < M && row < p.n) {
        if (p.bias) sum += to_float(static_cast<const T*>(p.bias)[row]);
        static_cast<T*>(p.out)[int64_t(id % MP) * p.n + row] = from_float<T>(sum);
      }
    }
    __syncthreads();  // `red` is rewritten by the next round
  }
}

// Slices a group so that a block's units fill its warps evenly: the time of a
// block is about ceil(units / warps) units of ceil(chunks / S) chunks each,
// plus a reduction per unit (~1/4 chunk).
Split pick_split(int64_t n, int64_t k, int rows, int warps, int64_t grid, int forced_slices) {
  Split sp{};
  sp.groups = (n + rows - 1) / rows;
  sp.chunks = int((k / kSeg + kChunkSegs - 1) / kChunkSegs);
  const int64_t per_block = (sp.groups + grid - 1) / grid;
  int best = 1;
  double best_cost = 1e30;
  for (int s = 1; s <= std::min(sp.chunks, 16); ++s) {
    const int64_t units = std::min<int64_t>(per_block, kMaxUnits / s) * s;
    const int64_t rounds = (per_block * s + units - 1) / units;
    const double cost = double(rounds) * double((units + warps - 1) / warps) *
                        (double((sp.chunks + s - 1) / s) + 0.25);
    if (cost < best_cost - 1e-9) {
      best_cost = cost;
      best = s;
    }
  }
  sp.slices = forced_slices > 0 ? std::min(forced_slices, std::min(sp.chunks, kMaxUnits)) : best;
  sp.groups_per_round = kMaxUnits / sp.slices;
  return sp;
}

template <int M, int C>
constexpr size_t smem_bytes() {
  return (size_t(kPairTableWords) + 256) * 4 + size_t(kMaxUnits) * kConfigs[C].rows * pad_pow2(M) * 4;
}

template <typename T, int M, bool kNested, int C>
int64_t block_slots() {
  return resident_block_slots<gemv_4bit_kernel<T, M, kNested, C>>(kConfigs[C].warps * 32, smem_bytes<M, C>());
}

// Launched as a programmatic dependent of the previous kernel on `stream`:
// its blocks may be scheduled while that kernel drains (the kernel waits for
// its results before reading anything); a CUDA graph keeps the edge.
template <typename T, int M, bool kNested, int C>
void launch(const Params& p, int split_k, cudaStream_t stream) {
  constexpr int kThreads = kConfigs[C].warps * 32;
  const int64_t slots = block_slots<T, M, kNested, C>();
  const int64_t groups = (p.n + kConfigs[C].rows - 1) / kConfigs[C].rows;
  const int64_t grid = std::min(groups, slots);
  const Split sp = pick_split(p.n, p.k, kConfigs[C].rows, kConfigs[C].warps, grid, split_k);
  launch_dependent(gemv_4bit_kernel<T, M, kNested, C>, dim3(unsigned(grid)), dim3(kThreads), smem_bytes<M, C>(),
                   stream, p, sp);
}

template <typename T, int M, bool kNested>
void launch_config(const Params& p, int split_k, cudaStream_t stream) {
  if constexpr (M == 1) {
    // Double quantization keeps 4 rows: 8 rows of u8 codes and block indices
    // in flight would spill.
    const int64_t groups = (p.n + kConfigs[1].rows - 1) / kConfigs[1].rows;
    if constexpr (!kNested) {
      if (groups >= kWideRowsMinGroups * block_slots<T, M, kNested, 1>()) {
        launch<T, M, kNested, 1>(p, split_k, stream);
        return;
      }
    }
    launch<T, M, kNested, 0>(p, split_k, stream);
  } else {
    launch<T, M, kNested, kBatchConfig<M>>(p, split_k, stream);
  }
}

template <typename T, int M>
void launch_nested(const Params& p, bool nested, int split_k, cudaStream_t stream) {
  if (nested) launch_config<T, M, true>(p, split_k, stream);
  else launch_config<T, M, false>(p, split_k, stream);
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
  return layout_supported(dtype, w, x) && m >= 1 && m <= kGemvMaxBatch && w.k % kSeg == 0 && w.blocksize >= kSeg &&
         uint64_t(w.n) * uint64_t(w.k) < (uint64_t(1) << 32);  // 32-bit element offsets
}

void gemv(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out, int split_k,
          cudaStream_t stream) {
  const Params p = make_params(w, x, m, bias, out);
  const bool nested = w.qabsmax != nullptr;
  if (split_k < 0 || split_k > 16) split_k = 0;
  if (dtype == DType::BF16) launch_m<__nv_bfloat16>(p, nested, split_k, stream);
  else launch_m<__half>(p, nested, split_k, stream);
}

}  // namespace lowbit::ops::cuda::fused4
