// Internal bridge to the CUDA runtime, so that core's .cc files need no CUDA
// headers. Implemented in cuda/runtime_cuda.cu, or by stubs that throw when
// lowbit is built without CUDA.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace lowbit::detail {

// What to tell a user whose GPU cannot run this build's kernels: `device`
// (its index, name and compute capability), the build's architectures as
// nvcc lists them (__CUDA_ARCH_LIST__, e.g. "900" or "800,900") and the
// runtime's reason.
std::string cuda_kernels_unavailable_message(int device, std::string_view name, int major, int minor,
                                             std::string_view arch_list, std::string_view cause);

int cuda_count();
// Free and total bytes of a device's memory (cudaMemGetInfo: every process's
// allocations and the CUDA contexts count as used).
struct CudaMemoryInfo {
  size_t free = 0, total = 0;
};
CudaMemoryInfo cuda_memory_info(int device);
// Streaming multiprocessors of the calling thread's current device (asked of
// the runtime once a device), for kernels that size their grids to the GPU.
int cuda_multiprocessors();
// Makes `device` the calling thread's current device: the op front ends call
// it before their CUDA bodies, so that kernels run where their tensors are.
void cuda_use_device(int device);
// Throws Error naming the device, the size and the free memory when the
// device cannot hold `bytes`.
void* cuda_malloc(size_t bytes, int device);
void cuda_free(void* ptr, int device);
void* cuda_malloc_host(size_t bytes);
void cuda_free_host(void* ptr);
// kind: 0 host->host, 1 host->device, 2 device->host, 3 device->device
void cuda_copy(void* dst, const void* src, size_t bytes, int kind);
void cuda_memset(void* dst, int value, size_t bytes, int device);

}  // namespace lowbit::detail
