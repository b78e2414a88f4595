// One-token linear layers of Llama-7B's MLP shapes (weight [11008, 4096] as in
// gate/up_proj and [4096, 11008] as in down_proj): the f32 GEMV is the
// baseline; NF4 (bf16 and f32 compute) and LLM.int8 GEMVs report their
// speed-up over it (x_vs_f32) and the weight bandwidth they reach.
// Run: build/bench/bench_linear_gemv_bench (each shape's baseline runs first).
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <random>

#include "lowbit/ops/linear.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/int8.h"

namespace lowbit {
namespace {

using ShapeKey = std::pair<int64_t, int64_t>;  // out, in
std::map<ShapeKey, double> f32_seconds;         // set by the baseline, read by the others

const Tensor& weight_f32(ShapeKey s) {
  static std::map<ShapeKey, Tensor> cache;
  if (!cache.count(s)) {
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    std::vector<float> v(static_cast<size_t>(s.first * s.second));
    for (auto& x : v) x = dist(rng);
    cache[s] = Tensor::from_vector(v, {s.first, s.second});
  }
  return cache[s];
}

Tensor input(int64_t in, DType dtype) {
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(in));
  for (auto& x : v) x = dist(rng);
  return Tensor::from_vector(v, {1, in}).cast(dtype);
}

ShapeKey shape_of(const benchmark::State& state) { return {state.range(0), state.range(1)}; }

void report(benchmark::State& state, double weight_bytes, double seconds) {
  state.counters["weight_GB/s"] =
      benchmark::Counter(weight_bytes * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  const double base = f32_seconds[shape_of(state)];
  if (base > 0.0 && seconds > 0.0) state.counters["x_vs_f32"] = base / seconds;
}

template <typename Fn>
double timed(benchmark::State& state, Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
         double(std::max<int64_t>(1, int64_t(state.iterations())));
}

void BM_gemv_f32(benchmark::State& state) {
  const Tensor& w = weight_f32(shape_of(state));
  const Tensor x = input(w.dim(1), DType::F32);
  Tensor out = Tensor::empty({1, w.dim(0)}, DType::F32);
  const double s = timed(state, [&] { ops::linear(x, w, Tensor{}, out); });
  f32_seconds[shape_of(state)] = s;
  report(state, double(w.nbytes()), 0.0);
}

void BM_gemv_nf4(benchmark::State& state) {
  const DType compute = state.range(2) ? DType::BF16 : DType::F32;
  const Tensor w = compute == DType::BF16 ? weight_f32(shape_of(state)).cast(DType::BF16) : weight_f32(shape_of(state));
  quant::QuantState qs;
  ops::Blockwise4bitWeight q;
  q.packed = quant::quantize_4bit(w, quant::QuantType::NF4, 64, true, qs);
  q.absmax = quant::dequantize_nested_absmax(qs);
  q.code = qs.code;
  q.dtype = w.dtype();
  q.out_features = w.dim(0);
  q.in_features = w.dim(1);
  const Tensor x = input(w.dim(1), compute);
  Tensor out = Tensor::empty({1, w.dim(0)}, compute);
  const double s = timed(state, [&] { ops::linear_4bit(x, q, Tensor{}, out); });
  state.SetLabel(compute == DType::BF16 ? "nf4, bf16 compute" : "nf4, f32 compute");
  report(state, double(q.packed.nbytes() + q.absmax.nbytes()), s);
}

void BM_gemv_int8(benchmark::State& state) {
  const quant::Int8RowwiseWeight q = quant::quantize_int8_rowwise(weight_f32(shape_of(state)).cast(DType::F16));
  const float threshold = float(state.range(2));
  const Tensor x = input(q.codes.dim(1), DType::F16);
  Tensor out = Tensor::empty({1, q.codes.dim(0)}, DType::F16);
  const double s = timed(state, [&] { ops::linear_int8(x, q.codes, q.scb, Tensor{}, threshold, out); });
  state.SetLabel(threshold > 0 ? "int8, threshold 6 (f16)" : "int8, threshold 0 (f16)");
  report(state, double(q.codes.nbytes() + q.scb.nbytes()), s);
}

void shapes(benchmark::internal::Benchmark* b, std::vector<int64_t> third) {
  for (const auto& [out, in] : {std::pair<int64_t, int64_t>{11008, 4096}, {4096, 11008}})
    for (int64_t t : third) b->Args({out, in, t});
}

BENCHMARK(BM_gemv_f32)->Apply([](auto* b) { shapes(b, {0}); })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_gemv_nf4)->Apply([](auto* b) { shapes(b, {1, 0}); })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_gemv_int8)->Apply([](auto* b) { shapes(b, {0, 6}); })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

}  // namespace
}  // namespace lowbit

BENCHMARK_MAIN();
