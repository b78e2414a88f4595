// Causal grouped-query attention over the KV cache, on the GPU. Scores,
// softmax and the weighted sum run in f32 (as the CPU body and SDPA kernels);
// the output is rounded once to the dtype.
//
// Prompts (tokens > 1) in bf16/f16 with head_dim 64, 80, 96 or 128 run on
// the tensor cores (flash_attention_mma_kernel below). Other prompts (f32,
// other head dims): a flash-attention style kernel on CUDA cores. One block = 64
// queries of one head, 256 threads as a 16 x 16 grid; thread (ty, tx) owns
// query rows 4ty..4ty+3 and key columns tx, tx+16, tx+32, tx+48 of each 64-key
// tile, and output columns tx, tx+16, ... of its rows. Per key tile: K is
// staged in shared memory (f32, row stride d+1 when d is even, so that the 16
// lanes reading 16 different key rows hit 16 banks), S = Q K^T * scale,
// the online softmax (running max and sum per row, the max reduced over the 16
// lanes of a row with shuffles), P to shared memory, then V overwrites K and
// O += P V. Tiles entirely outside the causal (and sliding-window) band are
// skipped. Shared memory: (2 * 64 * ld + 64 * 65) * 4 bytes (83 KB at d = 128).
// Scalar f32 FMAs: on the 7B shape it took half of a 2048-token prefill
// (H200), hence the tensor-core kernel.
//
// Decoding (one token): split-KV. Block (head, split) covers a contiguous
// range of keys; its 4 warps take every fourth key, lanes split head_dim (so
// each key row is read coalesced), each warp keeps an online softmax, the
// warps merge in shared memory. With more than one split, each writes its
// (max, sum, unnormalized output) to a scratch buffer and a second kernel
// merges the splits. Splits are chosen so that each warp has about two keys.
// A captured step reads its position from the device: its splits are chosen
// for the whole cache and each block sizes its chunk from the position, so
// the work stays spread out as the sequence grows.
#include <algorithm>
#include <string>
#include <type_traits>

#include "lowbit/core/tensor.h"
#include "ops/cuda/mma_cuda.cuh"
#include "ops/cuda/ops_cuda.h"
#include "ops/cuda/reduce_cuda.h"

