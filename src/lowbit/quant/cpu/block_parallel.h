// Splits a blockwise-quantized tensor into runs of whole blocks for the
// thread pool, so that every chunk owns its absmax entries and whole bytes of
// packed output (block sizes are even).
#pragma once

#include <algorithm>
#include <cstdint>

#include "lowbit/core/thread_pool.h"

namespace lowbit::quant::cpu {

// Elements per chunk: large enough that pool dispatch (a few microseconds)
// stays under a few percent of the work.
inline constexpr int64_t kElementsPerChunk = 1 << 16;

// fn(first_element, end_element, first_block) for consecutive runs of blocks.
template <typename Fn>
void for_block_runs(int64_t n, int blocksize, Fn&& fn) {
  if (n <= 0) return;
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  const int64_t grain = std::max<int64_t>(1, kElementsPerChunk / blocksize);
  parallel_for(0, size_t(blocks), size_t(grain), [&](size_t b0, size_t b1) {
    const int64_t lo = int64_t(b0) * blocksize;
    const int64_t hi = std::min<int64_t>(n, int64_t(b1) * blocksize);
    fn(lo, hi, int64_t(b0));
  });
}

}  // namespace lowbit::quant::cpu
