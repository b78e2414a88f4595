// Device pieces shared by the fused 4-bit kernels (gemv_4bit_cuda.cu on CUDA
// cores, gemm_4bit_cuda.cu on tensor cores): their parameters, streaming
// loads, the code-pair table and the block-scale decode. Include from .cu only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "ops/cuda/cuda_common.h"
#include "ops/cuda/linear_cuda.h"
#include "ops/cuda/mma_cuda.cuh"

namespace lowbit::ops::cuda::fused4 {

struct Params {
  const uint8_t* packed;
  const float* code;
  const float* absmax;
  const uint8_t* qabsmax;
  const float* nested_absmax;
  const float* nested_code;
  float nested_offset;
  int nested_shift;  // log2(nested_blocksize)
  uint32_t nested_part_start[Packed4bit::kMaxNestedParts - 1];  // Packed4bit's parts
  float nested_part_offset[Packed4bit::kMaxNestedParts - 1];
  int block_shift;   // log2(blocksize)
  int64_t n, k;
  int m;
  const void* x;
  const void* bias;
  void* out;
  // The wgmma GEMM's SwiGLU output: the rows are n / 2 gate rows, then the
  // up rows, and out [m, n / 2] takes swiglu(gate, up).
  bool swiglu = false;
};

inline int log2_exact(int64_t v) {
  int s = 0;
  while ((int64_t(1) << s) < v) ++s;
  return (int64_t(1) << s) == v ? s : -1;
}

inline Params make_params(const Packed4bit& w, const void* x, int64_t m, const void* bias, void* out) {
  Params p{w.packed, w.code, w.absmax, w.qabsmax, w.nested_absmax, w.nested_code, w.nested_offset,
           w.qabsmax ? log2_exact(w.nested_blocksize) : 0, {}, {}, log2_exact(w.blocksize), w.n, w.k, int(m), x,
           bias, out};
  for (int i = 0; i < Packed4bit::kMaxNestedParts - 1; ++i) {
    p.nested_part_start[i] = w.nested_part_start[i];
    p.nested_part_offset[i] = w.nested_part_offset[i];
  }
  return p;
}

// The offset of a double-quantized absmax in nested block `outer`: the part's
// that holds it (parts start in increasing order; selects, no memory access).
// W: Params or Packed4bit, which name these fields alike.
template <typename W>
__device__ __forceinline__ float nested_offset_at(const W& p, uint32_t outer) {
  float offset = p.nested_offset;
#pragma unroll
  for (int i = 0; i < Packed4bit::kMaxNestedParts - 1; ++i)
    offset = outer >= p.nested_part_start[i] ? p.nested_part_offset[i] : offset;
  return offset;
}

// Weights and their scales are read once: skip L1 so that the activations,
// which every warp rereads, stay there (load_streaming16: cuda_common.h).
__device__ __forceinline__ uint2 load_streaming8(const uint8_t* p) {
  uint2 v;
  asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}
__device__ __forceinline__ float load_streaming(const float* p) {
  float v;
  asm("ld.global.nc.L1::no_allocate.f32 %0, [%1];" : "=f"(v) : "l"(p));
  return v;
}
__device__ __forceinline__ uint32_t load_streaming_u8(const uint8_t* p) {
  uint32_t v;
  asm("ld.global.nc.L1::no_allocate.u8 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

// The pair table: entry v (a packed byte, first element in the high nibble)
// holds (code[v >> 4], code[v & 15]) in T x2 form, low half first. One copy
// per lane, lane L's copy in bank L, so random indices never conflict; rows
// of 256 bytes (64 words, the first 32 used) let one byte permute form the
// address. 64 KB.
constexpr int kPairTableWords = 256 * 64;

// A thread an entry: its two codes read (the 64-byte map is one L1 line, a
// single round trip for the block), its pair made once, then its row's 32
// copies in eight 16-byte stores (four copies each), lane L starting at store
// L % 8 so that the eight lanes of a quarter warp write eight different bank
// groups. No barrier inside: the table sits on every call's path to its first
// product (build_shared_tables ends with one, or leaves it to the caller's
// next barrier). kRowWords: 64 gives the
// one-PRMT addressing above; 32 packs the copies (32 KB; the address then
// costs a shift-add more).
template <typename T, int kRowWords = 64>
__device__ __forceinline__ void build_pair_table(uint32_t* table, const float* code) {
  const int lane = int(threadIdx.x & 31);
  for (int v = threadIdx.x; v < 256; v += blockDim.x) {
    const uint32_t pair = pack_pair<T>(__ldg(code + (v >> 4)), __ldg(code + (v & 15)));
    const uint4 copies = make_uint4(pair, pair, pair, pair);
    uint4* const row = reinterpret_cast<uint4*>(table) + v * (kRowWords / 4);
#pragma unroll
    for (int c = 0; c < 8; ++c) row[(c + lane) & 7] = copies;
  }
}

// A fused kernel's shared tables: the code-pair table at the start of `smem`,
// then (double quantization) the 256-value nested map after `table_words`;
// returns the nested map's address, where the kernel's own scratch begins 256
// floats later. Ends with a barrier unless kBarrier is false (a kernel whose
// next barrier comes before any lookup).
template <typename T, bool kNested, int kRowWords = 64, bool kBarrier = true>
__device__ __forceinline__ float* build_shared_tables(uint32_t* smem, int table_words, const Params& p) {
  float* nested_map = reinterpret_cast<float*>(smem + table_words);
  build_pair_table<T, kRowWords>(smem, p.code);
  if constexpr (kNested)
    for (int i = threadIdx.x; i < 256; i += blockDim.x) nested_map[i] = __ldg(p.nested_code + i);
  if constexpr (kBarrier) __syncthreads();
  return nested_map;
}

// The code pair of byte `byte` of `word`, from this lane's copy: byte value v
// of lane L sits at byte offset v * 256 + L * 4 (`lane4` holds L * 4).
// `table` is the table's shared-window address. kOrdered keeps the loads in
// program order (`volatile`); the table is read-only once built, so kernels
// may let the compiler schedule them among the others (false).
// pair_offset_selector(b): the byte permute of (word, lane4) that forms that
// offset from byte b of the word.
__host__ __device__ constexpr uint32_t pair_offset_selector(uint32_t byte) { return 0x5504u | (byte << 4); }
template <int byte, bool kOrdered = true>
__device__ __forceinline__ uint32_t lookup(uint32_t table, uint32_t word, uint32_t lane4) {
  constexpr uint32_t selector = pair_offset_selector(byte);
  uint32_t v;
  if constexpr (kOrdered)
    asm volatile("ld.shared.b32 %0, [%1];" : "=r"(v) : "r"(table + __byte_perm(word, lane4, selector)));
  else
    asm("ld.shared.b32 %0, [%1];" : "=r"(v) : "r"(table + __byte_perm(word, lane4, selector)));
  return v;
}

// The mma A fragment of one k16 step from two packed words (rows g and g + 8):
// step parity `odd` picks bytes 0-1 or 2-3 of each word.
__device__ __forceinline__ void lookup_a_fragment(uint32_t table, uint32_t lo, uint32_t hi, uint32_t lane4, bool odd,
                                                  uint32_t (&a)[4]) {
  if (odd) {
    a[0] = lookup<2>(table, lo, lane4);
    a[1] = lookup<2>(table, hi, lane4);
    a[2] = lookup<3>(table, lo, lane4);
    a[3] = lookup<3>(table, hi, lane4);
  } else {
    a[0] = lookup<0>(table, lo, lane4);
    a[1] = lookup<0>(table, hi, lane4);
    a[2] = lookup<1>(table, lo, lane4);
    a[3] = lookup<1>(table, hi, lane4);
  }
}

// What every fused 4-bit kernel needs: 16-bit activations, power-of-two
// (nested) block sizes, 16-byte aligned x and packed weights.
inline bool layout_supported(DType dtype, const Packed4bit& w, const void* x) {
  return (dtype == DType::BF16 || dtype == DType::F16) && log2_exact(w.blocksize) >= 0 &&
         (!w.qabsmax || log2_exact(w.nested_blocksize) >= 0) && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w.packed) % 16 == 0;
}

// Blocks of kKernel that the current GPU holds at once (SMs x blocks resident
// per SM), after raising its dynamic shared memory limit to `smem` (asked
// once a device).
template <auto kKernel>
int64_t resident_block_slots(int threads, size_t smem) {
  allow_shared_memory<kKernel>(int(smem));
  static PerDevice<int> per_sm;
  return int64_t(multiprocessors()) * per_sm.get([&] {
    int resident = 0;
    LOWBIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kKernel, threads, smem));
    return resident > 0 ? resident : 1;
  });
}