namespace lowbit::ops::cuda {
namespace {

struct AttentionParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  int tokens, heads, kv_heads, d, group;
  int64_t past, window;
  float scale;
  const int32_t* past_on_device;  // decoding: replaces past when set (a replayed CUDA graph)
  // rope_attention_decode: the stacked projection [(heads + 2 kv_heads) * d]
  // and the rope tables; q and key `past` come rotated from it, not from q/k.
  const void* qkv = nullptr;
  const float* cos_table = nullptr;
  const float* sin_table = nullptr;
  // A batch of sequences (each `tokens` queries, same positions): sequence
  // b's q and out rows follow sequence b - 1's, its cache rows start
  // cache_stride elements after. Prompts: block z = sequence; decoding: block
  // x = sequence * heads + head.
  int batch = 1;
  int64_t cache_stride = 0;
};

// A prompt kernel's operands for its block's sequence (block z).
template <typename T>
struct SequenceOperands {
  const T* q;
  const T* k;
  const T* v;
  T* out;
};
template <typename T>
__device__ __forceinline__ SequenceOperands<T> sequence_operands(const AttentionParams& p) {
  const int64_t s = blockIdx.z, rows = int64_t(p.tokens) * p.heads * p.d, cache = s * p.cache_stride;
  return {static_cast<const T*>(p.q) + s * rows, static_cast<const T*>(p.k) + cache,
          static_cast<const T*>(p.v) + cache, static_cast<T*>(p.out) + s * rows};
}

// Element col of a head of the stacked projection rotated for position pos,
// rounded to T: what rope_qkv stores (the same products and roundings).
template <typename T>
__device__ __forceinline__ float rotated(const T* head, int col, int d, int64_t pos, const float* cos_table,
                                         const float* sin_table) {
  const int half = d / 2, i = col < half ? col : col - half;
  const float c = round_to<T>(cos_table[pos * half + i]), s = round_to<T>(sin_table[pos * half + i]);
  const float a = to_float(head[i]), b = to_float(head[i + half]);
  return col < half ? round_to<T>(__fadd_rn(round_to<T>(__fmul_rn(a, c)), round_to<T>(__fmul_rn(-b, s))))
                    : round_to<T>(__fadd_rn(round_to<T>(__fmul_rn(b, c)), round_to<T>(__fmul_rn(a, s))));
}

constexpr int kTile = 64;          // queries and keys per tile
constexpr int kFlashThreads = 256;  // 16 x 16
constexpr int kPStride = kTile + 1;

__host__ __device__ inline int row_stride(int d) { return d % 2 == 0 ? d + 1 : d; }

// The first key a query at position pos sees: 0, or the sliding window's start.
__device__ __forceinline__ int64_t first_visible_key(const AttentionParams& p, int64_t pos) {
  return p.window > 0 ? max(int64_t(0), pos - p.window + 1) : 0;
}
// Whether the query at position pos sees key (causal, sliding window).
__device__ __forceinline__ bool sees(const AttentionParams& p, int64_t pos, int64_t key) {
  return key <= pos && (p.window <= 0 || key > pos - p.window);
}

// A prompt kernel's block: up to kTile queries of head h from q0, and the keys
// [k_begin, k_end) that some of them see.
struct PromptTile {
  int h, kvh, q0, rows;
  int64_t k_begin, k_end;
};
__device__ __forceinline__ PromptTile prompt_tile(const AttentionParams& p) {
  PromptTile b;
  b.h = blockIdx.y;
  b.kvh = b.h / p.group;
  b.q0 = blockIdx.x * kTile;
  b.rows = min(kTile, p.tokens - b.q0);
  b.k_begin = first_visible_key(p, p.past + b.q0);
  b.k_end = p.past + b.q0 + b.rows;
  return b;
}

template <typename T, int kMaxD>
__global__ void __launch_bounds__(kFlashThreads) flash_attention_kernel(const AttentionParams p) {
  constexpr int kCols = kMaxD / 16;
  extern __shared__ float smem[];
  const int d = p.d, ld = row_stride(d);
  float* qs = smem;
  float* kvs = qs + kTile * ld;
  float* ps = kvs + kTile * ld;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const auto [h, kvh, q0, rows, k_begin, k_end] = prompt_tile(p);
  const auto [q, k, v, out] = sequence_operands<T>(p);

  for (int i = tid; i < kTile * d; i += kFlashThreads) {
    const int r = i / d, c = i % d;
    qs[r * ld + c] = r < rows ? to_float(q[(int64_t(q0 + r) * p.heads + h) * d + c]) : 0.0f;
  }

  float o[4][kCols], m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < kCols; ++c) o[i][c] = 0.0f;
  }

  for (int64_t k0 = k_begin; k0 < k_end; k0 += kTile) {
    const int keys = int(min(int64_t(kTile), k_end - k0));
    __syncthreads();  // the previous tile's V and P are no longer read
    for (int i = tid; i < kTile * d; i += kFlashThreads) {
      const int r = i / d, c = i % d;
      kvs[r * ld + c] = r < keys ? to_float(k[((k0 + r) * p.kv_heads + kvh) * d + c]) : 0.0f;
    }
    __syncthreads();
    float s[4][4] = {};
    for (int c = 0; c < d; ++c) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = qs[(ty * 4 + i) * ld + c];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = kvs[(tx + 16 * j) * ld + c];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = fmaf(a[i], b[j], s[i][j]);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t pos = p.past + q0 + ty * 4 + i;
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t key = k0 + tx + 16 * j;
        const bool visible = tx + 16 * j < keys && sees(p, pos, key);
        s[i][j] = visible ? s[i][j] * p.scale : -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
#pragma unroll
      for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float m_new = fmaxf(m[i], mx);
      // A row with no visible key so far keeps m = -inf and contributes 0.
      const float corr = m_new == -INFINITY ? 1.0f : expf(m[i] - m_new);
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float pj = s[i][j] == -INFINITY ? 0.0f : expf(s[i][j] - m_new);
        ps[(ty * 4 + i) * kPStride + tx + 16 * j] = pj;
        sum += pj;
      }
      l[i] = l[i] * corr + sum;
      m[i] = m_new;
