// 4-bit quantization on the GPU: NF4 of a bf16 weight of Llama-2-70B's MLP
// shape (8192 x 28672, 470 MB), against a device-to-device copy of the same
// input in the same run. Prints GB/s of input and the ratio to the copy's
// time. The data (470 MB in, 147 MB out) is far beyond the 50 MB L2, so
// every call streams from memory.
//
// Bytes moved by quantization: 2 per element read, 0.5 + 4/64 written.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <random>

#include "lowbit/quant/blockwise.h"
#include "quant/cuda/kernels.h"
#include "support/cuda_events.h"

namespace {

using lowbit::Device;
using lowbit::DType;
using lowbit::Tensor;
using namespace lowbit::quant;

constexpr int64_t kRows = 8192, kCols = 28672, kElems = kRows * kCols;
constexpr int kBlock = 64;
double copy_seconds = 0;  // per call, from BM_DeviceCopy (runs first)

void check(cudaError_t e) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(e));
    std::abort();
  }
}

const Tensor& weight_on_gpu() {
  static const Tensor w = [] {
    Tensor h = Tensor::empty({kRows, kCols}, DType::F32);
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (float& v : h.span<float>()) v = normal(rng);
    return h.cast(DType::BF16).to(Device::cuda(0));
  }();
  return w;
}

// Seconds per call; adds GB/s of input and the ratio to the copy's time.
template <typename Fn>
double time_and_count(benchmark::State& state, Fn&& fn) {
  const double per_call = lowbit::bench::time_with_events(state, fn);
  state.counters["input_GB_per_s"] = double(kElems) * 2 / per_call / 1e9;
  if (copy_seconds > 0) state.counters["x_copy_time"] = per_call / copy_seconds;
  return per_call;
}

void BM_DeviceCopy(benchmark::State& state) {
  const size_t bytes = size_t(kElems) * 2;
  const Tensor& w = weight_on_gpu();
  void* dst = nullptr;
  check(cudaMalloc(&dst, bytes));
  copy_seconds = time_and_count(state, [&] {
    check(cudaMemcpyAsync(dst, w.raw_data(), bytes, cudaMemcpyDeviceToDevice));
  });
  state.counters["read_plus_write_GB_per_s"] = 2.0 * double(bytes) / copy_seconds / 1e9;
  check(cudaFree(dst));
}
BENCHMARK(BM_DeviceCopy)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(50);

void BM_QuantizeNF4(benchmark::State& state) {
  const Tensor& w = weight_on_gpu();
  uint8_t* packed = nullptr;
  float* absmax = nullptr;
  check(cudaMalloc(&packed, size_t(kElems) / 2));
  check(cudaMalloc(&absmax, size_t(kElems / kBlock) * 4));
  time_and_count(state, [&] {
    cuda::quantize_4bit(DType::BF16, w.raw_data(), kElems, QuantType::NF4, kBlock, packed, absmax);
  });
  check(cudaFree(packed));
  check(cudaFree(absmax));
}
BENCHMARK(BM_QuantizeNF4)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(50);

// The Tensor API with double quantization: output allocation, the nested
// quantization of the absmax and its mean on the host included.
void BM_QuantizeNF4DoubleQuantTensor(benchmark::State& state) {
  const Tensor& w = weight_on_gpu();
  time_and_count(state, [&] {
    QuantState s;
    benchmark::DoNotOptimize(quantize_4bit(w, QuantType::NF4, kBlock, true, s));
  });
}
BENCHMARK(BM_QuantizeNF4DoubleQuantTensor)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(20);

void BM_DequantizeNF4(benchmark::State& state) {
  const Tensor& w = weight_on_gpu();
  QuantState s;
  const Tensor packed = quantize_4bit(w, QuantType::NF4, kBlock, false, s);
  void* out = nullptr;
  check(cudaMalloc(&out, size_t(kElems) * 2));
  time_and_count(state, [&] {
    cuda::dequantize_4bit(DType::BF16, packed.data<uint8_t>(), s.absmax.data<float>(), kElems, QuantType::NF4, kBlock,
                          out);
  });
  check(cudaFree(out));
}
BENCHMARK(BM_DequantizeNF4)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(50);

}  // namespace

int main(int argc, char** argv) { return lowbit::bench::run_gpu_benchmarks(argc, argv, "bench_quant_cuda_bench"); }
