// A process-wide pool of worker threads for CPU kernels.
#pragma once

#include <cstddef>
#include <functional>

namespace lowbit {

// Threads used by parallel_for; defaults to the machine's cores.
int num_threads();
void set_num_threads(int n);

// Splits [begin, end) into chunks of at least `grain` items and runs
// fn(chunk_begin, chunk_end) on the pool, returning when all are done.
// Runs inline when the range is small or when called from a worker.
// The first exception thrown by a chunk is rethrown here.
void parallel_for(size_t begin, size_t end, size_t grain,
                  const std::function<void(size_t, size_t)>& fn);

}  // namespace lowbit