#pragma unroll
      for (int c = 0; c < kCols; ++c) o[i][c] *= corr;
    }
    __syncthreads();  // K and P complete
    for (int i = tid; i < kTile * d; i += kFlashThreads) {
      const int r = i / d, c = i % d;
      kvs[r * ld + c] = r < keys ? to_float(v[((k0 + r) * p.kv_heads + kvh) * d + c]) : 0.0f;
    }
    __syncthreads();
    for (int j = 0; j < keys; ++j) {
      float pj[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) pj[i] = ps[(ty * 4 + i) * kPStride + j];
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const int col = tx + 16 * c;
        if (col < d) {
          const float vj = kvs[j * ld + col];
#pragma unroll
          for (int i = 0; i < 4; ++i) o[i][c] = fmaf(pj[i], vj, o[i][c]);
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float sum = l[i];
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    const int r = ty * 4 + i;
    if (r >= rows) continue;
    const float inv = 1.0f / sum;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int col = tx + 16 * c;
      if (col < d) out[(int64_t(q0 + r) * p.heads + h) * d + col] = from_float<T>(o[i][c] * inv);
    }
  }
}

// Prompts on the tensor cores (bf16/f16, head_dim 64, 80, 96 or 128), FA2's scheme:
// a block = 4 warps x 16 queries of one head. A warp keeps its queries as mma
// A fragments (m16n8k16, f32 sums); per tile of 64 keys, K and V wait in
// shared memory (row stride D + 8: for these D the fragment loads of a
// warp's 8 rows x 4 lanes fall in 32 different banks), S = Q K^T lands in accumulators whose
// rows' 4 lanes meet by shuffles for the online softmax, and P, rounded to T
// (as SDPA's flash kernels do), is the A operand of O += P V. Tiles entirely
// outside the causal (and sliding-window) band are skipped, as above.
constexpr int kMmaWarps = 4;

