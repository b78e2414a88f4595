// Error checking for CUDA runtime and cuBLAS calls (include from .cu files only).
#pragma once

#include <cuda_runtime.h>

#include "lowbit/core/error.h"

#define LOWBIT_CUDA_CHECK(expr)                                                                  \
  do {                                                                                           \
    const cudaError_t lowbit_err_ = (expr);                                                      \
    if (lowbit_err_ != cudaSuccess)                                                              \
      ::lowbit::throw_cuda_error(cudaGetErrorString(lowbit_err_), #expr, __FILE__, __LINE__);    \
  } while (0)

// Checks the launch that just happened.
#define LOWBIT_CUDA_CHECK_LAUNCH() LOWBIT_CUDA_CHECK(cudaGetLastError())
