#include <cuda_runtime_api.h>

#include <cstdint>

#include "lowbit/core/cuda_check.h"

namespace lowbit::engine::detail {

uint64_t cuda_memory_used(int device) {
  int previous = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&previous));
  LOWBIT_CUDA_CHECK(cudaSetDevice(device));
  size_t free = 0, total = 0;
  const cudaError_t status = cudaMemGetInfo(&free, &total);
  LOWBIT_CUDA_CHECK(cudaSetDevice(previous));
  LOWBIT_CUDA_CHECK(status);
  return uint64_t(total - free);
}

}  // namespace lowbit::engine::detail