template <typename T, int D>
__global__ void __launch_bounds__(kMmaWarps * 32) flash_attention_mma_kernel(const AttentionParams p) {
  constexpr int kStride = D + 8;
  __shared__ __align__(16) T ks[kTile * kStride];
  __shared__ __align__(16) T vs[kTile * kStride];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const auto [h, kvh, q0, rows, k_begin, k_end] = prompt_tile(p);
  const auto [q, k, v, out] = sequence_operands<T>(p);
  const uint16_t* vs16 = reinterpret_cast<const uint16_t*>(vs);

  // This lane's query rows (r0 = g and r1 = g + 8 of the warp's 16) as A fragments.
  const int r0 = warp * 16 + g, r1 = r0 + 8;
  const auto q_pair = [&](int r, int c) {
    return r < rows ? *reinterpret_cast<const uint32_t*>(q + (int64_t(q0 + r) * p.heads + h) * D + c) : 0u;
  };
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int ks16 = 0; ks16 < D / 16; ++ks16) {
    qf[ks16][0] = q_pair(r0, 16 * ks16 + 2 * t);
    qf[ks16][1] = q_pair(r1, 16 * ks16 + 2 * t);
    qf[ks16][2] = q_pair(r0, 16 * ks16 + 2 * t + 8);
    qf[ks16][3] = q_pair(r1, 16 * ks16 + 2 * t + 8);
  }

  const int64_t pos[2] = {p.past + q0 + r0, p.past + q0 + r1};

  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // l: this lane's part of the row sums
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kTile) {
    const int keys = int(min(int64_t(kTile), k_end - k0));
    __syncthreads();  // the previous tile is no longer read
    for (int i = tid; i < kTile * D / 8; i += kMmaWarps * 32) {
      const int r = i / (D / 8), c = (i % (D / 8)) * 8;
      const int64_t at = ((k0 + r) * p.kv_heads + kvh) * D + c;
      const uint4 zero = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(ks + r * kStride + c) = r < keys ? *reinterpret_cast<const uint4*>(k + at) : zero;
      *reinterpret_cast<uint4*>(vs + r * kStride + c) = r < keys ? *reinterpret_cast<const uint4*>(v + at) : zero;
    }
    __syncthreads();

    float s[kTile / 8][4];
#pragma unroll
    for (int nt = 0; nt < kTile / 8; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
      const T* krow = ks + (nt * 8 + g) * kStride + 2 * t;
#pragma unroll
      for (int ks16 = 0; ks16 < D / 16; ++ks16)
        mma_16816<T>(s[nt], qf[ks16], *reinterpret_cast<const uint32_t*>(krow + 16 * ks16),
                     *reinterpret_cast<const uint32_t*>(krow + 16 * ks16 + 8));
    }
    // Scale and mask; element e of n-tile nt: row e / 2, key nt * 8 + 2t + e % 2.
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kTile / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int kk = nt * 8 + 2 * t + (e & 1);
        s[nt][e] = kk < keys && sees(p, pos[e >> 1], k0 + kk) ? s[nt][e] * p.scale : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
      }
    float corr[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      const float m_new = fmaxf(m[i], mx[i]);
      // A row with no visible key so far keeps m = -inf and contributes 0.
      corr[i] = m_new == -INFINITY ? 1.0f : expf(m[i] - m_new);
      m[i] = m_new;
      l[i] *= corr[i];
    }
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] *= corr[0];
      o[dt][1] *= corr[0];
      o[dt][2] *= corr[1];
      o[dt][3] *= corr[1];
    }
    // P (rounded to T) as the A operand, 16 keys a step: n-tiles 2j and 2j + 1.
#pragma unroll
    for (int j = 0; j < kTile / 16; ++j) {
      float pv[2][4];
#pragma unroll
      for (int half = 0; half < 2; ++half)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float x = s[2 * j + half][e];
          pv[half][e] = x == -INFINITY ? 0.0f : expf(x - m[e >> 1]);
          l[e >> 1] += pv[half][e];
        }
      const uint32_t a[4] = {pack_pair<T>(pv[0][0], pv[0][1]), pack_pair<T>(pv[0][2], pv[0][3]),
                             pack_pair<T>(pv[1][0], pv[1][1]), pack_pair<T>(pv[1][2], pv[1][3])};
      // B = V rows 16j + 2t, +1 (b0) and + 8, + 9 (b1), column dt * 8 + g.
      const uint16_t* v0 = vs16 + (16 * j + 2 * t) * kStride + g;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        const uint16_t* vc = v0 + dt * 8;
        const uint32_t b0 = uint32_t(vc[0]) | (uint32_t(vc[kStride]) << 16);
        const uint32_t b1 = uint32_t(vc[8 * kStride]) | (uint32_t(vc[9 * kStride]) << 16);
        mma_16816<T>(o[dt], a, b0, b1);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float sum = l[i];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int r = i == 0 ? r0 : r1;
    if (r >= rows) continue;
    const float inv = 1.0f / sum;
    T* row = out + (int64_t(q0 + r) * p.heads + h) * D + 2 * t;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<uint32_t*>(row + dt * 8) = pack_pair<T>(o[dt][2 * i] * inv, o[dt][2 * i + 1] * inv);
  }
}

constexpr int kDecodeWarps = 4;

