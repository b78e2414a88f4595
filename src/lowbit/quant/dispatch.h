// Turns a runtime float dtype into one template instantiation of a kernel;
// the error for CUDA tensors in builds without the CUDA kernels.
#pragma once

#include <string_view>

#include "lowbit/core/error.h"
#include "lowbit/core/half.h"

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

}  // namespace lowbit::quant
