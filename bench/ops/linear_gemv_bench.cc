// One-token linear layers of Llama-7B's MLP shape (out 11008, in 4096): the
// f32 GEMV (OpenBLAS) is the baseline; NF4 (bf16 and f32 compute) and LLM.int8
// GEMVs report their speed-up over it and the weight bandwidth they reach.
// Run: build/bench/bench_linear_gemv (the baseline runs first).
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <random>

#include "lowbit/ops/linear.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/int8.h"

namespace lowbit {
namespace {

constexpr int64_t kOut = 11008, kIn = 4096;
double f32_seconds = 0.0;  // set by the baseline, read by the others

const Tensor& weight_f32() {
  static const Tensor w = [] {
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    std::vector<float> v(static_cast<size_t>(kOut * kIn));
    for (auto& x : v) x = dist(rng);
    return Tensor::from_vector(v, {kOut, kIn});
  }();
  return w;
}

Tensor input(DType dtype) {
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(kIn));
  for (auto& x : v) x = dist(rng);
  return Tensor::from_vector(v, {1, kIn}).cast(dtype);
}

void report(benchmark::State& state, double weight_bytes, bool baseline) {
  state.counters["weight_GB/s"] =
      benchmark::Counter(weight_bytes * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  if (!baseline && f32_seconds > 0.0)
    state.counters["x_vs_f32"] = benchmark::Counter(f32_seconds * double(state.iterations()),
                                                    benchmark::Counter::kIsRate);
}

void BM_gemv_f32(benchmark::State& state) {
  const Tensor& w = weight_f32();
  const Tensor x = input(DType::F32);
  Tensor out = Tensor::empty({1, kOut}, DType::F32);
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) ops::linear(x, w, Tensor{}, out);
  f32_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
                double(state.iterations());
  report(state, double(w.nbytes()), true);
}

void BM_gemv_nf4(benchmark::State& state) {
  const DType compute = state.range(0) ? DType::BF16 : DType::F32;
  static std::map<DType, ops::Blockwise4bitWeight> cache;
  if (!cache.count(compute)) {
    const Tensor w = compute == DType::BF16 ? weight_f32().cast(DType::BF16) : weight_f32();
    quant::QuantState qs;
    ops::Blockwise4bitWeight q;
    q.packed = quant::quantize_4bit(w, quant::QuantType::NF4, 64, true, qs);
    q.absmax = quant::dequantize_nested_absmax(qs);
    q.code = qs.code;
    q.dtype = w.dtype();
    q.out_features = kOut;
    q.in_features = kIn;
    cache[compute] = q;
  }
  const auto& q = cache[compute];
  const Tensor x = input(compute);
  Tensor out = Tensor::empty({1, kOut}, compute);
  for (auto _ : state) ops::linear_4bit(x, q, Tensor{}, out);
  state.SetLabel(compute == DType::BF16 ? "nf4, bf16 compute" : "nf4, f32 compute");
  report(state, double(q.packed.nbytes() + q.absmax.nbytes()), false);
}

void BM_gemv_int8(benchmark::State& state) {
  static const quant::Int8RowwiseWeight q = quant::quantize_int8_rowwise(weight_f32().cast(DType::F16));
  const float threshold = float(state.range(0));
  const Tensor x = input(DType::F16);
  Tensor out = Tensor::empty({1, kOut}, DType::F16);
  for (auto _ : state) ops::linear_int8(x, q.codes, q.scb, Tensor{}, threshold, out);
  state.SetLabel(threshold > 0 ? "int8, threshold 6 (f16)" : "int8, threshold 0 (f16)");
  report(state, double(q.codes.nbytes() + q.scb.nbytes()), false);
}

BENCHMARK(BM_gemv_f32)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_gemv_nf4)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_gemv_int8)->Arg(0)->Arg(6)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

}  // namespace
}  // namespace lowbit

BENCHMARK_MAIN();
