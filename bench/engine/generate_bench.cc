// Generation speed of shakespeare-llama (4.2M parameters) on the CPU, one
// token at a time after a short prompt, for each way of loading it.
// Run: build/bench/bench_generate_bench. Needs ../shared/models (or
// $LOWBIT_SHARED/models).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "lowbit/engine/generate.h"
#include "lowbit/engine/model_loader.h"

namespace lowbit {
namespace {

std::filesystem::path model_dir() {
  const char* shared = std::getenv("LOWBIT_SHARED");
  // Default: ../shared beside the checkout (this file is bench/engine/ in it).
  const auto beside = std::filesystem::path(__FILE__).parent_path() / "../../../shared";
  return (shared ? std::filesystem::path(shared) : beside).lexically_normal() / "models/shakespeare-llama";
}

engine::LoadOptions variant(int64_t index, std::string& label) {
  using Kind = engine::QuantizeOnLoad::Kind;
  switch (index) {
    case 0: label = "f32"; return {.dtype = DType::F32};
    case 1: label = "bf16"; return {.dtype = DType::BF16};
    case 2: label = "int8 (f16, threshold 6)"; return {.dtype = DType::F16, .quantize = engine::QuantizeOnLoad{.kind = Kind::Int8}};
    default:
      label = "nf4 (bf16, double quant)";
      return {.dtype = DType::BF16, .quantize = engine::QuantizeOnLoad{.kind = Kind::NF4, .double_quant = true}};
  }
}

void BM_generate(benchmark::State& state) {
  std::string label;
  const auto model = engine::load_model(model_dir(), variant(state.range(0), label));
  const std::vector<int32_t> prompt = {0, 52, 43, 50, 46, 9};
  engine::GenerationOptions options;
  options.max_new_tokens = 128;
  int64_t tokens = 0;
  double seconds = 0.0;
  for (auto _ : state) {
    const auto result = engine::generate(*model, prompt, options);
    tokens += int64_t(result.tokens.size()) - 1;
    seconds += result.decode_seconds;
  }
  state.SetLabel(label);
  state.counters["decode_tokens/s"] = double(tokens) / seconds;
}

BENCHMARK(BM_generate)->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace lowbit

BENCHMARK_MAIN();
