// Tokenizer speed on shakespeare-dev.txt (55,825 bytes): encoding with a cold
// word cache (a fresh tokenizer each time) and a warm one, decoding, and the
// sampler over a 2048- and a 128k-entry vocabulary.
// Run: build/bench/bench_tokenizer_bench. Needs ../shared/models (or
// $LOWBIT_SHARED/models).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "lowbit/engine/sampler.h"
#include "lowbit/io/tokenizer.h"

namespace lowbit {
namespace {

std::filesystem::path models_dir() {
  const char* shared = std::getenv("LOWBIT_SHARED");
  const auto beside = std::filesystem::path(__FILE__).parent_path() / "../../../shared";
  return (shared ? std::filesystem::path(shared) : beside).lexically_normal() / "models";
}

const std::string& dev_text() {
  static const std::string text = [] {
    std::ifstream in(models_dir() / "shakespeare-dev.txt", std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }();
  return text;
}

void BM_encode_cold(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    auto tok = io::load_tokenizer(models_dir() / "shakespeare-llama");
    state.ResumeTiming();
    benchmark::DoNotOptimize(tok->encode(dev_text(), false));
  }
  state.SetBytesProcessed(int64_t(state.iterations() * dev_text().size()));
}
BENCHMARK(BM_encode_cold)->Unit(benchmark::kMillisecond);

void BM_encode_warm(benchmark::State& state) {
  auto tok = io::load_tokenizer(models_dir() / "shakespeare-llama");
  for (auto _ : state) benchmark::DoNotOptimize(tok->encode(dev_text(), false));
  state.SetBytesProcessed(int64_t(state.iterations() * dev_text().size()));
}
BENCHMARK(BM_encode_warm)->Unit(benchmark::kMillisecond);

void BM_encode_sentencepiece(benchmark::State& state) {
  auto tok = io::load_sentencepiece_tokenizer(models_dir() / "spm/shakespeare-spm.model");
  for (auto _ : state) benchmark::DoNotOptimize(tok->encode(dev_text(), false));
  state.SetBytesProcessed(int64_t(state.iterations() * dev_text().size()));
}
BENCHMARK(BM_encode_sentencepiece)->Unit(benchmark::kMillisecond);

void BM_decode(benchmark::State& state) {
  auto tok = io::load_tokenizer(models_dir() / "shakespeare-llama");
  const auto ids = tok->encode(dev_text(), false);
  for (auto _ : state) benchmark::DoNotOptimize(tok->decode(ids, true));
  state.SetBytesProcessed(int64_t(state.iterations() * dev_text().size()));
}
BENCHMARK(BM_decode)->Unit(benchmark::kMillisecond);

void BM_sample(benchmark::State& state) {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(size_t(state.range(0)));
  for (float& x : logits) x = normal(rng);
  const std::vector<int32_t> history(256, 7);
  engine::Sampler sampler({.temperature = 0.8f, .top_k = int(state.range(1)), .top_p = 0.95f,
                           .repetition_penalty = 1.1f, .seed = 1});
  for (auto _ : state) benchmark::DoNotOptimize(sampler.sample(logits, history));
}
BENCHMARK(BM_sample)->Args({2048, 0})->Args({2048, 40})->Args({128256, 0})->Args({128256, 40})->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace lowbit

BENCHMARK_MAIN();
