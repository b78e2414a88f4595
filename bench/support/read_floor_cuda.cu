#include "support/read_floor_cuda.h"

#include <algorithm>

#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_4bit_common.cuh"
#include "ops/cuda/wgmma_sm90a.cuh"  // the mbarrier helpers (plain sm_90 instructions)

namespace lowbit::bench {
namespace {

constexpr int kThreads = 512;
constexpr int kUnroll = 4;  // 64 bytes in flight a thread, 128 KB an SM

// The loads the fused 4-bit kernels stream their weights with.
using ops::cuda::load_streaming16;
using ops::cuda::fused4::load_streaming;

// Consecutive threads read consecutive 16-byte chunks of a then b, each
// thread kUnroll chunks a grid stride apart per round, all issued before use.
__global__ void __launch_bounds__(kThreads) stream_read_kernel(const uint4* a, size_t chunks_a, const uint4* b,
                                                               size_t chunks_b, uint32_t* sink) {
  ops::cuda::allow_dependent_launch();  // persistent grid: every block resident
  const size_t total = chunks_a + chunks_b, stride = size_t(gridDim.x) * kThreads;
  uint32_t acc = 0;
  for (size_t i = size_t(blockIdx.x) * kThreads + threadIdx.x; i < total; i += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const size_t c = i + u * stride;
      v[u] = c < chunks_a ? load_streaming16(a + c) : c < total ? load_streaming16(b + (c - chunks_a)) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  ops::cuda::wait_for_previous_grid();  // only the write depends on the previous kernel
  if (acc == 0x9e3779b9u && threadIdx.x == 0x1ff) sink[blockIdx.x & 63] = acc;
}

constexpr int kPatternWarps = 12;

struct RowStep {
  uint4 w[4];
  float scale[4];
};

// A warp's steps read two ahead of their use: load(step) fills a step and
// says whether the warp had one left; every word is folded into a value that
// is stored only if it matches a constant, so that the loads stay.
template <typename Load>
__device__ __forceinline__ void read_steps(Load load, uint32_t* sink) {
  uint32_t acc = 0;
  const auto use = [&](const RowStep& st) {
#pragma unroll
    for (int r = 0; r < 4; ++r) acc ^= st.w[r].x ^ st.w[r].y ^ st.w[r].z ^ st.w[r].w ^ __float_as_uint(st.scale[r]);
  };
  RowStep a, b;
  bool more_a = load(a), more_b = load(b);
  while (more_a) {
    use(a);
    more_a = load(a);
    if (!more_b) break;
    use(b);
    more_b = load(b);
  }
  ops::cuda::wait_for_previous_grid();
  if (acc == 0x9e3779b9u && threadIdx.x == blockDim.x - 1) sink[blockIdx.x & 63] = acc;
}

__global__ void __launch_bounds__(kPatternWarps * 32, 2)
    gemv_pattern_read_kernel(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink) {
  ops::cuda::allow_dependent_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t groups = (n + 3) / 4, chunks = (k + 1023) / 1024;
  const int64_t g_lo = int64_t(blockIdx.x) * groups / gridDim.x, g_hi = int64_t(blockIdx.x + 1) * groups / gridDim.x;
  // The warp's steps in order: (group, chunk), group g_lo + warp + i * kPatternWarps.
  int64_t g = g_lo + warp, c = 0;
  const auto load = [&](RowStep& st) {
    if (g >= g_hi) return false;
    const bool inside = c * 1024 + lane * 32 < k;  // the last chunk of a row may be partial
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t row = min(g * 4 + r, n - 1), e = row * k + c * 1024 + lane * 32;
      st.w[r] = inside ? load_streaming16(packed + e / 2) : make_uint4(0, 0, 0, 0);
      st.scale[r] = inside ? load_streaming(absmax + e / 64) : 0.0f;
    }
    if (++c == chunks) {
      c = 0;
      g += kPatternWarps;
    }
    return true;
  };
  read_steps(load, sink);
}

// The cluster kernel's pattern (gemm_4bit_cluster_cuda.cu) with the GEMV
// pattern's warps and buffers: a step is 32 rows (4 tiles of 8) x 64 bytes,
// lane (g, t) reading 16 bytes of row 8j + g at byte 16t. As in the cluster
// kernel, k is cut into slices where the 32-row units are fewer than the
// warps, so that every warp slot has work: a warp walks its (unit, slice)
// along k, then takes the item kPatternWarps x blocks on. kBanded: the bytes
// sit where the band-interleaved layout puts them (band j of the unit at byte
// band * 8 * k / 2 + round * 512 + lane * 16); the absmax stays row-major.
template <bool kBanded>
__global__ void __launch_bounds__(kPatternWarps * 32, 2)
    cluster_pattern_read_kernel(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink) {
  ops::cuda::allow_dependent_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t units = (n + 31) / 32, rounds = k / 128, bands = (n + 7) / 8;
  const int64_t warps = int64_t(gridDim.x) * kPatternWarps;
  const int64_t slices = max(int64_t(1), min(rounds, warps / units)), items = units * slices;
  int64_t item = int64_t(blockIdx.x) * kPatternWarps + warp, u = 0, r = 0, r_end = 0;
  const auto start = [&] {
    u = item / slices;
    const int64_t s = item % slices;
    r = s * rounds / slices;
    r_end = (s + 1) * rounds / slices;
  };
  if (item < items) start();
  const auto load = [&](RowStep& st) {
    if (item >= items) return false;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t band = min(u * 4 + j, bands - 1), row = min(band * 8 + (lane >> 2), n - 1);
      const int64_t e = row * k + r * 128 + (lane & 3) * 32;
      st.w[j] = load_streaming16(kBanded ? packed + band * 4 * k + r * 512 + lane * 16 : packed + e / 2);
      st.scale[j] = load_streaming(absmax + e / 64);
    }
    if (++r == r_end) {
      item += warps;
      if (item < items) start();
    }
    return true;
  };
  read_steps(load, sink);
}

// The bulk-copy ring: kRingStages stages, each kRingCodeBytes of codes and
// the absmax of those codes (one f32 a 64-weight block: an eighth of their
// bytes).
constexpr int kRingWarps = 8;  // consumers; one more warp holds the producer lane
template <int kRingStages, int kRingCodeBytes>
constexpr size_t ring_smem() {
  return size_t(kRingStages) * (kRingCodeBytes + kRingCodeBytes / 8) + 2 * kRingStages * 8;
}

__device__ __forceinline__ uint32_t fma2_bf16(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

__device__ __forceinline__ void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

// The ring's producer (one lane): chunk i of the codes (stage_code_bytes, the
// last one shorter) and its absmax (an eighth as many bytes) into stage
// i % stages once the consumers have released that stage's previous chunk.
__device__ __forceinline__ void produce_ring(const uint8_t* codes, const uint8_t* scales, int64_t code_bytes,
                                             int stage_code_bytes, int stages, uint32_t ring, uint32_t full,
                                             uint32_t empty) {
  using namespace ops::cuda::wgmma;
  const int stage_bytes = stage_code_bytes + stage_code_bytes / 8;
  const int64_t chunks = (code_bytes + stage_code_bytes - 1) / stage_code_bytes;
  for (int64_t i = 0; i < chunks; ++i) {
    const int s = int(i % stages);
    if (i >= stages) barrier_wait(empty + 8 * s, uint32_t(i / stages - 1) & 1);
    const uint32_t cb = uint32_t(min(int64_t(stage_code_bytes), code_bytes - i * stage_code_bytes)), sb = cb / 8;
    const uint32_t dst = ring + s * stage_bytes;
    barrier_arrive_expect(full + 8 * s, cb + sb);
    bulk_load(dst, codes + i * stage_code_bytes, cb, full + 8 * s);
    bulk_load(dst + stage_code_bytes, scales + i * (stage_code_bytes / 8), sb, full + 8 * s);
  }
}

template <int kRingStages, int kRingCodeBytes>
__global__ void __launch_bounds__((kRingWarps + 1) * 32, 1)
    bulk_ring_read_kernel(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink) {
  extern __shared__ __align__(128) uint8_t ring[];
  constexpr int kRingStageBytes = kRingCodeBytes + kRingCodeBytes / 8;
  ops::cuda::allow_dependent_launch();
  using namespace ops::cuda::wgmma;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t stages = ops::cuda::shared_address(ring);
  const uint32_t full = stages + kRingStages * kRingStageBytes, empty = full + 8 * kRingStages;
  if (threadIdx.x == 0) init_stage_barriers(full, empty, kRingStages, 1, kRingWarps);
  __syncthreads();
  // This block's rows [r0, r1): one contiguous range of codes, one of absmax.
  const int64_t r0 = int64_t(blockIdx.x) * n / gridDim.x, r1 = int64_t(blockIdx.x + 1) * n / gridDim.x;
  const uint8_t* codes = packed + r0 * (k / 2);
  const uint8_t* scales = reinterpret_cast<const uint8_t*>(absmax + r0 * (k / 64));
  const int64_t code_bytes = (r1 - r0) * (k / 2);
  const int64_t chunks = (code_bytes + kRingCodeBytes - 1) / kRingCodeBytes;
  uint32_t acc = 0;
  if (warp == kRingWarps) {
    if (lane == 0) produce_ring(codes, scales, code_bytes, kRingCodeBytes, kRingStages, stages, full, empty);
  } else {
    for (int64_t i = 0; i < chunks; ++i) {
      const int s = int(i % kRingStages);
      barrier_wait(full + 8 * s, uint32_t(i / kRingStages) & 1);
      const int cb = int(min(int64_t(kRingCodeBytes), code_bytes - i * kRingCodeBytes));
      const uint8_t* stage = ring + s * kRingStageBytes;
      for (int off = (warp * 32 + lane) * 16; off < cb; off += kRingWarps * 32 * 16) {
        const uint4 v = *reinterpret_cast<const uint4*>(stage + off);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
      }
      for (int off = (warp * 32 + lane) * 16; off < cb / 8; off += kRingWarps * 32 * 16) {
        const uint4 v = *reinterpret_cast<const uint4*>(stage + kRingCodeBytes + off);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
      }
      __syncwarp();
      if (lane == 0) barrier_arrive(empty + 8 * s);
    }
  }
  ops::cuda::wait_for_previous_grid();
  if (acc == 0x9e3779b9u && threadIdx.x == 0) sink[blockIdx.x & 63] = acc;
}

// The ring with the one-row GEMV's arithmetic on what lands: the pair table
// (64 KB), x staged in shared memory, and the GEMV's 4-row groups: a consumer
// lane takes 16 bytes (32 weights) of each of a group's 4 rows at one column,
// loads those 32 values of x once for the 4 rows, and per code byte does the
// GEMV's byte permute, table load and HFMA2, the packed sums widened and
// scaled by the block's absmax every 8 bytes. A stage holds whole groups
// (RingGeometry); consumer warps form teams that take alternate stages where
// one stage has fewer items than the consumers. No per-row sums or output:
// the products fold into one value, so this times the stream and the decode
// together, not a finished kernel.
constexpr int kProtoWarps = 16;  // consumers; one more warp holds the producer lane
constexpr size_t kProtoSmemLimit = 227 * 1024;

struct RingGeometry {
  int groups;       // 4-row groups a stage
  int code_bytes;   // a stage's codes (groups x 4 rows x k / 2)
  int stage_bytes;  // codes + their absmax (an eighth)
  int stages;
  int teams;        // consumer teams (each takes every teams-th stage)
  size_t smem;
};

RingGeometry ring_geometry(int64_t k) {
  RingGeometry g{};
  const int64_t group_bytes = 2 * k;
  g.groups = int(std::max<int64_t>(1, 16384 / group_bytes));
  g.code_bytes = int(g.groups * group_bytes);
  g.stage_bytes = g.code_bytes + g.code_bytes / 8;
  const size_t fixed = size_t(ops::cuda::fused4::kPairTableWords) * 4 + size_t(k) * 2;
  g.stages = fixed >= kProtoSmemLimit ? 0 : int((kProtoSmemLimit - fixed) / (size_t(g.stage_bytes) + 16));
  g.stages = std::min(g.stages, 12);
  const int items = int(g.groups * (k / 32)), consumers = kProtoWarps * 32;
  g.teams = std::max(1, std::min(4, consumers / std::max(items, 1)));
  g.smem = fixed + size_t(g.stages) * (size_t(g.stage_bytes) + 16);
  return g;
}

__global__ void __launch_bounds__((kProtoWarps + 1) * 32, 1)
    bulk_ring_gemv_kernel(const uint8_t* packed, const float* absmax, const float* code, const __nv_bfloat16* x,
                          int64_t n, int64_t k, RingGeometry geo, uint32_t* sink) {
  extern __shared__ __align__(128) uint32_t proto[];
  using namespace ops::cuda::wgmma;
  using namespace ops::cuda::fused4;
  ops::cuda::allow_dependent_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kStages = geo.stages, kStageBytes = geo.stage_bytes, kCodeBytes = geo.code_bytes;
  const uint32_t lane4 = uint32_t(lane) * 4, table = ops::cuda::shared_address(proto);
  uint8_t* const xs = reinterpret_cast<uint8_t*>(proto + kPairTableWords);
  uint8_t* const ring = xs + k * 2;
  const uint32_t stages = ops::cuda::shared_address(ring);
  const uint32_t full = stages + kStages * kStageBytes, empty = full + 8 * kStages;
  const int team_warps = kProtoWarps / geo.teams;
  if (threadIdx.x == 0) init_stage_barriers(full, empty, kStages, 1, team_warps);
  // This block's groups [q0, q1) of 4 rows: one contiguous range of codes, one of absmax.
  const int64_t groups_all = n / 4;
  const int64_t q0 = int64_t(blockIdx.x) * groups_all / gridDim.x;
  const int64_t q1 = int64_t(blockIdx.x + 1) * groups_all / gridDim.x;
  const uint8_t* codes = packed + q0 * 2 * k;
  const uint8_t* scales = reinterpret_cast<const uint8_t*>(absmax + q0 * (k / 16));
  const int64_t code_bytes = (q1 - q0) * 2 * k;
  const int64_t chunks = (code_bytes + kCodeBytes - 1) / kCodeBytes;
  __syncthreads();  // the barriers, before the producer's first copy
  if (warp == kProtoWarps) {
    if (lane == 0) produce_ring(codes, scales, code_bytes, kCodeBytes, kStages, stages, full, empty);
    return;
  }
  // Consumers only: the table, then x (after the previous kernel, as in the GEMV).
  build_pair_table<__nv_bfloat16, 64>(proto, code);
  ops::cuda::wait_for_previous_grid();
  const int consumers_all = kProtoWarps * 32;
  for (int64_t c = warp * 32 + lane; c < k / 8; c += consumers_all)
    reinterpret_cast<uint4*>(xs)[c] = reinterpret_cast<const uint4*>(x)[c];
  asm volatile("bar.sync 1, %0;" ::"n"(kProtoWarps * 32));  // the consumers' barrier (the producer has gone)
  const uint32_t x_address = ops::cuda::shared_address(xs);
  const int team = warp / team_warps, member = (warp % team_warps) * 32 + lane, members = team_warps * 32;
  const uint32_t segs = uint32_t(k / 32), row_bytes = uint32_t(k / 2);
  float acc[4] = {};
  for (int64_t i = team; i < chunks; i += geo.teams) {
    const int s = int(i % kStages);
    barrier_wait(full + 8 * s, uint32_t(i / kStages) & 1);
    const uint32_t items = uint32_t(min(int64_t(kCodeBytes), code_bytes - i * kCodeBytes)) / (4 * row_bytes) * segs;
    const uint32_t stage = stages + s * kStageBytes;
    for (uint32_t item = uint32_t(member); item < items; item += uint32_t(members)) {
      const uint32_t group = item / segs, seg = item - group * segs;
      const uint32_t base = group * 4 * row_bytes + seg * 16;  // row 0's piece; row r at + r * row_bytes
      uint4 w[4];
      float scale[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        w[r] = ops::cuda::fused4::load_shared16(stage + base + uint32_t(r) * row_bytes);
        asm volatile("ld.shared.f32 %0, [%1];"
                     : "=f"(scale[r])
                     : "r"(stage + uint32_t(kCodeBytes) + ((base + uint32_t(r) * row_bytes) / 32) * 4));
      }
#pragma unroll
      for (int i0 = 0; i0 < 4; i0 += 2) {
        uint32_t h[4] = {};
#pragma unroll
        for (int wi = i0; wi < i0 + 2; ++wi) {
          const uint4 xv = ops::cuda::fused4::load_shared16(x_address + (seg * 32 + 8 * uint32_t(wi)) * 2);
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const uint32_t wd = word(w[r], wi);
            const uint32_t pairs[4] = {lookup<0, false>(table, wd, lane4), lookup<1, false>(table, wd, lane4),
                                       lookup<2, false>(table, wd, lane4), lookup<3, false>(table, wd, lane4)};
#pragma unroll
            for (int j = 0; j < 4; ++j) h[r] = fma2_bf16(pairs[j], word(xv, j), h[r]);
          }
        }
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const float2 f = ops::cuda::unpack_pair<__nv_bfloat16>(h[r]);
          acc[r] = fmaf(f.y, scale[r], fmaf(f.x, scale[r], acc[r]));
        }
      }
    }
    __syncwarp();
    if (lane == 0) barrier_arrive(empty + 8 * s);
  }
  if (__float_as_uint(acc[0] + acc[1] + acc[2] + acc[3]) == 0x9e3779b9u) sink[blockIdx.x & 63] = 1;
}

}  // namespace