// A block scale as loaded ahead of use: the f32 absmax, or the u8 code of a
// double-quantized one (its nested scale is read when the code is decoded).
struct ScaleRaw {
  float value;
  uint32_t code;
};

template <bool kNested>
__device__ __forceinline__ ScaleRaw load_scale(const Params& p, uint32_t block) {
  if constexpr (kNested) return {0.0f, load_streaming_u8(p.qabsmax + block)};
  else return {load_streaming(p.absmax + block), 0u};
}

// Double quantization decoded as bitsandbytes does: code * scale, then + offset.
template <bool kNested>
__device__ __forceinline__ float decode_scale(const Params& p, const float* nested_map, ScaleRaw raw,
                                              uint32_t block) {
  if constexpr (kNested) {
    const uint32_t outer = block >> p.nested_shift;
    const float nested = __ldg(p.nested_absmax + outer);
    return __fadd_rn(__fmul_rn(nested_map[raw.code], nested), nested_offset_at(p, outer));
  } else {
    return raw.value;
  }
}

// Two code pairs times the pair (absmax, absmax), rounded to T: the weights
// as bitsandbytes dequantizes them, up to the rounding of absmax to T.
template <typename T> __device__ __forceinline__ uint32_t scale_codes(uint32_t codes, uint32_t scale);
template <> __device__ __forceinline__ uint32_t scale_codes<__nv_bfloat16>(uint32_t codes, uint32_t scale) {
  const __nv_bfloat162 r = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&codes),
                                   *reinterpret_cast<const __nv_bfloat162*>(&scale));
  return *reinterpret_cast<const uint32_t*>(&r);
}
template <> __device__ __forceinline__ uint32_t scale_codes<__half>(uint32_t codes, uint32_t scale) {
  const __half2 r = __hmul2(*reinterpret_cast<const __half2*>(&codes), *reinterpret_cast<const __half2*>(&scale));
  return *reinterpret_cast<const uint32_t*>(&r);
}

