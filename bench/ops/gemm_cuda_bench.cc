// GPU linear kernels against cuBLAS bf16 in the same run.
//
// Method: every kernel runs back to back between two CUDA events, many launches
// after a warm-up, rotating over enough weight copies that the working set is
// more than twice the L2 cache; the median of several such timings is kept.
// A host function holds the stream until all the launches of a timing are
// queued, so that the GPU runs them without waiting on the host between them
// (as a CUDA graph would): the host's time a launch is printed beside.
// Bandwidth counts every byte a kernel must read (weights, absmax, nested
// scales, activations) and write (output). The roofline is the bandwidth that
// cuBLAS' bf16 batch-1 product reaches on the same shape in this run.
// With batch 1, a "read floor" line follows the table: kernels that only read
// the NF4 weight's bytes (sequentially with every SM slot busy, and as the
// GEMV reads them) and the bf16 weight's, the least any kernel of that size
// can take (bench/support/read_floor_cuda.h).
//
//   build/bench/bench_gemm_cuda [--quick | --small | --profile] [--batches 1,16,64] [--shape K N]
//                               [--sweep] [--wgmma-sweep] [--int8-sweep] [--mma-sweep] [--gemv-sweep]
//                               [--cluster-sweep]
//                               [--wgmma-force TOKENS STREAM_K]
//                               [--no-int8] [--swiglu] [--floor-plans]
//
// --sweep times the tiled GEMM's block tiles and k splits at batch 16, 64,
// 256 and 512 and the wgmma GEMM's token tiles and k splits at each of
// --batches; --no-int8 skips LLM.int8; --shape times one shape (in x out);
// --swiglu times the shape as stacked gate and up rows with SwiGLU after the
// product, fused into the 4-bit wgmma GEMM or not; --floor-plans adds read
// floors of layouts and pipelines not built yet (read_floor_cuda.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "lowbit/core/cuda_check.h"
#include "lowbit/core/tensor.h"
#include "lowbit/ops/elementwise.h"
#include "lowbit/quant/formats.h"
#include "ops/cuda/gemm_4bit_kernels.h"
#include "ops/cuda/gemm_int8_cuda.h"
#include "ops/cuda/linear_cuda.h"
#include "support/gpu_check.h"
#include "support/read_floor_cuda.h"

