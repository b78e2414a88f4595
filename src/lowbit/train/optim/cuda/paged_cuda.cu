// Paged optimizer state: the state stays in pinned host memory and visits the
// GPU in chunks, through two device buffers, so the GPU holds 2 chunks of
// state whatever the model's size (no managed memory, which can oversubscribe
// a shared GPU).
//
// Streams: copies on their own stream, the update on a compute stream.
//   copy:    H2D(0) H2D(1) [wait update 0] D2H(0) H2D(2) [wait update 1] D2H(1) ...
//   compute:        [wait H2D 0] update(0) [wait H2D 1] update(1) ...
// so loading chunk c+1 overlaps the update of chunk c. A chunk is a multiple
// of 256 values, so each absmax block stays within one chunk.
#include <cuda_runtime.h>

#include <algorithm>

#include "lowbit/core/cuda_check.h"
#include "train/optim/kernels.h"

namespace lowbit::train::optim::detail::cuda {

struct PagedStager::Buffers {
  cudaStream_t copy = nullptr, compute = nullptr;
  cudaEvent_t loaded[2], updated[2], start, done;
  void* state[2][3] = {};
  float* absmax[2][3] = {};
};

PagedStager::PagedStager(int64_t chunk_elements, int num_states, int bits)
    : chunk_(chunk_elements), num_states_(num_states), bits_(bits), b_(new Buffers) {
  LOWBIT_CUDA_CHECK(cudaStreamCreateWithFlags(&b_->copy, cudaStreamNonBlocking));
  LOWBIT_CUDA_CHECK(cudaStreamCreateWithFlags(&b_->compute, cudaStreamNonBlocking));
  for (int s = 0; s < 2; ++s) {
    LOWBIT_CUDA_CHECK(cudaEventCreateWithFlags(&b_->loaded[s], cudaEventDisableTiming));
    LOWBIT_CUDA_CHECK(cudaEventCreateWithFlags(&b_->updated[s], cudaEventDisableTiming));
    for (int k = 0; k < num_states_; ++k) {
      LOWBIT_CUDA_CHECK(cudaMalloc(&b_->state[s][k], size_t(chunk_) * (bits_ == 8 ? 1 : 4)));
      if (bits_ == 8) LOWBIT_CUDA_CHECK(cudaMalloc(&b_->absmax[s][k], size_t(chunk_ / kQuantBlock) * 4));
    }
  }
  LOWBIT_CUDA_CHECK(cudaEventCreateWithFlags(&b_->start, cudaEventDisableTiming));
  LOWBIT_CUDA_CHECK(cudaEventCreateWithFlags(&b_->done, cudaEventDisableTiming));
}

PagedStager::~PagedStager() {
  cudaStreamSynchronize(b_->copy);
  cudaStreamSynchronize(b_->compute);
  for (int s = 0; s < 2; ++s) {
    cudaEventDestroy(b_->loaded[s]);
    cudaEventDestroy(b_->updated[s]);
    for (int k = 0; k < num_states_; ++k) {
      cudaFree(b_->state[s][k]);
      if (b_->absmax[s][k]) cudaFree(b_->absmax[s][k]);
    }
  }
  cudaEventDestroy(b_->start);
  cudaEventDestroy(b_->done);
  cudaStreamDestroy(b_->copy);
  cudaStreamDestroy(b_->compute);
  delete b_;
}

size_t PagedStager::device_bytes() const {
  return 2 * size_t(num_states_) * (size_t(chunk_) * (bits_ == 8 ? 1 : 4) + (bits_ == 8 ? size_t(chunk_ / kQuantBlock) * 4 : 0));
}

void PagedStager::update(Rule rule, const StepParams& params, const TensorStep& host) {
  const int states = rule_states(rule);
  const int64_t chunks = (host.n + chunk_ - 1) / chunk_;
  const size_t elem = bits_ == 8 ? 1 : 4;
  // p and g come from work queued on the legacy default stream.
  LOWBIT_CUDA_CHECK(cudaEventRecord(b_->start, 0));
  LOWBIT_CUDA_CHECK(cudaStreamWaitEvent(b_->compute, b_->start, 0));
  auto host_state = [&](int k, int64_t off) -> void* {
    return bits_ == 8 ? static_cast<void*>(host.codes[k] + off) : static_cast<void*>(host.state32[k] + off);
  };
  auto load = [&](int64_t c) {
    const int slot = int(c % 2);
    const int64_t off = c * chunk_, len = std::min<int64_t>(chunk_, host.n - off);
    for (int k = 0; k < states; ++k) {
      LOWBIT_CUDA_CHECK(cudaMemcpyAsync(b_->state[slot][k], host_state(k, off), size_t(len) * elem,
                                        cudaMemcpyHostToDevice, b_->copy));
      if (bits_ == 8)
        LOWBIT_CUDA_CHECK(cudaMemcpyAsync(b_->absmax[slot][k], host.absmax[k] + off / kQuantBlock,
                                          size_t((len + kQuantBlock - 1) / kQuantBlock) * 4, cudaMemcpyHostToDevice,
                                          b_->copy));
    }
    LOWBIT_CUDA_CHECK(cudaEventRecord(b_->loaded[slot], b_->copy));
  };
  if (chunks > 0) load(0);
  for (int64_t c = 0; c < chunks; ++c) {
    const int slot = int(c % 2);
    const int64_t off = c * chunk_, len = std::min<int64_t>(chunk_, host.n - off);
    TensorStep t = host;
    t.p = host.p + off;
    t.g = host.g + off;
    t.n = len;
    for (int k = 0; k < states; ++k) {
      if (bits_ == 8) {
        t.codes[k] = static_cast<uint8_t*>(b_->state[slot][k]);
        t.absmax[k] = b_->absmax[slot][k];
      } else {
        t.state32[k] = static_cast<float*>(b_->state[slot][k]);
      }
    }
    LOWBIT_CUDA_CHECK(cudaStreamWaitEvent(b_->compute, b_->loaded[slot], 0));
    cuda::update(rule, params, t, b_->compute);
    LOWBIT_CUDA_CHECK(cudaEventRecord(b_->updated[slot], b_->compute));
    if (c + 1 < chunks) load(c + 1);
    LOWBIT_CUDA_CHECK(cudaStreamWaitEvent(b_->copy, b_->updated[slot], 0));
    for (int k = 0; k < states; ++k) {
      LOWBIT_CUDA_CHECK(cudaMemcpyAsync(host_state(k, off), b_->state[slot][k], size_t(len) * elem,
                                        cudaMemcpyDeviceToHost, b_->copy));
      if (bits_ == 8)
        LOWBIT_CUDA_CHECK(cudaMemcpyAsync(host.absmax[k] + off / kQuantBlock, b_->absmax[slot][k],
                                          size_t((len + kQuantBlock - 1) / kQuantBlock) * 4, cudaMemcpyDeviceToHost,
                                          b_->copy));
    }
  }
  // Later work on the default stream sees the new parameters; the host state
  // is complete when this returns (save_state may read it).
  LOWBIT_CUDA_CHECK(cudaEventRecord(b_->done, b_->compute));
  LOWBIT_CUDA_CHECK(cudaStreamWaitEvent(0, b_->done, 0));
  LOWBIT_CUDA_CHECK(cudaStreamSynchronize(b_->copy));
}

}  // namespace lowbit::train::optim::detail::cuda
