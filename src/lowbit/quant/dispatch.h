// Turns a runtime float dtype into one template instantiation of a kernel;
// runs an op's CPU or CUDA branch by the tensors' device (the error for CUDA
// tensors in builds without the CUDA kernels).
#pragma once

#include <string_view>

#include "lowbit/core/device.h"
#include "lowbit/core/error.h"
#include "lowbit/core/half.h"

// LOWBIT_QUANT_CUDA(statements): an op's CUDA branch for on_device below,
// the statements in a build with the CUDA quantization kernels, an empty
// lambda otherwise (on_device then reports that the build lacks them).
#if defined(LOWBIT_WITH_CUDA) && defined(LOWBIT_WITH_CUDA_QUANT)
#include "core/cuda_runtime.h"
#include "quant/cuda/kernels.h"
#define LOWBIT_QUANT_HAS_CUDA 1
#define LOWBIT_QUANT_CUDA(...) [&] { __VA_ARGS__ }
#else
#define LOWBIT_QUANT_HAS_CUDA 0
#define LOWBIT_QUANT_CUDA(...) [] {}
#endif

namespace lowbit::quant {

// Calls fn(T{}) with T = float, f16 or bf16; other dtypes throw an Error
// naming `what` (the op) and the dtypes it takes.
template <typename Fn>
decltype(auto) dispatch_float(DType dtype, std::string_view what, Fn&& fn) {
  switch (dtype) {
    case DType::F32: return fn(float{});
    case DType::F16: return fn(f16{});
    case DType::BF16: return fn(bf16{});
    default: fail("{}: expected a f32, f16 or bf16 tensor, got {}", what, dtype_name(dtype));
  }
}

// Thrown by an op given a CUDA tensor in a build without the CUDA kernels.
[[noreturn, maybe_unused]] inline void no_cuda(std::string_view op) {
  fail("{}: the tensor is on CUDA, but CUDA quantization kernels are not available in this build; "
       "move the tensor to the CPU first",
       op);
}

// Runs `cpu` for a host tensor and `cuda` (LOWBIT_QUANT_CUDA) for a CUDA
// tensor with its device made current; without the CUDA kernels a CUDA
// tensor gets no_cuda(op).
template <typename CpuFn, typename CudaFn>
void on_device(std::string_view op, Device device, CpuFn&& cpu, [[maybe_unused]] CudaFn&& cuda) {
  if (device.is_cpu()) return cpu();
#if LOWBIT_QUANT_HAS_CUDA
  lowbit::detail::cuda_use_device(device.index);
  cuda();
#else
  no_cuda(op);
#endif
}

}  // namespace lowbit::quant
