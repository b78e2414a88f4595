// GPU benchmarks on a machine without a usable GPU: one line that says so and
// exit status 1, not an uncaught CUDA error.
#pragma once

#include <benchmark/benchmark.h>
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

// BENCHMARK_MAIN's body behind that check.
inline int run_gpu_benchmarks(int argc, char** argv, const char* program) {
  if (!gpu_available(program)) return 1;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace lowbit::bench