int stream_gemv_bulk_ring(const uint8_t* packed, const float* absmax, const float* code, const void* x, int64_t n,
                          int64_t k, uint32_t* sink, cudaStream_t stream) {
  const RingGeometry geo = ring_geometry(k);
  if (k % 256 != 0 || n % 4 != 0 || geo.stages < 2) return 0;
  static const bool ready = [] {
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(bulk_ring_gemv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           int(kProtoSmemLimit)));
    return true;
  }();
  (void)ready;
  ops::cuda::launch_dependent(bulk_ring_gemv_kernel, dim3(unsigned(ops::cuda::multiprocessors())),
                              dim3((kProtoWarps + 1) * 32), geo.smem, stream, packed, absmax, code,
                              static_cast<const __nv_bfloat16*>(x), n, k, geo, sink);
  return geo.stages * 1000 + geo.code_bytes / 1024 * 10 + geo.teams;
}

void stream_read_cluster_banded(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink,
                                cudaStream_t stream) {
  ops::cuda::launch_dependent(cluster_pattern_read_kernel<true>, dim3(unsigned(2 * ops::cuda::multiprocessors())),
                              dim3(kPatternWarps * 32), 0, stream, packed, absmax, n, k, sink);
}

namespace {
template <int kStages, int kCodeBytes>
void launch_bulk_ring(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink,
                      cudaStream_t stream) {
  constexpr auto kernel = bulk_ring_read_kernel<kStages, kCodeBytes>;
  constexpr size_t smem = ring_smem<kStages, kCodeBytes>();
  static const bool ready = [] {
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    return true;
  }();
  (void)ready;
  ops::cuda::launch_dependent(kernel, dim3(unsigned(ops::cuda::multiprocessors())), dim3((kRingWarps + 1) * 32),
                              smem, stream, packed, absmax, n, k, sink);
}
}  // namespace

