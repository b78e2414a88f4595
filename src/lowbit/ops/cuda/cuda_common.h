// Small device helpers shared by the CUDA op files (include from .cu only).
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <array>
#include <cstdint>
#include <string>
#include <utility>

#include "core/cuda/per_device.h"
#include "core/cuda_runtime.h"
#include "lowbit/core/cuda_check.h"
#include "lowbit/core/dtype.h"
#include "lowbit/core/stream.h"

namespace lowbit::ops::cuda {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }

// 16 bytes read once (weights): not kept in L1, so that what every warp
// rereads (activations) stays there.
__device__ __forceinline__ uint4 load_streaming16(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared without registers; src_bytes 0 fills zeros
// (rows past m, k past its end). No L2 eviction hint: CUDA 13's ptxas
// miscompiles cp.async with a fractional cache policy (an illegal
// instruction on the H200).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }
__device__ __forceinline__ void store_shared_u32(uint32_t dst, uint32_t v) {
  asm volatile("st.shared.u32 [%0], %1;" ::"r"(dst), "r"(v));
}

// Calls fn(T{}) with the device type of a float dtype.
template <typename Fn>
void dispatch_device_float(DType dtype, const char* what, Fn&& fn) {
  switch (dtype) {
    case DType::F32: fn(float{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    default: throw_error(std::string(what) + ": expected an f32, bf16 or f16 tensor, got " + std::string(dtype_name(dtype)));
  }
}

// The calling thread's current stream (core/stream.h), where ops queue work.
inline cudaStream_t current_stream() { return static_cast<cudaStream_t>(current_cuda_stream()); }

// Kernels launched with launch_dependent may start while the previous kernel
// on the stream drains (programmatic dependent launch): their launch and
// prologue overlap its tail, ~1 us a kernel boundary in a decoding step. Such
// a kernel calls wait_for_previous_grid() before it reads anything the
// previous kernels wrote (a no-op when launched plainly). CUDA graphs keep
// the dependency.
__device__ __forceinline__ void wait_for_previous_grid() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

// Lets the next programmatic dependent on the stream launch before this
// kernel ends: its blocks take the SM slots that this grid's blocks free and
// run their part before wait_for_previous_grid during this kernel's tail.
// Only for grids whose blocks are all resident from the start (persistent):
// waiting dependents must not hold slots that this grid's later blocks need.
__device__ __forceinline__ void allow_dependent_launch() { asm volatile("griddepcontrol.launch_dependents;"); }

// The launch attributes the kernels use.
inline cudaLaunchAttribute programmatic_attribute() {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  return attr;
}
// Thread-block clusters of `blocks` blocks along x.
inline cudaLaunchAttribute cluster_attribute(int blocks) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = unsigned(blocks);
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  return attr;
}

// A launch with N attributes (cudaLaunchKernelEx).
template <size_t N, typename... Params, typename... Args>
void launch_with(const std::array<cudaLaunchAttribute, N>& attrs, void (*kernel)(Params...), dim3 grid, dim3 block,
                 size_t shared_bytes, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = shared_bytes;
  cfg.stream = stream;
  cfg.attrs = const_cast<cudaLaunchAttribute*>(attrs.data());
  cfg.numAttrs = unsigned(N);
  LOWBIT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

template <typename... Params, typename... Args>
void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                      Args&&... args) {
  launch_with(std::array{programmatic_attribute()}, kernel, grid, block, shared_bytes, stream,
              std::forward<Args>(args)...);
}

// A cooperative launch: every block of the grid resident at once (the grid
// must fit the GPU), so blocks may wait for one another.
template <typename... Params, typename... Args>
void launch_cooperative(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                        Args&&... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeCooperative;
  attr.val.cooperative = 1;
  launch_with(std::array{attr}, kernel, grid, block, shared_bytes, stream, std::forward<Args>(args)...);
}

// A programmatic dependent (launch_dependent) in thread-block clusters of
// `cluster_blocks` blocks along x: the blocks of a cluster are resident
// together, so they may wait for one another whatever else holds the GPU.
template <typename... Params, typename... Args>
void launch_cluster_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                              cudaStream_t stream, int cluster_blocks, Args&&... args) {
  launch_with(std::array{programmatic_attribute(), cluster_attribute(cluster_blocks)}, kernel, grid, block,
              shared_bytes, stream, std::forward<Args>(args)...);
}

// Streaming multiprocessors of the current device.
inline int multiprocessors() { return ::lowbit::detail::cuda_multiprocessors(); }

using ::lowbit::detail::PerDevice;

// Raises kKernel's dynamic shared-memory limit to `bytes` on the current
// device (once a device).
template <auto kKernel>
void allow_shared_memory(int bytes) {
  static PerDevice<bool> raised;
  raised.get([&] {
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return true;
  });
}

// Clusters of `cluster_blocks` (1, 2, 4 or 8) blocks of kKernel that the
// current device holds at once, with `threads` threads and `smem` bytes of
// shared memory a block (the same at every call for a kernel): a cluster
// takes SMs of one GPC, so this can be fewer than the SMs / cluster_blocks.
// Asked once a device for every size.
template <auto kKernel>
int max_active_clusters(int cluster_blocks, int threads, int smem) {
  allow_shared_memory<kKernel>(smem);
  static PerDevice<std::array<int, 9>> per_device;
  const auto counts = per_device.get([&] {
    std::array<int, 9> c{};
    for (int size = 1; size <= 8; size *= 2) {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(unsigned(size), unsigned(multiprocessors()));
      cfg.blockDim = dim3(unsigned(threads));
      cfg.dynamicSmemBytes = size_t(smem);
      cudaLaunchAttribute attr = cluster_attribute(size);
      cfg.attrs = &attr;
      cfg.numAttrs = 1;
      int clusters = 0;
      LOWBIT_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, kKernel, &cfg));
      c[size] = clusters;
    }
    return c;
  });
  return cluster_blocks >= 1 && cluster_blocks <= 8 ? counts[cluster_blocks] : 0;
}

// One cuBLAS handle per host thread and device, created on first use.
cublasHandle_t cublas_handle();

void check_cublas(cublasStatus_t status, const char* what);

}  // namespace lowbit::ops::cuda
