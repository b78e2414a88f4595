// GPU optimizer step on 100M parameters: AdamW with 8-bit state (the fused
// kernel), 32-bit state and paged 8-bit state, against a device-to-device copy
// of the same number of bytes in the same run. Timed with CUDA events after
// warm-up; prints the bandwidth each reaches.
//
// Bytes per parameter, AdamW 8-bit: gradient 4 read, parameter 4 read + 4
// written, two 1-byte states read and written (4): 16 B (absmax: 2/256 x 4 x 2).
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <random>

#include "lowbit/train/optim/optimizer.h"
#include "support/cuda_events.h"

namespace {

using lowbit::Device;
using lowbit::DType;
using lowbit::Tensor;
using namespace lowbit::train;

constexpr int64_t kParams = 100'000'000;

void check(cudaError_t e) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(e));
    std::abort();
  }
}

Tensor random_on_gpu(int64_t n, float scale, uint32_t seed) {
  Tensor h = Tensor::empty({n}, DType::F32);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  for (float& v : h.span<float>()) v = normal(rng);
  return h.to(Device::cuda(0));
}

void BM_DeviceCopy(benchmark::State& state) {
  // Same bytes as one AdamW 8-bit step: 8 B read + 8 B written per parameter.
  const size_t bytes = size_t(kParams) * 8;
  void *src = nullptr, *dst = nullptr;
  check(cudaMalloc(&src, bytes));
  check(cudaMalloc(&dst, bytes));
  check(cudaMemset(src, 1, bytes));
  lowbit::bench::time_with_events(state, [&] { check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); }, 5);
  state.counters["GB_per_s"] = benchmark::Counter(2.0 * bytes / 1e9 * double(state.iterations()),
                                                  benchmark::Counter::kIsRate);
  check(cudaFree(src));
  check(cudaFree(dst));
}

void BM_AdamWStep(benchmark::State& state) {
  const int bits = int(state.range(0));
  const bool paged = state.range(1) != 0;
  OptimizerConfig config = OptimizerConfig::defaults(OptimizerKind::AdamW, bits);
  config.paged = paged;
  Tensor p = random_on_gpu(kParams, 0.1f, 1);
  Tensor g = random_on_gpu(kParams, 1e-2f, 2);
  Optimizer opt(config);
  opt.add(p);
  lowbit::bench::time_with_events(state, [&] { opt.step(std::span<const Tensor>(&g, 1)); }, 5);
  const double bytes = double(kParams) * (12.0 + (bits == 8 ? 4.0 + 16.0 / 256 : 16.0));
  state.counters["GB_per_s"] = benchmark::Counter(bytes / 1e9 * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["state_bytes_per_param"] = double(opt.state_bytes()) / double(kParams);
  state.SetLabel(std::string(bits == 8 ? "8-bit" : "32-bit") + (paged ? " paged" : ""));
}

BENCHMARK(BM_DeviceCopy)->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_AdamWStep)->Args({8, 0})->Args({32, 0})->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_AdamWStep)->Args({8, 1})->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);

}  // namespace

int main(int argc, char** argv) { return lowbit::bench::run_gpu_benchmarks(argc, argv, "bench_optim_cuda_bench"); }