// The second half of a k split: out = the slices' f32 partial outputs
// ([split_k][m][n]) summed in slice order (deterministic), + bias, rounded.
template <typename T>
__global__ void __launch_bounds__(256) sum_k_slices_kernel(const float* partial, int split_k, int64_t mn, int64_t n,
                                                         const T* bias, T* out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < mn; i += int64_t(gridDim.x) * blockDim.x) {
    float v = partial[i];
    for (int s = 1; s < split_k; ++s) v += partial[int64_t(s) * mn + i];
    if (bias) v += to_float(bias[i % n]);
    out[i] = from_float<T>(v);
  }
}

// The f32 partial outputs of a k split ([split_k][m][n], stream-ordered
// workspace; nullptr without a split) and, after the split kernel, their sum
// into p.out with the bias; the workspace is freed on the stream.
inline float* allocate_k_slices(const Params& p, int split_k, cudaStream_t stream) {
  float* partial = nullptr;
  if (split_k > 1) LOWBIT_CUDA_CHECK(cudaMallocAsync(&partial, size_t(split_k) * p.m * p.n * 4, stream));
  return partial;
}
template <typename T>
void finish_k_slices(const Params& p, float* partial, int split_k, cudaStream_t stream) {
  if (!partial) return;
  const int64_t mn = int64_t(p.m) * p.n;
  const int64_t blocks = (mn + 255) / 256 < 4096 ? (mn + 255) / 256 : 4096;
  sum_k_slices_kernel<T><<<unsigned(blocks), 256, 0, stream>>>(partial, split_k, mn, p.n,
                                                               static_cast<const T*>(p.bias), static_cast<T*>(p.out));
  LOWBIT_CUDA_CHECK_LAUNCH();
  LOWBIT_CUDA_CHECK(cudaFreeAsync(partial, stream));
}

// 16 bytes of shared memory at a shared-window address (a staged row or x
// fragment).
__device__ __forceinline__ uint4 load_shared16(uint32_t address) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(address));
  return v;
}

// 32-bit word i of a 16-byte load.
__device__ __forceinline__ uint32_t word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

}  // namespace lowbit::ops::cuda::fused4