// One query (position past) per head and sequence; keys [key_lo, past] split
// in gridDim.y chunks (empty ones write m = -inf, which the merge skips).
// kRope: q, and the key and value of position past, come from p.qkv (key and
// value also written to the cache row by the group's first head, split 0).
template <typename T, int kMaxD, bool kRope>
__global__ void __launch_bounds__(kDecodeWarps * 32) decode_attention_kernel(const AttentionParams p, float* partial) {
  constexpr int kCols = kMaxD / 32;
  __shared__ float warp_o[kDecodeWarps][kMaxD];
  __shared__ float warp_m[kDecodeWarps], warp_l[kDecodeWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // Without splits the next kernel (a projection) may prepare during this
  // one: a block a head, all resident.
  if (gridDim.y == 1) allow_dependent_launch();
  wait_for_previous_grid();
  // Block x: (sequence, head); `flat` indexes q, out and the partials.
  const int flat = blockIdx.x, seq = flat / p.heads, h = flat - seq * p.heads;
  const int split = blockIdx.y, splits = gridDim.y, kvh = h / p.group, d = p.d;
  const T* q = static_cast<const T*>(p.q) + int64_t(flat) * d;
  const T* k = static_cast<const T*>(p.k) + seq * p.cache_stride;
  const T* v = static_cast<const T*>(p.v) + seq * p.cache_stride;
  const int64_t past = p.past_on_device ? int64_t(*p.past_on_device) : p.past;
  const T* qkv = kRope ? static_cast<const T*>(p.qkv) + int64_t(seq) * (p.heads + 2 * p.kv_heads) * d : nullptr;
  const T* k_new = kRope ? qkv + int64_t(p.heads + kvh) * d : nullptr;
  const T* v_new = kRope ? qkv + int64_t(p.heads + p.kv_heads + kvh) * d : nullptr;
  float qr[kCols], acc[kCols];
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
    const int col = lane + 32 * c;
    if constexpr (kRope)
      qr[c] = col < d ? rotated(qkv + int64_t(h) * d, col, d, past, p.cos_table, p.sin_table) : 0.0f;
    else
      qr[c] = col < d ? to_float(q[col]) : 0.0f;
    acc[c] = 0.0f;
  }
  if (kRope && split == 0 && h % p.group == 0) {
    // This step's key and value into the cache row (read by later steps).
    T* kc = const_cast<T*>(k) + (past * p.kv_heads + kvh) * d;
    T* vc = const_cast<T*>(v) + (past * p.kv_heads + kvh) * d;
    for (int col = threadIdx.x; col < d; col += blockDim.x) {
      kc[col] = from_float<T>(rotated(k_new, col, d, past, p.cos_table, p.sin_table));
      vc[col] = v_new[col];
    }
  }
  const int64_t key_lo = first_visible_key(p, past);
  const int64_t chunk = (past + 1 - key_lo + splits - 1) / splits;
  const int64_t begin = key_lo + split * chunk, end = min(begin + chunk, past + 1);
  float m = -INFINITY, l = 0.0f;
  // One key into the warp's online softmax. kFresh: this step's key and
  // value, from the projection (the cache row may not be written yet).
  const auto add_key = [&](auto fresh, int64_t j) {
    constexpr bool kFresh = decltype(fresh)::value;
    const T* kr = kFresh ? k_new : k + (j * p.kv_heads + kvh) * d;
    float dot = 0.0f;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int col = lane + 32 * c;
      if (col < d)
        dot = fmaf(qr[c], kFresh ? rotated(k_new, col, d, past, p.cos_table, p.sin_table) : to_float(kr[col]), dot);
    }
    const float s = warp_sum(dot) * p.scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new), pj = expf(s - m_new);
    l = l * corr + pj;
    m = m_new;
    const T* vr = kFresh ? v_new : v + (j * p.kv_heads + kvh) * d;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int col = lane + 32 * c;
      acc[c] = acc[c] * corr + (col < d ? pj * to_float(vr[col]) : 0.0f);
    }
  };
  // The cached keys, then (kRope) this step's key where this warp owns it:
  // the same order as one loop over all, without the fresh key's RoPE in the
  // loop (its registers halved the blocks an SM could hold).
  const int64_t cached_end = kRope ? min(end, past) : end;
  for (int64_t j = begin + warp; j < cached_end; j += kDecodeWarps) add_key(std::false_type{}, j);
  if (kRope && end == past + 1 && past >= begin && (past - begin) % kDecodeWarps == warp)
    add_key(std::true_type{}, past);
