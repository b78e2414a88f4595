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
// rows along k. k: a multiple of 128.
void stream_read_cluster_pattern(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink,
                                 cudaStream_t stream);

// Floors for layouts and pipelines not built yet (docs/cuda.md, "What is
// left"): what they would cost is measured before they are written.
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
// (k % 256 != 0).
bool stream_read_bulk_ring(const uint8_t* packed, const float* absmax, int64_t n, int64_t k, uint32_t* sink,
                           cudaStream_t stream);

}  // namespace lowbit::bench
