// Timing GPU work inside a Google Benchmark loop: CUDA events around each
// call (after warm-up), reported as manual time. Benchmarks using it register
// with ->UseManualTime().
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include "lowbit/core/cuda_check.h"
#include "support/gpu_check.h"

namespace lowbit::bench {

// Returns the mean seconds per call.
template <typename Fn>
double time_with_events(benchmark::State& state, Fn&& fn, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) fn();
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  LOWBIT_CUDA_CHECK(cudaEventCreate(&start));
  LOWBIT_CUDA_CHECK(cudaEventCreate(&stop));
  double total = 0;
  for (auto _ : state) {
    LOWBIT_CUDA_CHECK(cudaEventRecord(start));
    fn();
    LOWBIT_CUDA_CHECK(cudaEventRecord(stop));
    LOWBIT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    LOWBIT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms / 1e3);
    total += ms / 1e3;
  }
  LOWBIT_CUDA_CHECK(cudaEventDestroy(start));
  LOWBIT_CUDA_CHECK(cudaEventDestroy(stop));
  return state.iterations() > 0 ? total / double(state.iterations()) : 0.0;
}

// BENCHMARK_MAIN's body behind gpu_available (gpu_check.h, which stays free of
// Google Benchmark for the programs that do not link it).
inline int run_gpu_benchmarks(int argc, char** argv, const char* program) {
  if (!gpu_available(program)) return 1;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace lowbit::bench