#pragma unroll
  for (int c = 0; c < kCols; ++c) warp_o[warp][lane + 32 * c] = acc[c];
  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
  __syncthreads();
  float mx = -INFINITY;
#pragma unroll
  for (int w = 0; w < kDecodeWarps; ++w) mx = fmaxf(mx, warp_m[w]);
  float factor[kDecodeWarps], sum = 0.0f;
#pragma unroll
  for (int w = 0; w < kDecodeWarps; ++w) {
    factor[w] = warp_m[w] == -INFINITY ? 0.0f : expf(warp_m[w] - mx);
    sum += warp_l[w] * factor[w];
  }
  for (int col = threadIdx.x; col < d; col += blockDim.x) {
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) o += warp_o[w][col] * factor[w];
    if (splits == 1) {
      static_cast<T*>(p.out)[int64_t(flat) * d + col] = from_float<T>(o / sum);
    } else {
      float* part = partial + (int64_t(flat) * splits + split) * (d + 2);
      part[2 + col] = o;
      if (col == 0) {
        part[0] = mx;
        part[1] = sum;
      }
    }
  }
}

// Merges the splits of each head (and sequence): out = sum_s O_s e^(m_s - M) / sum_s l_s e^(m_s - M).
// One block a head. The split weights e^(m_s - M) are made once, into shared
// memory; then warp w sums splits w, w + kMergeWarps, ... for every column
// (lane L: columns L, L + 32, ..., a split's row read coalesced, several
// rows in flight), and the warps' sums are added in warp order. A thread
// walking all the splits of its column one after the other took 21.7 us at
// 128 splits (a 1024-token context) where the loads allow a few.
constexpr int kMergeWarps = 8;

template <typename T, int kMaxD>
__global__ void __launch_bounds__(kMergeWarps * 32) merge_splits_kernel(const float* partial, int splits, int d, T* out) {
  constexpr int kCols = kMaxD / 32;
  extern __shared__ float weight[];  // [splits]
  __shared__ float warp_o[kMergeWarps][kMaxD];
  __shared__ float scratch[kMergeWarps];
  allow_dependent_launch();  // a block a head, all resident: the next kernel prepares meanwhile
  wait_for_previous_grid();
  const int h = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const float* base = partial + int64_t(h) * splits * (d + 2);
  float mx = -INFINITY;
  for (int s = threadIdx.x; s < splits; s += blockDim.x) mx = fmaxf(mx, base[s * (d + 2)]);
  mx = block_reduce<true>(mx, scratch);
  float sum = 0.0f;
  for (int s = threadIdx.x; s < splits; s += blockDim.x) {
    const float ms = base[s * (d + 2)];
    const float w = ms == -INFINITY ? 0.0f : expf(ms - mx);  // an empty split weighs nothing
    weight[s] = w;
    sum += w == 0.0f ? 0.0f : base[s * (d + 2) + 1] * w;
  }
  sum = block_reduce<false>(sum, scratch);  // ends with the weights visible to the block
  float o[kCols] = {};
#pragma unroll 4
  for (int s = warp; s < splits; s += kMergeWarps) {
    const float w = weight[s];
    if (w == 0.0f) continue;
    const float* row = base + s * (d + 2) + 2;
#pragma unroll
    for (int c = 0; c < kCols; ++c)
      if (lane + 32 * c < d) o[c] = fmaf(row[lane + 32 * c], w, o[c]);
  }
#pragma unroll
  for (int c = 0; c < kCols; ++c)
    if (lane + 32 * c < d) warp_o[warp][lane + 32 * c] = o[c];
  __syncthreads();
  for (int col = threadIdx.x; col < d; col += blockDim.x) {
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kMergeWarps; ++w) total += warp_o[w][col];
    out[int64_t(h) * d + col] = from_float<T>(total / sum);
  }
}

