// Quantize / dequantize a 4096 x 14336 bf16 matrix (one Llama-3-8B MLP
// weight) on the CPU, next to memcpy of the same matrix in the same run.
//
// Counters: GB/s = (bytes read + bytes written) / time (packed codes and
// absmax included); memcpy reads and writes the bf16 matrix once each.
// `vs_memcpy` is the op's GB/s over memcpy's, measured in this process (the
// first benchmark). Outputs are allocated per call, as the ops do.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <random>
#include <vector>

#include "lowbit/core/half.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/kernels.h"

namespace {

using namespace lowbit;
using namespace lowbit::quant;

constexpr int64_t kRows = 4096, kCols = 14336, kN = kRows * kCols;

const Tensor& weight() {
  static const Tensor w = [] {
    Tensor t = Tensor::empty({kRows, kCols}, DType::BF16);
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    bf16* p = t.data<bf16>();
    for (int64_t i = 0; i < kN; ++i) p[i] = f32_to_bf16(dist(rng));
    return t;
  }();
  return w;
}

// memcpy's rate in this process, for the ratios (BM_Memcpy runs first).
double g_memcpy_gbps = 0;

// Runs `op` for the benchmark's iterations, timing the loop itself so that
// the rate is available here for the ratio counter.
template <typename Op>
void run(benchmark::State& state, double bytes, Op&& op, bool is_memcpy = false) {
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    op();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double gbps = bytes * double(state.iterations()) / seconds / 1e9;
  if (is_memcpy) g_memcpy_gbps = gbps;
  state.SetBytesProcessed(int64_t(bytes) * int64_t(state.iterations()));
  state.counters["GB/s"] = gbps;
  if (g_memcpy_gbps > 0) state.counters["vs_memcpy"] = gbps / g_memcpy_gbps;
}

void BM_Memcpy(benchmark::State& state) {
  const Tensor& w = weight();
  Tensor out = Tensor::empty(w.shape(), w.dtype());
  const size_t bytes = w.nbytes();
  run(state, 2.0 * double(bytes), [&] {
    std::memcpy(out.raw_data(), w.raw_data(), bytes);
    benchmark::ClobberMemory();
  }, true);
}

void BM_QuantizeNF4DoubleQuant(benchmark::State& state) {
  const Tensor& w = weight();
  QuantState qs;
  run(state, double(w.nbytes()) + double(kN / 2) + double(kN / 64),
      [&] { benchmark::DoNotOptimize(quantize_4bit(w, QuantType::NF4, 64, true, qs)); });
}

void BM_DequantizeNF4DoubleQuant(benchmark::State& state) {
  const Tensor& w = weight();
  QuantState qs;
  const Tensor packed = quantize_4bit(w, QuantType::NF4, 64, true, qs);
  run(state, double(kN / 2) + double(kN / 64) + double(w.nbytes()),
      [&] { benchmark::DoNotOptimize(dequantize_4bit(packed, qs)); });
}

// The same work into buffers allocated once (raw kernels for quantize, the
// *_into ops for dequantize): what a loader or GEMV that reuses its buffers
// sees; the allocating ops above also pay for fresh output pages.
void BM_QuantizeNF4DoubleQuantKernel(benchmark::State& state) {
  const Tensor& w = weight();
  std::vector<uint8_t> packed(kN / 2), qabsmax(kN / 64);
  std::vector<float> absmax(kN / 64), nested(kN / 64 / 256 + 1);
  const float* code = dynamic_map_signed().data();
  run(state, double(w.nbytes()) + double(kN / 2) + double(kN / 64), [&] {
    cpu::quantize_4bit(w.data<bf16>(), kN, QuantType::NF4, 64, packed.data(), absmax.data());
    cpu::quantize_nested_absmax(absmax.data(), kN / 64, code, 256, qabsmax.data(), nested.data());
  });
}

void BM_DequantizeNF4DoubleQuantInto(benchmark::State& state) {
  const Tensor& w = weight();
  QuantState qs;
  const Tensor packed = quantize_4bit(w, QuantType::NF4, 64, true, qs);
  Tensor out = Tensor::empty(w.shape(), DType::BF16);
  run(state, double(kN / 2) + double(kN / 64) + double(w.nbytes()), [&] { dequantize_4bit_into(packed, qs, out); });
}

void BM_QuantizeDynamic8Kernel(benchmark::State& state) {
  const Tensor& w = weight();
  std::vector<uint8_t> codes(kN);
  std::vector<float> absmax(kN / 4096);
  run(state, double(w.nbytes()) + double(kN) + double(kN / 4096 * 4), [&] {
    cpu::quantize_dynamic8(w.data<bf16>(), kN, dynamic_map_signed().data(), 4096, codes.data(), absmax.data());
  });
}

void BM_DequantizeDynamic8Into(benchmark::State& state) {
  const Tensor& w = weight();
  QuantState qs;
  const Tensor codes = quantize_blockwise(w, 4096, false, qs);
  Tensor out = Tensor::empty(w.shape(), DType::BF16);
  run(state, double(kN) + double(kN / 4096 * 4) + double(w.nbytes()), [&] { dequantize_blockwise_into(codes, qs, out); });
}

void BM_QuantizeDynamic8(benchmark::State& state) {
  const Tensor& w = weight();
  QuantState qs;
  run(state, double(w.nbytes()) + double(kN) + double(kN / 4096 * 4),
      [&] { benchmark::DoNotOptimize(quantize_blockwise(w, 4096, false, qs)); });
}

void BM_DequantizeDynamic8(benchmark::State& state) {
  const Tensor& w = weight();
  QuantState qs;
  const Tensor codes = quantize_blockwise(w, 4096, false, qs);
  run(state, double(kN) + double(kN / 4096 * 4) + double(w.nbytes()),
      [&] { benchmark::DoNotOptimize(dequantize_blockwise(codes, qs)); });
}

BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_QuantizeNF4DoubleQuant)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_DequantizeNF4DoubleQuant)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_QuantizeNF4DoubleQuantKernel)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_DequantizeNF4DoubleQuantInto)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_QuantizeDynamic8Kernel)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_DequantizeDynamic8Into)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_QuantizeDynamic8)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_DequantizeDynamic8)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
