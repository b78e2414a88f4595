// Many short parallel_for jobs back to back, as one-token decoding issues
// them: every chunk runs exactly once per job and no job waits forever.
#include <atomic>

#include "lowbit/core/thread_pool.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

TEST(ParallelFor, ShortJobsBackToBack) {
  std::vector<std::atomic<int>> hits(64);
  for (int job = 0; job < 20000; ++job) {
    const size_t n = 2 + size_t(job % 60);
    parallel_for(0, n, 1, [&](size_t lo, size_t hi) {
      for (size_t i = lo; i < hi; ++i) {
        volatile float sink = 0.0f;  // a little work, so that both threads take chunks
        for (int k = 0; k < 300; ++k) sink = sink + float(k);
        hits[i].fetch_add(1);
      }
    });
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].exchange(0), 1) << "job " << job << " chunk " << i;
  }
}

}  // namespace
}  // namespace lowbit
