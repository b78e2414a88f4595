// GPU benchmarks on a machine without a usable GPU: one line that says so and
// exit status 1, not an uncaught CUDA error.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>

namespace lowbit::bench {

// True when a CUDA device can be used; otherwise prints why, naming `program`.
inline bool gpu_available(const char* program) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaSuccess && count > 0) return true;
  std::fprintf(stderr, "%s: needs a CUDA GPU (%s)\n", program,
               e == cudaSuccess ? "no device found" : cudaGetErrorString(e));
  return false;
}

}  // namespace lowbit::bench
