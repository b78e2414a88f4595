// CPU optimizer step: 8-bit against 32-bit state, 10M parameters.
// Reports steps/s (items_per_second is parameters/s) and the bytes/s moved.
#include <benchmark/benchmark.h>

#include <random>

#include "lowbit/train/optim/optimizer.h"

namespace {

using lowbit::DType;
using lowbit::Tensor;
using namespace lowbit::train;

void BM_OptimizerStepCpu(benchmark::State& state) {
  const auto kind = OptimizerKind(state.range(0));
  const int bits = int(state.range(1));
  const int64_t n = 10'000'000;
  Tensor p = Tensor::empty({n}, DType::F32), g = Tensor::empty({n}, DType::F32);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1e-2f);
  for (float& v : p.span<float>()) v = normal(rng);
  for (float& v : g.span<float>()) v = normal(rng);
  Optimizer opt(OptimizerConfig::defaults(kind, bits));
  opt.add(p);
  opt.step(std::span<const Tensor>(&g, 1));
  for (auto _ : state) opt.step(std::span<const Tensor>(&g, 1));
  const double states = kind == OptimizerKind::AdamW ? 2 : 1;
  const double bytes_per_param = 12 + states * (bits == 8 ? 2 : 8);
  state.counters["steps_per_s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["bytes_per_s"] =
      benchmark::Counter(double(state.iterations()) * n * bytes_per_param, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(optimizer_name(kind)) + (bits == 8 ? " 8-bit" : " 32-bit"));
}

BENCHMARK(BM_OptimizerStepCpu)
    ->Args({int(OptimizerKind::AdamW), 8})
    ->Args({int(OptimizerKind::AdamW), 32})
    ->Args({int(OptimizerKind::Lion), 8})
    ->Args({int(OptimizerKind::Lion), 32})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
