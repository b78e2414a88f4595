#include <cuda_runtime.h>

#include <string>

#include "core/cuda/per_device.h"
#include "core/cuda_runtime.h"
#include "lowbit/core/bytes.h"
#include "lowbit/core/cuda_check.h"
#include "lowbit/core/error.h"

namespace lowbit::detail {
namespace {

#define LOWBIT_STRINGIFY_LIST(...) #__VA_ARGS__
#define LOWBIT_ARCH_LIST(list) LOWBIT_STRINGIFY_LIST(list)

__global__ void probe_kernel() {}

// Once a device: whether this build holds code the device can run (sm_90
// cubins and compute_90 PTX run on 9.x and newer, not on 8.x), so that the
// first allocation names the device and the build instead of the first
// launch failing with "no kernel image is available". Throws until it passes.
// `device` is current.
void require_cuda_kernels(int device) {
  static PerDevice<bool> checked;
  checked.get(device, [device] {
    cudaFuncAttributes attributes{};
    const cudaError_t err = cudaFuncGetAttributes(&attributes, probe_kernel);
    if (err == cudaSuccess) return true;
    cudaGetLastError();
    cudaDeviceProp prop{};
    LOWBIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    throw_error(cuda_kernels_unavailable_message(device, prop.name, prop.major, prop.minor,
                                                 LOWBIT_ARCH_LIST(__CUDA_ARCH_LIST__), cudaGetErrorString(err)));
  });
}

}  // namespace

int cuda_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

int cuda_multiprocessors() {
  static PerDevice<int> counts;
  return counts.get([] {
    int device = 0, count = 0;
    LOWBIT_CUDA_CHECK(cudaGetDevice(&device));
    LOWBIT_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    return count;
  });
}

void cuda_use_device(int device) {
  int current = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) LOWBIT_CUDA_CHECK(cudaSetDevice(device));
}

CudaMemoryInfo cuda_memory_info(int device) {
  int previous = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&previous));
  LOWBIT_CUDA_CHECK(cudaSetDevice(device));
  CudaMemoryInfo info;
  const cudaError_t status = cudaMemGetInfo(&info.free, &info.total);
  LOWBIT_CUDA_CHECK(cudaSetDevice(previous));
  LOWBIT_CUDA_CHECK(status);
  return info;
}

void* cuda_malloc(size_t bytes, int device) {
  LOWBIT_CUDA_CHECK(cudaSetDevice(device));
  require_cuda_kernels(device);
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw_error("out of GPU memory on cuda:" + std::to_string(device) + ": asked for " + bytes_text(bytes) + " (" +
                std::to_string(bytes) + " bytes), " + bytes_text(free_b) + " of " + bytes_text(total_b) +
                " free (" + cudaGetErrorString(err) + ")");
  }
  return p;
}

void cuda_free(void* ptr, int device) {
  cudaSetDevice(device);
  cudaFree(ptr);
}

void* cuda_malloc_host(size_t bytes) {
  void* p = nullptr;
  LOWBIT_CUDA_CHECK(cudaMallocHost(&p, bytes));
  return p;
}

void cuda_free_host(void* ptr) { cudaFreeHost(ptr); }

void cuda_copy(void* dst, const void* src, size_t bytes, int kind) {
  static constexpr cudaMemcpyKind kinds[] = {cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                             cudaMemcpyDeviceToDevice};
  LOWBIT_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kinds[kind]));
}

void cuda_memset(void* dst, int value, size_t bytes, int device) {
  LOWBIT_CUDA_CHECK(cudaSetDevice(device));
  LOWBIT_CUDA_CHECK(cudaMemset(dst, value, bytes));
}

}  // namespace lowbit::detail