namespace {

using lowbit::DType;
using lowbit::ops::cuda::Packed4bit;

struct Rng {
  uint64_t s = 0x9e3779b97f4a7c15ull;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

// Random bf16 values of magnitude about 2^-7..2^-4, either sign.
void* random_bf16(size_t count, Rng& rng) {
  std::vector<uint16_t> host(count);
  for (size_t i = 0; i < count; i += 4) {
    const uint64_t r = rng.next();
    for (size_t j = 0; j < 4 && i + j < count; ++j) host[i + j] = uint16_t(((r >> (16 * j)) & 0x81ffu) | 0x3c00u);
  }
  void* d = device_alloc(count * 2);
  LOWBIT_CUDA_CHECK(cudaMemcpy(d, host.data(), count * 2, cudaMemcpyHostToDevice));
  return d;
}

void* random_bytes(size_t count, Rng& rng) {
  std::vector<uint8_t> host(count + 8);
  for (size_t i = 0; i < count; i += 8) {
    const uint64_t r = rng.next();
    std::memcpy(host.data() + i, &r, 8);
  }
  void* d = device_alloc(count);
  LOWBIT_CUDA_CHECK(cudaMemcpy(d, host.data(), count, cudaMemcpyHostToDevice));
  return d;
}

float* device_floats(const std::vector<float>& v) {
  auto* d = static_cast<float*>(device_alloc(v.size() * 4));
  LOWBIT_CUDA_CHECK(cudaMemcpy(d, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  return d;
}

std::vector<float> uniform(size_t count, float lo, float hi, Rng& rng) {
  std::vector<float> v(count);
  for (auto& e : v) e = lo + (hi - lo) * float(rng.next() >> 40) / float(1 << 24);
  return v;
}

double g_host_us = 0.0;  // the host's time a launch in the last time_us

// Median microseconds per call of fn(copy index), over `copies` rotating copies.
// The stream's hold: a host function (run by the CUDA runtime's thread, no
// CUDA calls) that returns once the timing's launches are all queued, or
// after a second should a timed op wait for the stream itself (the timing
// would then include that wait, not hang).
std::atomic<bool> g_released{true};
void CUDART_CB hold_stream(void*) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!g_released.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
}

double time_us(int copies, const std::function<void(int)>& fn) {
  for (int i = 0; i < 2 * copies + 4; ++i) fn(i % copies);
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  LOWBIT_CUDA_CHECK(cudaEventCreate(&start));
  LOWBIT_CUDA_CHECK(cudaEventCreate(&stop));
  const int iters = std::max(20, copies * 4);
  std::vector<double> runs;
  for (int r = 0; r < 5; ++r) {
    g_released.store(false, std::memory_order_release);
    LOWBIT_CUDA_CHECK(cudaLaunchHostFunc(nullptr, hold_stream, nullptr));
    LOWBIT_CUDA_CHECK(cudaEventRecord(start));
    const auto host0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) fn(i % copies);
    g_host_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - host0).count() / iters;
    LOWBIT_CUDA_CHECK(cudaEventRecord(stop));
    g_released.store(true, std::memory_order_release);
    LOWBIT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    LOWBIT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    runs.push_back(1000.0 * ms / iters);
  }
  LOWBIT_CUDA_CHECK(cudaEventDestroy(start));
  LOWBIT_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

int copies_for(size_t bytes) {
  constexpr size_t kTarget = 2 * 50 * 1000 * 1000 * 5 / 4;  // 2.5x a 50 MB L2
  return int(std::max<size_t>(2, (kTarget + bytes - 1) / bytes));
}

struct NF4Copies {
  std::vector<Packed4bit> plain, nested;
};

struct Options {
  std::vector<int64_t> batches{1, 2, 3, 4, 8, 16, 32, 64, 256, 512};
  bool sweep = false, wgmma_sweep = false, int8_sweep = false, mma_sweep = false, gemv_sweep = false, int8 = true;
  bool cluster_sweep = false;
  bool swiglu = false;
  bool floor_plans = false;
};

void bench_shape(int64_t k, int64_t n, const Options& opt, Rng& rng) {
  const std::vector<int64_t>& batches = opt.batches;
  const int64_t numel = n * k;
  const int bs = 64;
  const int64_t blocks = numel / bs;
  const size_t bf16_bytes = size_t(numel) * 2;
  const size_t nf4_bytes = size_t(numel) / 2 + size_t(blocks) * 4;
  const size_t nf4dq_bytes = size_t(numel) / 2 + size_t(blocks) + size_t(blocks / 256 + 1) * 4;
  const int dense_copies = copies_for(bf16_bytes), q_copies = copies_for(nf4_bytes);

  std::vector<void*> dense;
  for (int i = 0; i < dense_copies; ++i) dense.push_back(random_bf16(size_t(numel), rng));
  const auto& nf4 = lowbit::quant::nf4_code();
  const float* code = device_floats(std::vector<float>(nf4.begin(), nf4.end()));
  const auto& dyn = lowbit::quant::dynamic_map_signed();
  const float* nested_code = device_floats(std::vector<float>(dyn.begin(), dyn.end()));
  NF4Copies q;
  for (int i = 0; i < q_copies; ++i) {
    Packed4bit p;
    p.packed = static_cast<const uint8_t*>(random_bytes(size_t(numel) / 2, rng));
    p.code = code;
    p.absmax = device_floats(uniform(size_t(blocks), 0.01f, 0.1f, rng));
    p.blocksize = bs;
    p.n = n;
    p.k = k;
    p.weight_dtype = DType::BF16;
    q.plain.push_back(p);
    p.absmax = nullptr;
    p.qabsmax = static_cast<const uint8_t*>(random_bytes(size_t(blocks), rng));
    p.nested_absmax = device_floats(uniform(size_t(blocks / 256 + 1), 0.01f, 0.1f, rng));
    p.nested_code = nested_code;
    p.nested_offset = 0.05f;
    q.nested.push_back(p);
  }
  const int64_t max_m = *std::max_element(batches.begin(), batches.end());
  void* x = random_bf16(size_t(max_m * k), rng);
  void* out = device_alloc(size_t(max_m * n) * 2);

  // The roofline: bytes/us of cuBLAS bf16 at batch 1, timed first whatever
  // the batches asked (every row's share of it needs it); a batch-1 row
  // prints this timing.
  const double dense_one_us = time_us(dense_copies, [&](int i) {
    lowbit::ops::cuda::gemm_dense(DType::BF16, x, 1, dense[i], n, k, nullptr, out);
  });
  const double roofline = (bf16_bytes + double(k + n) * 2) / dense_one_us;
  std::vector<double> dense_us;
  std::printf("\n%lld x %lld (in x out), NF4 blocksize %d: %d bf16 / %d NF4 weight copies rotate\n", (long long)k,
              (long long)n, bs, dense_copies, q_copies);
  std::printf("%6s | %10s %8s | %10s %8s %6s %6s | %10s %6s %6s | %8s %8s %8s %8s %8s %8s %8s %7s\n", "batch",
              "cublas us", "GB/s", "nf4 us", "GB/s", "roof", "x bf16", "nf4dq us", "roof", "x bf16", "gemv us", "mma us",
              "wide us", "large us", "wgmma us", "clust us", "deq us", "path");
  using lowbit::ops::cuda::Gemm4bitPath;
  // One kernel forced (0 when the shape rules it out), then back to auto.
  auto time_path = [&](Gemm4bitPath path, int64_t m, int split_k = 0, bool nested = false) {
    const std::vector<Packed4bit>& w = nested ? q.nested : q.plain;
    lowbit::ops::cuda::set_gemm_4bit_path(path, split_k);
    double t = 0.0;
    if (lowbit::ops::cuda::gemm_4bit_path(DType::BF16, w[0], m, x) == path)
      t = time_us(q_copies, [&](int i) { lowbit::ops::cuda::gemm_4bit(DType::BF16, x, m, w[i], nullptr, out); });
    lowbit::ops::cuda::set_gemm_4bit_path(Gemm4bitPath::kAuto);
    return t;
  };
  for (int64_t m : batches) {
    const double io = double(m * k + m * n) * 2;
    const double t_dense = m == 1 ? dense_one_us : time_us(dense_copies, [&](int i) {
      lowbit::ops::cuda::gemm_dense(DType::BF16, x, m, dense[i], n, k, nullptr, out);
    });
    const double bw_dense = (bf16_bytes + io) / t_dense;
    dense_us.push_back(t_dense);
    const double t_q = time_us(q_copies, [&](int i) {
      lowbit::ops::cuda::gemm_4bit(DType::BF16, x, m, q.plain[i], nullptr, out);
    });
    const double host_q = g_host_us;
    const double t_dq = time_us(q_copies, [&](int i) {
      lowbit::ops::cuda::gemm_4bit(DType::BF16, x, m, q.nested[i], nullptr, out);
    });
    const double t_gemv = time_path(Gemm4bitPath::kGemv, m), t_mma = time_path(Gemm4bitPath::kMma, m),
                 t_wide = time_path(Gemm4bitPath::kMmaWide, m), t_large = time_path(Gemm4bitPath::kLarge, m),
                 t_wgmma = time_path(Gemm4bitPath::kWgmma, m), t_cluster = time_path(Gemm4bitPath::kCluster, m),
                 t_deq = m >= 16 ? time_path(Gemm4bitPath::kDequantize, m) : 0.0;
    const char* path_names[] = {"auto", "gemv", "mma", "wide", "deq", "large", "wgmma", "cluster"};
    const auto path = lowbit::ops::cuda::gemm_4bit_path(DType::BF16, q.plain[0], m, x);
    const double bw_q = (nf4_bytes + io) / t_q, bw_dq = (nf4dq_bytes + io) / t_dq;
    std::printf(
        "%6lld | %10.1f %8.0f | %10.1f %8.0f %5.0f%% %6.2f | %10.1f %5.0f%% %6.2f | %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f "
        "%8.1f %7s host %.1f us\n",
        (long long)m, t_dense, bw_dense / 1000, t_q, bw_q / 1000, 100 * bw_q / roofline, t_dense / t_q, t_dq,
        100 * bw_dq / roofline, t_dense / t_dq, t_gemv, t_mma, t_wide, t_large, t_wgmma, t_cluster, t_deq,
        path_names[int(path)], host_q);
  }
  // The read floor: a kernel that only reads the NF4 (and the bf16) weight's
  // bytes. What the GEMV can reach at batch 1 is bounded by it, not by the
  // roofline alone: at 25 MB its ramp is a large share of its time. (With
  // batch 1 asked for.)
  if (std::find(batches.begin(), batches.end(), int64_t(1)) != batches.end()) {
    auto* sink = static_cast<uint32_t*>(device_alloc(64 * 4));
    const double t_read_q = time_us(q_copies, [&](int i) {
      lowbit::bench::stream_read(q.plain[i].packed, size_t(numel) / 2, q.plain[i].absmax, size_t(blocks) * 4, sink,
                                 nullptr);
    });
    const double t_read_dense =
        time_us(dense_copies, [&](int i) { lowbit::bench::stream_read(dense[i], bf16_bytes, nullptr, 0, sink, nullptr); });
    const double t_read_pattern =
        k % 32 != 0 ? 0.0 : time_us(q_copies, [&](int i) {
          lowbit::bench::stream_read_gemv_pattern(q.plain[i].packed, q.plain[i].absmax, n, k, sink, nullptr);
        });
    const double t_read_cluster =
        k % 128 != 0 ? 0.0 : time_us(q_copies, [&](int i) {
          lowbit::bench::stream_read_cluster_pattern(q.plain[i].packed, q.plain[i].absmax, n, k, sink, nullptr);
        });
    std::printf("read floor: NF4 bytes %.1f us (%.0f%% of roofline, %.0f GB/s), in the GEMV's pattern %.1f us (%.0f "
                "GB/s), in the cluster kernel's %.1f us; bf16 bytes %.1f us (%.0f GB/s; cuBLAS batch 1 %.1f us)\n",
                t_read_q, 100 * nf4_bytes / t_read_q / roofline, nf4_bytes / t_read_q / 1000, t_read_pattern,
                t_read_pattern > 0 ? nf4_bytes / t_read_pattern / 1000 : 0.0, t_read_cluster, t_read_dense,
                bf16_bytes / t_read_dense / 1000, dense_one_us);
    if (opt.floor_plans) {
      // docs/cuda.md, "What is left, and two plans measured and set aside": the
      // cluster pattern over band-interleaved codes (batch 16), bulk copies into
      // a shared ring, bare and with the GEMV's arithmetic (batch 1).
      const double t_banded =
          k % 128 != 0 ? 0.0 : time_us(q_copies, [&](int i) {
            lowbit::bench::stream_read_cluster_banded(q.plain[i].packed, q.plain[i].absmax, n, k, sink, nullptr);
          });
      std::printf("read floor plans: cluster pattern over band-interleaved codes %.1f us; bulk copies into a "
                  "shared ring (7 x 16 KB, 12 x 16 KB, 24 x 8 KB, 6 x 32 KB)",
                  t_banded);
      for (int shape = 0; shape < lowbit::bench::kBulkRingShapes; ++shape)
        std::printf(" %.1f", k % 256 != 0 ? 0.0 : time_us(q_copies, [&](int i) {
          lowbit::bench::stream_read_bulk_ring(q.plain[i].packed, q.plain[i].absmax, n, k, shape, sink, nullptr);
        }));
      int proto_stages = 0;
      const double t_proto = time_us(q_copies, [&](int i) {
        proto_stages = lowbit::bench::stream_gemv_bulk_ring(q.plain[i].packed, q.plain[i].absmax, q.plain[i].code, x,
                                                            n, k, sink, nullptr);
      });
      std::printf(" us; a ring of %d x %d KB (%d teams) with the GEMV's arithmetic %.1f us (0: the shape does not "
                  "allow it)\n",
                  proto_stages / 1000, proto_stages % 1000 / 10, proto_stages % 10, proto_stages > 0 ? t_proto : 0.0);
    }
    cudaFree(sink);
  }
  // The tiled GEMM's block tiles (1-5, 0: chosen) and k splits (0: chosen).
  if (opt.sweep) {
    for (int64_t m : {16, 64, 256, 512}) {
      if (m > max_m) continue;
      std::printf("large m%lld:", (long long)m);
      for (int tile = 0; tile <= 5; ++tile) {
        lowbit::ops::cuda::fused4::set_large_tile(tile);
        std::printf("  t%d", tile);
        for (int ks : {0, 1, 2, 3, 4}) std::printf(" %d: %.1f", ks, time_path(Gemm4bitPath::kLarge, m, ks));
      }
      lowbit::ops::cuda::fused4::set_large_tile(0);
      std::printf(" us\n");
    }
  }
  // The wgmma GEMM's token tiles (0: chosen).
  if (opt.sweep || opt.wgmma_sweep) {
    for (int64_t m : batches) {
      std::printf("wgmma m%lld (chosen: %s):", (long long)m,
                  lowbit::ops::cuda::fused4::wgmma_choice(q.plain[0], m, out).c_str());
      if (m <= 16) {  // double-quantized absmax: the m <= 16 kernel against the wgmma GEMM
        const double t_mma = time_path(Gemm4bitPath::kMma, m, 0, true);
        const double t_wgmma = time_path(Gemm4bitPath::kWgmma, m, 0, true);
        std::printf("  dq: mma %.1f wgmma %.1f", t_mma, t_wgmma);
      }
      for (int tokens : {0, 8, 16, 32, 64, 128, 256}) {
        if (tokens > 8 * m) continue;
        lowbit::ops::cuda::fused4::set_wgmma_stream_k(tokens == 0 ? 0 : -1);  // 0: the choice, stream-K or not
        lowbit::ops::cuda::fused4::set_wgmma_tokens(tokens);
        std::printf("  %d: %.1f", tokens, time_path(Gemm4bitPath::kWgmma, m));
      }
      // Stream-K (sk64 ...).
      lowbit::ops::cuda::fused4::set_wgmma_stream_k(1);
      for (int tokens : {64, 128, 256}) {
        if (tokens > 8 * m) continue;
        lowbit::ops::cuda::fused4::set_wgmma_tokens(tokens);
        std::printf("  sk%d: %.1f", tokens, time_path(Gemm4bitPath::kWgmma, m));
      }
      lowbit::ops::cuda::fused4::set_wgmma_stream_k(-1);
      // A split of 2 or 4 summed in the kernel (fs2 ...; 0 where it does not fit).
      lowbit::ops::cuda::fused4::set_wgmma_tokens(256);
      for (int fs : {2, 4}) {
        if (256 > 8 * m) continue;
        lowbit::ops::cuda::fused4::set_wgmma_fused_split(fs);
        std::printf("  fs%d: %.1f", fs, time_path(Gemm4bitPath::kWgmma, m));
      }
      lowbit::ops::cuda::fused4::set_wgmma_fused_split(-1);
      // Narrow tiles at each k split.
      for (int tokens : {8, 16, 32}) {
        if (tokens > 2 * m || m > 64) continue;
        lowbit::ops::cuda::fused4::set_wgmma_tokens(tokens);
        std::printf("  t%d split", tokens);
        for (int ks : {1, 2, 3, 4, 6, 8}) {
          const double t = time_path(Gemm4bitPath::kWgmma, m, ks);
          std::printf(" %d: %.1f (host %.1f)", ks, t, g_host_us);
        }
      }
      lowbit::ops::cuda::fused4::set_wgmma_tokens(0);
      std::printf("  split");
      for (int ks : {1, 2, 3, 4, 6}) std::printf(" %d: %.1f", ks, time_path(Gemm4bitPath::kWgmma, m, ks));
      lowbit::ops::cuda::fused4::set_wgmma_stream_k(0);
      lowbit::ops::cuda::fused4::set_wgmma_fused_split(0);
      std::printf(" us\n");
    }
  }
  // The shape as stacked gate and up rows: the product then ops::swiglu
  // (cuBLAS bf16, the 4-bit GEMM) against the 4-bit wgmma GEMM with SwiGLU in
  // its epilogue, at each of --batches it takes.
  if (opt.swiglu) {
    using lowbit::Device;
    using lowbit::Tensor;
    Tensor y = Tensor::empty({max_m, n}, DType::BF16, Device::cuda(0));
    Tensor gate = Tensor::empty({max_m, n / 2}, DType::BF16, Device::cuda(0));
    for (int64_t m : batches) {
      if (!lowbit::ops::cuda::fused4::wgmma_swiglu_supported(DType::BF16, q.plain[0], m, x, gate.raw_data())) continue;
      Tensor y_m = y.rows(0, m), gate_m = gate.rows(0, m);
      const double t_dense = time_us(dense_copies, [&](int i) {
        lowbit::ops::cuda::gemm_dense(DType::BF16, x, m, dense[i], n, k, nullptr, y_m.raw_data());
        lowbit::ops::swiglu(y_m, gate_m);
      });
      const double t_q = time_us(q_copies, [&](int i) {
        lowbit::ops::cuda::gemm_4bit(DType::BF16, x, m, q.plain[i], nullptr, y_m.raw_data());
        lowbit::ops::swiglu(y_m, gate_m);
      });
      const double t_fused = time_us(q_copies, [&](int i) {
        lowbit::ops::cuda::fused4::wgmma(DType::BF16, x, m, q.plain[i], nullptr, gate_m.raw_data(), 0, nullptr, true);
      });
      const double t_fused_dq = time_us(q_copies, [&](int i) {
        lowbit::ops::cuda::fused4::wgmma(DType::BF16, x, m, q.nested[i], nullptr, gate_m.raw_data(), 0, nullptr, true);
      });
      std::printf("swiglu m%lld: cublas + swiglu %.1f us, nf4 + swiglu %.1f, nf4 fused %.1f (x bf16 %.2f), nf4-dq "
                  "fused %.1f (x bf16 %.2f)\n",
                  (long long)m, t_dense, t_q, t_fused, t_dense / t_fused, t_fused_dq, t_dense / t_fused_dq);
    }
  }
  // 9-16 rows: the m <= 16 kernel with the weights or x as the mma's A
  // operand, each k split (0: the one it picks).
  if (opt.mma_sweep) {
    for (int64_t m : batches) {
      if (m < 9 || m > 16) continue;
      std::printf("mma m%lld:", (long long)m);
      for (int mode : {-1, 1, 2}) {
        lowbit::ops::cuda::fused4::set_mma_x_operand(mode);
        std::printf("  %s", mode == 2 ? "x arranged" : mode > 0 ? "x as A" : "w as A");
        for (int ks : {0, 1, 2, 4, 8}) std::printf(" %d: %.1f", ks, time_path(Gemm4bitPath::kMma, m, ks));
      }
      lowbit::ops::cuda::fused4::set_mma_x_operand(0);
      std::printf(" us\n");
    }
  }
  // The cluster kernel's k slices (blocks of a cluster; 0: the one it picks)
  // by tiles a unit, plain and double-quantized.
  if (opt.cluster_sweep) {
    for (int64_t m : batches) {
      if (m > lowbit::ops::cuda::fused4::kClusterMaxBatch) continue;
      for (int tiles : {0, 4, 3}) {  // 0: 4 or 3 as the cost model picks
        lowbit::ops::cuda::fused4::set_cluster_unit_tiles(tiles);
        std::printf("cluster m%lld tiles %d:", (long long)m, tiles);
        for (bool nested : {false, true}) {
          std::printf("  %s", nested ? "dq" : "plain");
          for (int ks : {0, 1, 2, 4, 8}) {
            lowbit::ops::cuda::fused4::set_cluster_k_slices(ks);
            std::printf(" %d: %.1f", ks, time_path(Gemm4bitPath::kCluster, m, 0, nested));
          }
        }
        std::printf(" us\n");
      }
      lowbit::ops::cuda::fused4::set_cluster_unit_tiles(0);
      lowbit::ops::cuda::fused4::set_cluster_k_slices(0);
    }
  }
  // The fused kernels' k split (0: the one they pick).
  std::printf("split_k (0 = chosen)  gemv m1:");
  for (int ks : {0, 1, 2, 4, 8, 16}) std::printf(" %d: %.1f", ks, time_path(Gemm4bitPath::kGemv, 1, ks));
  for (int64_t m : {1, 16}) {
    if (m > max_m) continue;  // x holds max_m rows
    std::printf("  mma m%lld:", (long long)m);
    for (int ks : {0, 1, 2, 4, 8}) std::printf(" %d: %.1f", ks, time_path(Gemm4bitPath::kMma, m, ks));
  }
  std::printf(" us\n");
  // Batch 1: the GEMV with x staged in shared memory against x read through
  // L1 (the default), and with a decoding step's fused inputs (an RMSNorm of x,
  // SwiGLU of [x | x'], the output added to out or taken through SwiGLU).
  namespace fused4 = lowbit::ops::cuda::fused4;
  using Input = fused4::GemvInput;
  const bool fusable = fused4::gemv_fused_supported(DType::BF16, q.plain[0], x);
  const auto gemv = [&](int i) { lowbit::ops::cuda::gemm_4bit(DType::BF16, x, 1, q.plain[i], nullptr, out); };
  const auto fused = [&](Input::Kind kind, Input::Output output) {
    Input in;
    in.kind = kind;
    in.norm_weight = x;
    in.eps = 1e-5f;
    in.output = output;
    return time_us(q_copies, [&](int i) { fused4::gemv_fused(DType::BF16, x, q.plain[i], nullptr, in, out, nullptr); });
  };
  if (fusable) {
    fused4::set_gemv_staging(true);
    const double staged = time_us(q_copies, gemv);
    fused4::set_gemv_staging(false);
    const double unstaged = time_us(q_copies, gemv);
    fused4::set_gemv_staging(true);
    std::printf("gemv m1: x staged %.1f us, through L1 %.1f us; rmsnorm prologue %.1f us", staged, unstaged,
                fused(Input::kRmsNorm, Input::kStore));
    std::printf(", + swiglu out %.1f us", fused(Input::kRmsNorm, Input::kSwiGLUOut));
    std::printf(", plain + add %.1f us", fused(Input::kPlain, Input::kAdd));
    if (max_m >= 2) std::printf(", swiglu prologue + add %.1f us", fused(Input::kSwiGLU, Input::kAdd));
    std::printf("\n");
  }
  // Each launch shape of the one-row GEMV (warps x blocks an SM), whatever
  // its cost model says; the fused variants where they apply.
  if (opt.gemv_sweep) {
    for (int config : {-1, 1, 2}) {
      fused4::set_gemv_launch_shape(config);
      const double dq = time_us(q_copies, [&](int i) {
        lowbit::ops::cuda::gemm_4bit(DType::BF16, x, 1, q.nested[i], nullptr, out);
      });
      const char* shape = config == 2 ? "20 x 1" : config > 0 ? "10 x 2" : "12 x 2";
      const double plain = time_us(q_copies, gemv);
      std::printf("gemv m1 %s warps x blocks: plain %.1f us (host %.1f us a launch), double-quant %.1f us", shape,
                  plain, g_host_us, dq);
      if (fusable)
        std::printf(", rmsnorm prologue %.1f us, + swiglu out %.1f us, plain + add %.1f us",
                    fused(Input::kRmsNorm, Input::kStore), fused(Input::kRmsNorm, Input::kSwiGLUOut),
                    fused(Input::kPlain, Input::kAdd));
      std::printf("\n");
    }
    fused4::set_gemv_launch_shape(0);
  }
  // LLM.int8: f16 activations with 0.1% outlier columns (|x| = 10 >= 6).
  if (opt.int8) {
    const int i8_copies = copies_for(size_t(numel));
    std::vector<void*> w8;
    std::vector<float*> scb;
    for (int i = 0; i < i8_copies; ++i) {
      w8.push_back(random_bytes(size_t(numel), rng));
      scb.push_back(device_floats(uniform(size_t(n), 0.5f, 2.0f, rng)));
    }
    std::vector<uint16_t> xh(size_t(max_m * k));
    for (auto& v : xh) v = uint16_t(0x3800u | (rng.next() & 0x83ffu));  // +-[0.5, 1)
    for (int64_t r = 0; r < max_m; ++r)
      for (int64_t c = 7; c < k; c += 1000) xh[size_t(r * k + c)] = 0x4900u;  // 10.0
    void* x16 = device_alloc(xh.size() * 2);
    LOWBIT_CUDA_CHECK(cudaMemcpy(x16, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
    // Then each GEMM path forced, for m > 4: the tensor-core kernel, cuBLAS.
    std::printf("LLM.int8 (%d weight copies): %6s | %10s %7s | %10s %7s | %11s %11s | %11s %11s | %11s %11s\n",
                i8_copies, "batch", "thr6 us", "x bf16", "thr0 us", "x bf16", "tiled thr6", "tiled thr0", "cublas thr6",
                "cublas thr0", "wgmma thr6", "wgmma thr0");
    using lowbit::ops::cuda::GemmInt8Path;
    const GemmInt8Path paths[] = {GemmInt8Path::kAuto, GemmInt8Path::kTiled, GemmInt8Path::kCublas,
                                  GemmInt8Path::kWgmma};
    for (size_t bi = 0; bi < batches.size(); ++bi) {
      const int64_t m = batches[bi];
      double t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int j = 0; j < (m > 4 ? 8 : 2); ++j) {
        const float threshold = j % 2 == 0 ? 6.0f : 0.0f;
        lowbit::ops::cuda::set_gemm_int8_path(paths[j / 2]);
        t[j] = time_us(i8_copies, [&](int i) {
          lowbit::ops::cuda::gemm_int8(DType::F16, x16, m, static_cast<const int8_t*>(w8[i]), scb[i], n, k,
                                       DType::F16, nullptr, threshold, out);
        });
      }
      lowbit::ops::cuda::set_gemm_int8_path(GemmInt8Path::kAuto);
      std::printf("%30lld | %10.1f %7.2f | %10.1f %7.2f | %11.1f %11.1f | %11.1f %11.1f | %11.1f %11.1f\n",
                  (long long)m, t[0], t[0] / dense_us[bi], t[1], t[1] / dense_us[bi], t[2], t[3], t[4], t[5], t[6],
                  t[7]);
    }
    // The wgmma GEMM's token tiles and k splits at thresholds 0 and 6 (0: chosen).
    for (int64_t m : batches) {
      if ((!opt.sweep && !opt.int8_sweep) || m < 64) continue;
      lowbit::ops::cuda::set_gemm_int8_path(GemmInt8Path::kWgmma);
      for (float threshold : {0.0f, 6.0f}) {
        std::printf("int8 wgmma m%lld thr%.0f:", (long long)m, threshold);
        // {weight rows, tokens} of a tile; {0, 0}: the chosen one.
        for (const auto [rows, tokens] : {std::pair{0, 0}, std::pair{128, 64}, std::pair{128, 96}, std::pair{128, 128},
                                          std::pair{192, 64}, std::pair{192, 96}, std::pair{192, 128}}) {
          if (rows == 192 && threshold > 0.0f && tokens == 128) continue;  // not offered
          if (rows == 192) std::printf("  r192t%d", tokens);
          else std::printf("  t%d", tokens);
          for (int ks : {0, 1, 2, 3, 4}) {
            if (tokens == 0 && ks > 0) break;
            lowbit::ops::cuda::set_gemm_int8_wgmma_tokens(tokens, ks, rows);
            std::printf(" %d: %.1f", ks, time_us(i8_copies, [&](int i) {
                          lowbit::ops::cuda::gemm_int8(DType::F16, x16, m, static_cast<const int8_t*>(w8[i]), scb[i],
                                                       n, k, DType::F16, nullptr, threshold, out);
                        }));
          }
        }
        std::printf(" us\n");
      }
      lowbit::ops::cuda::set_gemm_int8_wgmma_tokens(0);
      lowbit::ops::cuda::set_gemm_int8_path(GemmInt8Path::kAuto);
    }
    for (void* p : w8) cudaFree(p);
    for (float* p : scb) cudaFree(p);
    cudaFree(x16);
  }

  // Dequantization to bf16: reads the NF4 bytes, writes 2 bytes a weight.
  std::vector<void*> deq_out;
  for (int i = 0; i < std::min(dense_copies, 3); ++i) deq_out.push_back(dense[i]);
  const double t_deq = time_us(int(deq_out.size()), [&](int i) {
    lowbit::ops::cuda::dequantize_4bit_weight(DType::BF16, q.plain[i % q_copies], deq_out[i]);
  });
  const double bw_deq = (nf4_bytes + bf16_bytes) / t_deq;
  std::printf("dequantize nf4 -> bf16: %.1f us, %.0f GB/s (%.0f%% of roofline)\n", t_deq, bw_deq / 1000,
              100 * bw_deq / roofline);

  for (void* p : dense) cudaFree(p);
  for (auto& p : q.plain) {
    cudaFree(const_cast<uint8_t*>(p.packed));
    cudaFree(const_cast<float*>(p.absmax));
  }
  for (auto& p : q.nested) {
    cudaFree(const_cast<uint8_t*>(p.qabsmax));
    cudaFree(const_cast<float*>(p.nested_absmax));
  }
  cudaFree(const_cast<float*>(code));
  cudaFree(const_cast<float*>(nested_code));
  cudaFree(x);
  cudaFree(out);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines survive a failing run
  Options opt;
  bool profile = false;
  int64_t shape_k = 0, shape_n = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      opt.batches = {1, 16};
    } else if (std::strcmp(argv[i], "--profile") == 0) {  // one shape at batch 1, for a profiler run
      profile = true;
      opt.batches = {1};
    } else if (std::strcmp(argv[i], "--batches") == 0 && i + 1 < argc) {
      opt.batches.clear();
      for (const char* p = argv[++i]; *p;) {
        char* end = nullptr;
        opt.batches.push_back(std::strtoll(p, &end, 10));
        p = *end == ',' ? end + 1 : end;
      }
    } else if (std::strcmp(argv[i], "--shape") == 0 && i + 2 < argc) {
      shape_k = std::strtoll(argv[i + 1], nullptr, 10);
      shape_n = std::strtoll(argv[i + 2], nullptr, 10);
      i += 2;
    } else if (std::strcmp(argv[i], "--small") == 0) {  // batches 1-4, no LLM.int8: GEMV variants
      opt.batches = {1, 2, 3, 4};
      opt.int8 = false;
    } else if (std::strcmp(argv[i], "--sweep") == 0) {
      opt.sweep = true;
    } else if (std::strcmp(argv[i], "--wgmma-sweep") == 0) {  // the 4-bit wgmma part of --sweep alone
      opt.wgmma_sweep = true;
    } else if (std::strcmp(argv[i], "--int8-sweep") == 0) {  // the int8 wgmma part of --sweep alone
      opt.int8_sweep = true;
    } else if (std::strcmp(argv[i], "--mma-sweep") == 0) {  // the m <= 16 kernel's operand orders and k splits
      opt.mma_sweep = true;
    } else if (std::strcmp(argv[i], "--cluster-sweep") == 0) {  // the cluster kernel's k slices
      opt.cluster_sweep = true;
    } else if (std::strcmp(argv[i], "--gemv-sweep") == 0) {  // the one-row GEMV's launch shapes
      opt.gemv_sweep = true;
    } else if (std::strcmp(argv[i], "--floor-plans") == 0) {  // read floors of layouts not built yet
      opt.floor_plans = true;
    } else if (std::strcmp(argv[i], "--swiglu") == 0) {  // the shape as gate | up, SwiGLU fused or not
      opt.swiglu = true;
    } else if (std::strcmp(argv[i], "--wgmma-force") == 0 && i + 2 < argc) {  // token tile, stream-K (0/1), for a profiler
      lowbit::ops::cuda::fused4::set_wgmma_tokens(std::atoi(argv[i + 1]));
      lowbit::ops::cuda::fused4::set_wgmma_stream_k(std::atoi(argv[i + 2]) ? 1 : -1);
      i += 2;
    } else if (std::strcmp(argv[i], "--no-int8") == 0) {
      opt.int8 = false;
    } else {
      std::fprintf(stderr, "bench_gemm_cuda: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (!lowbit::bench::gpu_available("bench_gemm_cuda_bench")) return 1;
  cudaDeviceProp prop{};
  LOWBIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs, %d MB L2\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  Rng rng;
  if (profile) {
    bench_shape(8192, 28672, opt, rng);
    return 0;
  }
  if (shape_k > 0 && shape_n > 0) {
    bench_shape(shape_k, shape_n, opt, rng);
    return 0;
  }
  bench_shape(4096, 11008, opt, rng);
  bench_shape(11008, 4096, opt, rng);
  bench_shape(8192, 28672, opt, rng);
  return 0;
}