template <typename T, int kMaxD>
void launch_flash(const AttentionParams& p) {
  const int ld = row_stride(p.d);
  const size_t smem = (size_t(2) * kTile * ld + size_t(kTile) * kPStride) * sizeof(float);
  allow_shared_memory<flash_attention_kernel<T, kMaxD>>(
      int((2 * kTile * (kMaxD + 1) + kTile * kPStride) * sizeof(float)));
  const dim3 grid(unsigned((p.tokens + kTile - 1) / kTile), unsigned(p.heads), unsigned(p.batch));
  flash_attention_kernel<T, kMaxD><<<grid, kFlashThreads, smem, current_stream()>>>(p);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

template <typename T, int kMaxD, bool kRope>
void launch_decode(const AttentionParams& p, int64_t capacity) {
  // Keys of this step, or at most (a captured step, position on the device).
  int64_t keys = p.past_on_device ? capacity : p.past + 1;
  if (p.window > 0) keys = std::min(keys, p.window);
  const int sms = multiprocessors();
  // A warp walks its keys one after the other, each a chain of dependent
  // loads and shuffles (~1 us): about two keys a warp, as long as that stays
  // within 128 splits or two blocks an SM.
  const int64_t want = std::max<int64_t>(128, (2 * sms + p.heads - 1) / p.heads);
  int splits = int(std::clamp<int64_t>((keys + 2 * kDecodeWarps - 1) / (2 * kDecodeWarps), 1, want));
  // A batch has heads x sequences blocks before any split: split only as far
  // as about four blocks an SM.
  const int64_t blocks = int64_t(p.heads) * p.batch;
  if (p.batch > 1)
    splits = int(std::min<int64_t>(splits, std::max<int64_t>(1, (4 * sms + blocks - 1) / blocks)));
  const cudaStream_t stream = current_stream();
  float* partial = nullptr;
  if (splits > 1)
    LOWBIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&partial),
                                      size_t(blocks) * splits * (p.d + 2) * sizeof(float), stream));
  launch_dependent(decode_attention_kernel<T, kMaxD, kRope>, dim3(unsigned(blocks), unsigned(splits)),
                   dim3(kDecodeWarps * 32), 0, stream, p, partial);
  LOWBIT_CUDA_CHECK_LAUNCH();
  if (splits > 1) {
    launch_dependent(merge_splits_kernel<T, kMaxD>, dim3(unsigned(blocks)), dim3(kMergeWarps * 32),
                     size_t(splits) * sizeof(float), stream, static_cast<const float*>(partial), splits, p.d,
                     static_cast<T*>(p.out));
    LOWBIT_CUDA_CHECK_LAUNCH();
    LOWBIT_CUDA_CHECK(cudaFreeAsync(partial, stream));
  }
}

// The tensor-core prompt kernel where it applies: bf16/f16, head_dim 64, 80,
// 96 or 128 (multiples of the mma's k16 whose K and V tiles fit the static
// shared memory; 256 would need 67 KB and 128 accumulators a thread), 16-byte
// aligned K and V, 4-byte aligned q and out.
bool g_attention_mma = true;  // set_attention_tensor_cores

template <typename T>
bool flash_mma_applies(const AttentionParams& p) {
  if constexpr (std::is_same_v<T, float>) {
    return false;
  } else {
    const auto aligned = [](const void* ptr, uintptr_t n) { return reinterpret_cast<uintptr_t>(ptr) % n == 0; };
    return g_attention_mma && (p.d == 64 || p.d == 80 || p.d == 96 || p.d == 128) && aligned(p.k, 16) &&
           aligned(p.v, 16) && aligned(p.q, 4) && aligned(p.out, 4);
  }
}

