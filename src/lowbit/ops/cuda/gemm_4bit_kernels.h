// Host launchers of the fused 4-bit kernels, called by gemm_4bit
// (linear_cuda.cu), which picks one by batch and shape.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "lowbit/core/dtype.h"
#include "ops/cuda/linear_cuda.h"

namespace lowbit::ops::cuda::fused4 {

// CUDA-core GEMV (gemv_4bit_cuda.cu): m <= kGemvMaxBatch, bf16/f16, k % 32 == 0,
// power-of-two blocksize >= 32, packed and x 16-byte aligned.
constexpr int64_t kGemvMaxBatch = 4;
bool gemv_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x);
// split_k: k slices per row (power of two <= 16); 0 picks one from the shape.
void gemv(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out, int split_k,
          cudaStream_t stream);

// The one activation row of a fused GEMV (a decoding step's fusions,
// ops::linear_4bit_fused): each block makes x in shared memory from `src` (x
// itself, RMSNorm(src) with norm_weight, or SwiGLU of src = [gate | up]), with
// the bits of ops::rms_norm / ops::swiglu; the output y is stored, added to
// `out` as ops::add adds it (y rounded first), or taken as [gate | up] rows
// whose ops::swiglu goes to out[n / 2] (a warp computes gate row j and up row
// n / 2 + j together).
struct GemvInput {
  enum Kind { kPlain, kRmsNorm, kSwiGLU };
  enum Output { kStore, kAdd, kSwiGLUOut };
  Kind kind = kPlain;
  const void* norm_weight = nullptr;  // kRmsNorm: [k] in x's dtype
  float eps = 0.0f;
  Output output = kStore;
};
// Rows of up to this many values are made in shared memory (36 KB of bf16)
// by every launch shape and so by the fused GEMVs; the plain one-row GEMV's
// one-block shape stages rows twice as long.
constexpr int64_t kGemvStagedMaxK = 18432;
// One row (m = 1), what gemv takes, k <= kGemvStagedMaxK; src 16-byte aligned;
// kSwiGLUOut needs an even n.
bool gemv_fused_supported(DType dtype, const Packed4bit& w, const void* src);
void gemv_fused(DType dtype, const void* src, const Packed4bit& w, const void* bias, const GemvInput& in, void* out,
                cudaStream_t stream);
// Benchmarks and tests: false keeps plain one-row GEMVs reading the row
// through L1 (by default they stage it in shared memory where they can).
void set_gemv_staging(bool on);
// Benchmarks and tests: the one-row GEMV's warps x blocks an SM where the
// row is staged: 12 x 2 (-1), 10 x 2 (1), 20 x 1 (2), or as its cost model
// picks (0).
void set_gemv_launch_shape(int shape);

// Tensor-core kernel (gemm_4bit_cuda.cu): m <= kMmaMaxBatch, bf16/f16,
// k % 128 == 0, power-of-two blocksize >= 32, x and packed 16-byte aligned.
constexpr int64_t kMmaMaxBatch = 16;
bool mma_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x);
// split_k: k slices per 16-row tile (power of two <= 8); 0 picks one.
void mma(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out, int split_k,
         cudaStream_t stream);
// Benchmarks and tests: 9-16 rows with x as the mma's A operand (1), the
// same with x arranged for it first (2), the weights (-1), or the default (0).
void set_mma_x_operand(int mode);

// Tensor-core kernel with x staged in shared memory and k cut across the
// blocks of a cluster (gemm_4bit_cluster_cuda.cu): m <= kClusterMaxBatch,
// bf16/f16, k % 128 == 0, power-of-two blocksize >= 32, x and packed 16-byte
// aligned, n * k < 2^32, and a cut of k and the rows that fits shared memory.
constexpr int64_t kClusterMaxBatch = 16;
bool cluster_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x);
void cluster(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out,
             cudaStream_t stream);
// Benchmarks and tests: the blocks of a cluster (k slices: 1, 2, 4 or 8), or
// 0 to let the cost model pick.
void set_cluster_k_slices(int ks);
// Benchmarks and tests: 8-row tiles a warp's unit (4 or 3), or 0 to let
// the cost model pick.
void set_cluster_unit_tiles(int tiles);

// Tensor-core kernel for wider batches (gemm_4bit_wide_cuda.cu): kMmaMaxBatch
// < m <= kWideMaxBatch, bf16/f16, blocksize a power of two >= 64 dividing k,
// x 16- and packed 8-byte aligned.
constexpr int64_t kWideMaxBatch = 64;
bool wide_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x);
void wide(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out,
          cudaStream_t stream);

// Tiled tensor-core GEMM through a shared-memory pipeline (gemm_4bit_large_cuda.cu):
// m <= kLargeMaxBatch, bf16/f16, k % 32 == 0, power-of-two blocksize >= 32, x
// and packed 16-byte aligned. split_k > 1 sums f32 partials in a second kernel
// (a stream-ordered workspace); 0 picks one from the shape.
constexpr int64_t kLargeMaxBatch = 1 << 20;
bool large_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x);
void large(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out, int split_k,
           cudaStream_t stream);
// Benchmarks: force the block tile (1-5: 128 x 16, 128 x 32, 128 x 64, 128 x
// 128, 64 x 128 weight rows x batch rows); 0 picks it from m.
void set_large_tile(int tile);

// Hopper wgmma GEMM (gemm_4bit_wgmma_sm90a.cu): compute capability 9.0,
// bf16/f16, k % 64 == 0, power-of-two blocksize >= 64, x and packed 16-byte
// aligned; any m. split_k > 1 sums f32 partials in a second kernel (a
// stream-ordered workspace); 0 picks the split and the token tile.
bool wgmma_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x);
// swiglu: the weight's rows are n / 2 gate rows, then the up rows, and out
// [m, n / 2] takes ops::swiglu of the product (the bits of the two ops in
// turn); wgmma_swiglu_supported says where (m >= kWgmmaSwiGLUMinRows, n / 2
// a multiple of 8, out 16-byte aligned); split_k must be 0 or 1 there.
// kWgmmaSwiGLUMinRows is also the narrowest token tile built with it.
constexpr int64_t kWgmmaSwiGLUMinRows = 128;
bool wgmma_swiglu_supported(DType dtype, const Packed4bit& w, int64_t m, const void* x, const void* out);
void wgmma(DType dtype, const void* x, int64_t m, const Packed4bit& w, const void* bias, void* out, int split_k,
           cudaStream_t stream, bool swiglu = false);
// Benchmarks: the token tile and k split the cost model picks for m rows.
std::string wgmma_choice(const Packed4bit& w, int64_t m, void* out);
// Benchmarks and tests: tokens a block tile (8 to 256; 0 picks one from the
// shape).
void set_wgmma_tokens(int tokens);
// Benchmarks and tests: 1 splits the work stream-K wherever the token tile
// allows it (64 or 128 tokens), -1 never, 0 lets the cost model pick.
void set_wgmma_stream_k(int mode);
// Benchmarks and tests: 2 or 4 forces that k split summed in the kernel
// (256-token tiles) where it fits, -1 never, 0 lets the cost model pick.
void set_wgmma_fused_split(int mode);

}  // namespace lowbit::ops::cuda::fused4