bool stream_read_bulk_ring(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, int shape,
                           uint32_t* sink, cudaStream_t stream) {
  if (k % 256 != 0) return false;
  switch (shape) {
    case 0: launch_bulk_ring<7, 16384>(packed, absmax, n, k, sink, stream); break;
    case 1: launch_bulk_ring<12, 16384>(packed, absmax, n, k, sink, stream); break;
    case 2: launch_bulk_ring<24, 8192>(packed, absmax, n, k, sink, stream); break;
    default: launch_bulk_ring<6, 32768>(packed, absmax, n, k, sink, stream); break;
  }
  return true;
}

void stream_read_cluster_pattern(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink,
                                 cudaStream_t stream) {
  ops::cuda::launch_dependent(cluster_pattern_read_kernel<false>, dim3(unsigned(2 * ops::cuda::multiprocessors())),
                              dim3(kPatternWarps * 32), 0, stream, packed, absmax, n, k, sink);
}

void stream_read_gemv_pattern(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink,
                              cudaStream_t stream) {
  ops::cuda::launch_dependent(gemv_pattern_read_kernel, dim3(unsigned(2 * ops::cuda::multiprocessors())),
                              dim3(kPatternWarps * 32), 0, stream, packed, absmax, n, k, sink);
}

void stream_read(const void* a, size_t bytes_a, const void* b, size_t bytes_b, uint32_t* sink, cudaStream_t stream) {
  static const int blocks = [] {
    int per_sm = 0;
    LOWBIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, stream_read_kernel, kThreads, 0));
    return per_sm * ops::cuda::multiprocessors();
  }();
  ops::cuda::launch_dependent(stream_read_kernel, dim3(unsigned(blocks)), dim3(kThreads), 0, stream,
                              static_cast<const uint4*>(a), bytes_a / 16, static_cast<const uint4*>(b), bytes_b / 16,
                              sink);
}

}  // namespace lowbit::bench
