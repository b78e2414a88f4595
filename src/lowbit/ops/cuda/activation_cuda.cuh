// SwiGLU's element as every CUDA path computes it (ops::swiglu, the fused
// 4-bit GEMV and the wgmma GEMM's epilogue), so that the fused kernels give
// the bits of the ops in turn. Include from .cu files only.
#pragma once

#include <cuda_runtime.h>

#include "ops/cuda/reduce_cuda.h"

namespace lowbit::ops::cuda {

// silu(gate) * up with gate and up already rounded to T: silu is rounded to
// T before the product (PyTorch's silu(gate) * up in 16 bits); the caller
// rounds the product.
template <typename T>
__device__ __forceinline__ float swiglu_of(float gate, float up) {
  return __fmul_rn(round_to<T>(__fdiv_rn(gate, __fadd_rn(1.0f, expf(-gate)))), up);
}

}  // namespace lowbit::ops::cuda