template <typename T>
void launch_flash_mma(const AttentionParams& p) {
  if constexpr (!std::is_same_v<T, float>) {
    const dim3 grid(unsigned((p.tokens + kTile - 1) / kTile), unsigned(p.heads), unsigned(p.batch));
    const auto run = [&](auto kernel) { kernel<<<grid, kMmaWarps * 32, 0, current_stream()>>>(p); };
    if (p.d == 64) run(flash_attention_mma_kernel<T, 64>);
    else if (p.d == 80) run(flash_attention_mma_kernel<T, 80>);
    else if (p.d == 96) run(flash_attention_mma_kernel<T, 96>);
    else run(flash_attention_mma_kernel<T, 128>);
    LOWBIT_CUDA_CHECK_LAUNCH();
  }
}

template <typename T, int kMaxD>
void launch(const AttentionParams& p, int64_t capacity) {
  if (p.qkv) launch_decode<T, kMaxD, true>(p, capacity);
  else if (p.tokens == 1) launch_decode<T, kMaxD, false>(p, capacity);
  else if (flash_mma_applies<T>(p)) launch_flash_mma<T>(p);
  else launch_flash<T, kMaxD>(p);
}

template <typename Fn>
void with_head_dim(DType dtype, int d, Fn&& fn) {
  if (d > 256) throw_error("ops::attention on CUDA: head_dim " + std::to_string(d) + " is above the supported 256");
  dispatch_device_float(dtype, "ops::attention", [&](auto tag) {
    using T = decltype(tag);
    if (d <= 64) fn(T{}, std::integral_constant<int, 64>{});
    else if (d <= 128) fn(T{}, std::integral_constant<int, 128>{});
    else fn(T{}, std::integral_constant<int, 256>{});
  });
}

}  // namespace

void set_attention_tensor_cores(bool on) { g_attention_mma = on; }

void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Position& past, Tensor& out,
               int64_t window) {
  // [capacity, kv_heads, d], or [batch, capacity, kv_heads, d] with q's rows
  // split evenly between the sequences.
  const int64_t batch = k_cache.ndim() == 4 ? k_cache.dim(0) : 1, capacity = k_cache.dim(-3);
  const int kv_heads = int(k_cache.dim(-2));
  AttentionParams p{q.raw_data(), k_cache.raw_data(), v_cache.raw_data(), out.raw_data(),
                    int(q.dim(0) / batch), int(q.dim(1)), kv_heads, int(q.dim(2)), int(q.dim(1)) / kv_heads,
                    past.value, window, 0.0f,
                    past.on_device.defined() ? past.on_device.data<int32_t>() : nullptr};
  p.scale = 1.0f / sqrtf(float(p.d));
  p.batch = int(batch);
  p.cache_stride = capacity * kv_heads * p.d;
  if (p.tokens == 0 || p.heads == 0 || p.d == 0) return;
  with_head_dim(q.dtype(), p.d, [&](auto tag, auto max_d) {
    launch<decltype(tag), decltype(max_d)::value>(p, capacity);
  });
}

void rope_attention_decode(const Tensor& qkv, const RopeTables& tables, const Position& position, Tensor& k_cache,
                           Tensor& v_cache, Tensor& out, int64_t window) {
  // [capacity, kv_heads, d], or [batch, capacity, kv_heads, d].
  const int kv_heads = int(k_cache.dim(-2)), d = int(k_cache.dim(-1)), heads = int(out.dim(1) / d);
  const int64_t capacity = k_cache.dim(-3);
  AttentionParams p{nullptr, k_cache.raw_data(), v_cache.raw_data(), out.raw_data(), 1, heads, kv_heads, d,
                    heads / kv_heads, position.value, window, 1.0f / sqrtf(float(d)),
                    position.on_device.defined() ? position.on_device.data<int32_t>() : nullptr};
  p.qkv = qkv.raw_data();
  p.cos_table = tables.cos.data<float>();
  p.sin_table = tables.sin.data<float>();
  p.batch = int(qkv.dim(0));
  p.cache_stride = capacity * kv_heads * d;
  with_head_dim(qkv.dtype(), d, [&](auto tag, auto max_d) {
    launch<decltype(tag), decltype(max_d)::value>(p, capacity);
  });
}

}  // namespace lowbit::ops::cuda
