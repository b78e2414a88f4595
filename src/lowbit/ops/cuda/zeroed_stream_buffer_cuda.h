// Device buffers kept zero-filled per stream from call to call, for kernels
// that coordinate through counters or flags: the kernels that use one leave
// it zeroed when they end, so a call needs no memset before its first kernel
// (a memset is a launch of its own that also keeps the kernel after it from
// starting early).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <mutex>

namespace lowbit::ops::cuda {

// Who a buffer serves: each has its own buffer on each stream.
enum class ZeroedBufferUse { kInt8Outliers, kStreamKFlags, kSplitCounters };

class ZeroedStreamBuffer {
 public:
  // A stream's buffer, held (locked) until the caller's kernels are queued,
  // so that calls from several host threads on one stream queue one after the
  // other instead of interleaving on the shared state.
  struct Lease {
    std::unique_lock<std::mutex> lock;
    void* data = nullptr;
  };
  // At least `bytes` zeroed bytes on `stream` (the current device), grown on
  // the stream itself; held until the program exits. While the stream is
  // being captured into a graph, `capture_scratch` instead (`bytes` of the
  // caller's stream-ordered scratch), zeroed on the stream: a graph replayed
  // on another stream must not share the eager stream's state.
  static Lease get(cudaStream_t stream, ZeroedBufferUse use, size_t bytes, void* capture_scratch);
};

}  // namespace lowbit::ops::cuda
