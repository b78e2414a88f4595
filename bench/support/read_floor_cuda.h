// A floor for kernels that stream their weights once: the time a grid takes
// to do nothing but read the same bytes. A kernel's time over this floor is
// what its decoding, sums and launch shape cost; the floor's own time over
// bytes / peak bandwidth is what any kernel of that size pays for its ramp.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace lowbit::bench {

// Reads `bytes_a` bytes at `a` and `bytes_b` at `b` (each rounded down to 16
// bytes) with 16-byte loads that skip L1, every SM slot busy, launched as a
// programmatic dependent whose reads may start while the previous kernel
// drains: the most a reading kernel can overlap. `sink` gets one word only
// if the data hold an impossible pattern (so that the loads stay).
void stream_read(const void* a, size_t bytes_a, const void* b, size_t bytes_b, uint32_t* sink, cudaStream_t stream);

// Reads an n x k 4-bit weight (k / 2 bytes a row) and its f32 absmax (one a
// 64-weight block) the way the one-row GEMV does, without its arithmetic:
// groups of 4 rows, a warp step = 16 bytes of each row a lane (4 x 512 bytes
// a warp, 1024 weights of each row) and each row's absmax, two steps in
// flight a warp, 12 warps x 2 blocks an SM, groups dealt to the warps as the
// GEMV deals them with its k unsplit. Its time over stream_read's is what
// that pattern and depth cost; the GEMV's time over its own, the arithmetic.
// k: a multiple of 32.
void stream_read_gemv_pattern(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink,
                              cudaStream_t stream);
// The same warps and depth in the cluster kernel's pattern: a warp step =
// 16 bytes of row 8j + g a lane (g = lane / 4, j < 4), the four lanes of a
// row reading 64 contiguous bytes, so 32 rows x 64 bytes; a warp walks its 32
// rows along its k slice (k is cut where the units are fewer than the warps,
// as the cluster kernel cuts it). k: a multiple of 128.
void stream_read_cluster_pattern(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink,
                                 cudaStream_t stream);

// Floors for layouts and pipelines not built (docs/cuda.md, "What is left,
// and two plans measured and set aside"): what they would cost, measured
// before anyone writes them.
//
// The cluster pattern over a band-interleaved weight: each 8-row band of the
// codes stored round by round (the 8 rows' 64-byte pieces of a 128-weight
// round, in lane order), so that a warp's tile load is 512 contiguous bytes.
// The bytes are read where that layout would put them; the absmax stays
// row-major. k: a multiple of 128.
void stream_read_cluster_banded(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink,
                                cudaStream_t stream);
// One block an SM streams its contiguous share of the rows (codes, then the
// matching absmax) with bulk copies into a ring of shared-memory stages, one
// producer lane and consumer warps that only fold what has landed. Returns
// false (nothing launched) where the shares are not 16-byte aligned
// (k % 256 != 0). shape: stages x code bytes a stage, 0: 7 x 16 KB,
// 1: 12 x 16 KB, 2: 24 x 8 KB, 3: 6 x 32 KB.
constexpr int kBulkRingShapes = 4;
bool stream_read_bulk_ring(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, int shape,
                           uint32_t* sink, cudaStream_t stream);

// A ring of stages of whole 4-row groups (about 16 KB of codes) with the
// one-row GEMV's per-byte arithmetic on what lands (table lookups, HFMA2 with
// x from shared memory shared by a group's 4 rows, absmax scaling), no
// per-row sums or output: stream and decode together. Returns stages * 1000 +
// KB of codes a stage * 10 + consumer teams, 0 (nothing launched) where
// k % 256 != 0, n % 4 != 0 or two stages do not fit beside the table and x.
int stream_gemv_bulk_ring(const uint8_t* packed, const float* absmax, const float* code, const void* x, int64_t n,
                           int64_t k, uint32_t* sink, cudaStream_t stream);

}  // namespace lowbit::bench
