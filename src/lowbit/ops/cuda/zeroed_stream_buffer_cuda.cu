#include "ops/cuda/zeroed_stream_buffer_cuda.h"

#include <map>
#include <tuple>

#include "lowbit/core/cuda_check.h"

namespace lowbit::ops::cuda {
namespace {

struct Buffer {
  std::mutex mutex;
  void* data = nullptr;
  size_t bytes = 0;
};

}  // namespace

ZeroedStreamBuffer::Lease ZeroedStreamBuffer::get(cudaStream_t stream, ZeroedBufferUse use, size_t bytes,
                                                  void* capture_scratch) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  LOWBIT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) {
    LOWBIT_CUDA_CHECK(cudaMemsetAsync(capture_scratch, 0, bytes, stream));
    return Lease{{}, capture_scratch};
  }
  int device = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&device));
  static std::mutex map_mutex;
  static std::map<std::tuple<int, cudaStream_t, ZeroedBufferUse>, Buffer> buffers;  // nodes never move
  Buffer* b = nullptr;
  {
    const std::lock_guard<std::mutex> lock(map_mutex);
    b = &buffers[{device, stream, use}];
  }
  Lease lease{std::unique_lock<std::mutex>(b->mutex), nullptr};
  if (b->bytes < bytes) {
    if (b->data) LOWBIT_CUDA_CHECK(cudaFreeAsync(b->data, stream));
    b->data = nullptr;
    b->bytes = 0;
    LOWBIT_CUDA_CHECK(cudaMallocAsync(&b->data, bytes, stream));
    LOWBIT_CUDA_CHECK(cudaMemsetAsync(b->data, 0, bytes, stream));
    b->bytes = bytes;
  }
  lease.data = b->data;
  return lease;
}

}  // namespace lowbit::ops::cuda
