// The CUDA linear ops against the CPU ones: dense (cuBLAS) and 4-bit (a
// CUDA-core GEMV, two tensor-core kernels, a tiled tensor-core GEMM, the
// Hopper wgmma GEMM, dequantize + cuBLAS; each path also forced where the shape allows it), on
// shapes that are not multiples of the tiles or blocks, and against
// bitsandbytes' outputs.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lowbit/core/cuda_check.h"
#include "lowbit/core/stream.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/ops/linear.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/int8.h"
#include "ops/cuda/gemm_4bit_kernels.h"
#include "ops/cuda/linear_cuda.h"
#include "ops/wgmma_probe_cuda.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

const Device kGpu = Device::cuda(0);

Tensor random_tensor(Shape shape, DType dtype, uint32_t seed) { return testing::random_normal(shape, dtype, seed, 1.0f); }

// Double-quantized (then decoded to f32 absmax), as the loaders give it.
ops::Blockwise4bitWeight quantize(const Tensor& w, quant::QuantType type, int blocksize) {
  return testing::quantize_4bit_weight(w, type, blocksize, true);
}

ops::Blockwise4bitWeight to_gpu(const ops::Blockwise4bitWeight& q) { return testing::weight_on(q, kGpu); }

// Largest |got - want| over the largest |want|, in units of the dtype's ulp.
double error_in_ulps(const Tensor& got_t, const Tensor& want_t) {
  const auto got = testing::to_floats(got_t.to(Device::cpu()));
  const auto want = testing::to_floats(want_t);
  double max_err = 0.0, scale = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    max_err = std::max(max_err, std::fabs(double(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(double(want[i])));
  }
  const double ulp = want_t.dtype() == DType::BF16 ? 1.0 / 128 : want_t.dtype() == DType::F16 ? 1.0 / 1024 : 1e-6;
  return max_err / (scale * ulp);
}

struct Shape4 {
  int64_t m, n, k;
  int blocksize;
};

class Linear4bitCuda : public ::testing::TestWithParam<Shape4> {};

// One forced-kernel case: a random weight quantized (NF4 or FP4 by the seed's
// parity, f32 or double-quantized absmax), x and maybe a bias (by the seed),
// the CPU op's output, and the raw device view the kernels take.
struct KernelCase {
  Tensor want, xg, bg;
  Tensor packed, code, absmax, qabsmax, nested_absmax, nested_code;  // keep the device buffers alive
  ops::cuda::Packed4bit p;
  std::string name;

  KernelCase(const Shape4& c, DType dtype, bool nested, uint32_t& seed) {
    const auto type = (seed & 1) ? quant::QuantType::FP4 : quant::QuantType::NF4;
    const Tensor w = random_tensor({c.n, c.k}, dtype, seed++);
    const Tensor x = random_tensor({c.m, c.k}, dtype, seed++);
    const Tensor bias = (seed & 2) ? random_tensor({c.n}, dtype, seed++) : Tensor{};
    quant::QuantState state;
    ops::Blockwise4bitWeight q;
    q.type = type;
    q.packed = quant::quantize_4bit(w, type, c.blocksize, nested, state);
    q.absmax = quant::dequantize_nested_absmax(state);
    q.code = state.code;
    q.blocksize = c.blocksize;
    q.dtype = dtype;
    q.out_features = c.n;
    q.in_features = c.k;
    want = Tensor::empty({c.m, c.n}, dtype);
    ops::linear_4bit(x, q, bias, want);

    packed = q.packed.to(kGpu);
    code = state.code.to(kGpu);
    xg = x.to(kGpu);
    if (bias.defined()) bg = bias.to(kGpu);
    p.packed = packed.data<uint8_t>();
    p.code = code.data<float>();
    if (nested) {
      qabsmax = state.absmax.to(kGpu);
      nested_absmax = state.nested->nested_absmax.to(kGpu);
      nested_code = state.nested->nested_code.to(kGpu);
      p.qabsmax = qabsmax.data<uint8_t>();
      p.nested_absmax = nested_absmax.data<float>();
      p.nested_code = nested_code.data<float>();
      p.nested_offset = state.nested->offset;
      p.nested_blocksize = state.nested->blocksize;
    } else {
      absmax = q.absmax.to(kGpu);
      p.absmax = absmax.data<float>();
    }
    p.blocksize = c.blocksize;
    p.n = c.n;
    p.k = c.k;
    p.weight_dtype = dtype;
    name = "m " + std::to_string(c.m) + " n " + std::to_string(c.n) + " k " + std::to_string(c.k) + " bs " +
           std::to_string(c.blocksize) + " " + std::string(dtype_name(dtype)) + " " +
           std::string(quant::traits(type).name) + (nested ? " double-quant" : "") + (bias.defined() ? " bias" : "");
  }

  // gemm_4bit on the case (whatever path is set), into an output poisoned
  // with NaN: an element the kernel skips fails the comparison.
  Tensor run(DType dtype, int64_t m) const {
    Tensor got = Tensor::from_vector(std::vector<float>(size_t(m * p.n), std::nanf("")), {m, p.n}).cast(dtype).to(kGpu);
    ops::cuda::gemm_4bit(dtype, xg.raw_data(), m, p, bg.defined() ? bg.raw_data() : nullptr, got.raw_data());
    LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
    return got;
  }

  // run() with `path` forced (and its k split), back to automatic after; an
  // undefined tensor where that path does not take the case.
  Tensor run_forced(DType dtype, int64_t m, ops::cuda::Gemm4bitPath path, int split_k = 0) const {
    ops::cuda::set_gemm_4bit_path(path, split_k);
    const bool taken = ops::cuda::gemm_4bit_path(dtype, p, m, xg.raw_data()) == path;
    const Tensor got = taken ? run(dtype, m) : Tensor{};
    ops::cuda::set_gemm_4bit_path(ops::cuda::Gemm4bitPath::kAuto);
    return got;
  }
};

// A case of one kernel forced: its tile choice (`knob`, 0: its own) and k split.
struct ForcedCase {
  Shape4 shape;
  int knob, split_k;
};

// Every case through `path` forced with set_knob(knob) and the case's k
// split, bf16 and f16, f32 and double-quantized absmax: within 4 ulps of the
// largest |y| of the CPU op, and every element written (NaN-poisoned output).
void check_forced_path(std::initializer_list<ForcedCase> cases, ops::cuda::Gemm4bitPath path,
                       void (*set_knob)(int), uint32_t seed) {
  for (const ForcedCase& c : cases) {
    for (DType dtype : {DType::BF16, DType::F16}) {
      for (bool nested : {false, true}) {
        const KernelCase kc(c.shape, dtype, nested, seed);
        set_knob(c.knob);
        const Tensor got = kc.run_forced(dtype, c.shape.m, path, c.split_k);
        set_knob(0);
        ASSERT_TRUE(got.defined()) << kc.name << ": path " << int(path) << " did not take it";
        EXPECT_LE(error_in_ulps(got, kc.want), 4.0) << kc.name << " knob " << c.knob << " split_k " << c.split_k;
      }
    }
  }
}

// The fused kernel multiplies the codes (rounded to the compute dtype) and
// applies each block's absmax in f32; the CPU rounds code * absmax to the
// dtype. Both are within half an ulp of the exact weight, so with f32 sums
// and one final rounding the outputs differ by a few ulps of the largest |y|.
TEST_P(Linear4bitCuda, MatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  const auto c = GetParam();
  uint32_t seed = 1;
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (auto type : {quant::QuantType::NF4, quant::QuantType::FP4}) {
      for (bool with_bias : {false, true}) {
        const Tensor w = random_tensor({c.n, c.k}, dtype, seed++);
        const Tensor x = random_tensor({c.m, c.k}, dtype, seed++);
        const Tensor bias = with_bias ? random_tensor({c.n}, dtype, seed++) : Tensor{};
        const auto q = quantize(w, type, c.blocksize);
        Tensor want = Tensor::empty({c.m, c.n}, dtype);
        ops::linear_4bit(x, q, bias, want);
        Tensor got = Tensor::empty({c.m, c.n}, dtype, kGpu);
        ops::linear_4bit(x.to(kGpu), to_gpu(q), with_bias ? bias.to(kGpu) : Tensor{}, got);
        const double ulps = error_in_ulps(got, want);
        EXPECT_LE(ulps, 4.0) << "m " << c.m << " n " << c.n << " k " << c.k << " bs " << c.blocksize << " "
                             << dtype_name(dtype) << " " << quant::traits(type).name << (with_bias ? " bias" : "");
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Linear4bitCuda,
                         ::testing::Values(Shape4{1, 256, 512, 64}, Shape4{3, 200, 1024, 64}, Shape4{4, 77, 320, 64},
                                           Shape4{17, 96, 4096, 128}, Shape4{33, 40, 256, 256},
                                           Shape4{64, 24, 192, 64}, Shape4{65, 64, 128, 64},
                                           Shape4{2, 40, 100, 64}, Shape4{1, 64, 128, 32},
                                           Shape4{3, 9000, 128, 64}, Shape4{2, 130, 2048, 64},
                                           Shape4{4, 33, 96, 32}, Shape4{1, 7, 4160, 4096},
                                           Shape4{3, 50, 800, 128}, Shape4{256, 72, 256, 64}),
                         [](const auto& info) {
                           const auto& s = info.param;
                           return "m" + std::to_string(s.m) + "_n" + std::to_string(s.n) + "_k" + std::to_string(s.k) +
                                  "_bs" + std::to_string(s.blocksize);
                         });

// Every kernel of gemm_4bit forced on the same inputs (where the shape allows
// it), with f32 and with double-quantized absmax (decoded in the kernels).
TEST(Linear4bitCuda, EveryPathMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  using ops::cuda::Gemm4bitPath;
  uint32_t seed = 500;
  int runs = 0;
  for (const Shape4 c : {Shape4{1, 300, 4096, 64}, Shape4{2, 77, 1024, 64}, Shape4{3, 129, 512, 128},
                         Shape4{4, 64, 2048, 256}, Shape4{1, 33, 96, 32}, Shape4{4, 17, 4160, 4096},
                         Shape4{16, 40, 1024, 64}, Shape4{17, 24, 640, 64}, Shape4{3, 20, 640, 256},
                         Shape4{33, 8, 256, 64}, Shape4{64, 40, 512, 128},
                         // Many row groups: a block's units take several rounds.
                         Shape4{1, 40001, 160, 32}}) {
    for (DType dtype : {DType::BF16, DType::F16}) {
      for (bool nested : {false, true}) {
        const KernelCase kc(c, dtype, nested, seed);
        for (auto path : {Gemm4bitPath::kGemv, Gemm4bitPath::kMma, Gemm4bitPath::kMmaWide, Gemm4bitPath::kLarge,
                          Gemm4bitPath::kWgmma, Gemm4bitPath::kCluster, Gemm4bitPath::kDequantize}) {
          const Tensor got = kc.run_forced(dtype, c.m, path);
          if (!got.defined()) continue;
          ++runs;
          EXPECT_LE(error_in_ulps(got, kc.want), 4.0) << "path " << int(path) << " " << kc.name;
        }
      }
    }
  }
  EXPECT_GE(runs, 80);  // each kernel ran on most cases
}

// The m <= 16 kernel with x as the mma's A operand (9-16 rows): n not a
// multiple of its 32-row warp tile, rows past n, every k split, blocks
// across rows, k down to one round.
TEST(Linear4bitCuda, MmaXOperandMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  for (int mode : {1, 2}) {  // x read in place, x arranged first
    ops::cuda::fused4::set_mma_x_operand(mode);
    check_forced_path({{{16, 40, 1024, 64}, 0, 0}, {{9, 130, 2048, 64}, 0, 2}, {{16, 300, 4096, 128}, 0, 4},
                       {{12, 64, 8192, 4096}, 0, 8}, {{13, 33, 640, 32}, 0, 1}, {{10, 7, 128, 64}, 0, 0},
                       {{16, 1000, 256, 256}, 0, 0}},
                      ops::cuda::Gemm4bitPath::kMma, [](int) {}, 1600 + mode);
  }
  ops::cuda::fused4::set_mma_x_operand(0);
}

// The cluster kernel (x staged, k cut across a cluster's blocks) with each
// count of k slices and units of 4 and 3 tiles: rounds that the slices do
// not cut evenly, n not a multiple of its 8-row tiles or of a unit's rows,
// few tiles (fewer than the clusters) and many (several units a warp), 1-16
// rows, blocksize 32 to 4096.
TEST(Linear4bitCuda, ClusterMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  for (int tiles : {4, 3}) {
    ops::cuda::fused4::set_cluster_unit_tiles(tiles);
    check_forced_path({{{16, 40, 1024, 64}, 0, 0}, {{9, 130, 2048, 64}, 2, 0}, {{16, 300, 4096, 128}, 4, 0},
                       {{12, 64, 8192, 4096}, 8, 0}, {{13, 33, 640, 32}, 1, 0}, {{10, 7, 128, 64}, 0, 0},
                       {{3, 9001, 1920, 64}, 8, 0}, {{16, 20000, 256, 256}, 0, 0}, {{1, 100, 2048, 64}, 4, 0},
                       {{2, 5000, 3072, 64}, 2, 0}, {{5, 1030, 1408, 32}, 1, 0}},
                      ops::cuda::Gemm4bitPath::kCluster, ops::cuda::fused4::set_cluster_k_slices, 1800 + tiles);
  }
  ops::cuda::fused4::set_cluster_unit_tiles(0);
}

// The one-row GEMV in each launch shape (12 x 2, 10 x 2, 20 x 1 warps x
// blocks an SM) on many row groups and on few, with rows past what 12 x 2
// and 10 x 2 stage (20 x 1 stages up to 36864 values) and past any, f32 and
// double-quantized absmax, k slices and partial chunks.
TEST(Linear4bitCuda, GemvLaunchShapesMatchCpu) {
  LOWBIT_REQUIRE_CUDA();
  for (int config : {-1, 1, 2})
    check_forced_path({{{1, 40001, 160, 32}, config, 0}, {{1, 22001, 1088, 64}, config, 2},
                       {{1, 77, 4160, 64}, config, 0}, {{1, 300, 20512, 64}, config, 0},
                       {{1, 64, 36864, 128}, config, 3}, {{1, 40, 36896, 32}, config, 0}},
                      ops::cuda::Gemm4bitPath::kGemv, ops::cuda::fused4::set_gemv_launch_shape, 1702 + config);
}

// The tiled GEMM (gemm_4bit_large_cuda.cu) on shapes that cut its tiles
// (n and k not multiples of 128 / 64, absmax blocks across rows, batch rows
// past the tile), every tile shape and k split, f32 and double-quantized
// absmax, both dtypes, with and without bias.
TEST(Linear4bitCuda, LargePathMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  check_forced_path({{{1, 77, 4128, 64}, 0, 0}, {{3, 200, 96, 64}, 1, 1}, {{17, 129, 160, 32}, 0, 0},
                     {{64, 300, 1024, 128}, 3, 3}, {{65, 64, 4096, 4096}, 0, 0}, {{300, 130, 544, 256}, 0, 0},
                     {{300, 40, 2048, 64}, 4, 5}, {{33, 257, 640, 64}, 5, 2}, {{16, 1000, 1056, 64}, 1, 0},
                     {{128, 96, 192, 64}, 2, 1}, {{9, 33, 3232, 32}, 0, 16}},
                    ops::cuda::Gemm4bitPath::kLarge, ops::cuda::fused4::set_large_tile, 700);
}

// Shapes the tiled GEMM does not take (k % 32 != 0, f32 x) fall back.
TEST(Linear4bitCuda, LargePathFallsBack) {
  LOWBIT_REQUIRE_CUDA();
  using ops::cuda::Gemm4bitPath;
  const Tensor x = random_tensor({40, 100}, DType::BF16, 11).to(kGpu);
  ops::cuda::Packed4bit p;
  const Tensor packed = Tensor::zeros({50 * 100 / 2}, DType::U8, kGpu);
  p.packed = packed.data<uint8_t>();
  p.n = 50;
  p.k = 100;
  ops::cuda::set_gemm_4bit_path(Gemm4bitPath::kLarge);
  EXPECT_EQ(ops::cuda::gemm_4bit_path(DType::BF16, p, 40, x.raw_data()), Gemm4bitPath::kDequantize);
  p.k = 96;
  EXPECT_EQ(ops::cuda::gemm_4bit_path(DType::F32, p, 40, x.raw_data()), Gemm4bitPath::kDequantize);
  EXPECT_EQ(ops::cuda::gemm_4bit_path(DType::BF16, p, 40, x.raw_data()), Gemm4bitPath::kLarge);
  ops::cuda::set_gemm_4bit_path(Gemm4bitPath::kAuto);
  EXPECT_NE(ops::cuda::gemm_4bit_path(DType::BF16, p, 3000, x.raw_data()), Gemm4bitPath::kLarge);
}

// The Hopper wgmma GEMM (gemm_4bit_wgmma_sm90a.cu) on shapes that cut its
// tiles (n not a multiple of 128 weight rows, batch rows past the token tile,
// one to a few hundred stages of k, stage counts of every residue mod 3), k
// splits of 1-7 (slices of one stage), absmax blocks of 64 to 4096 (rows
// starting mid-block), every token tile (8 to 256), f32 and double-quantized
// absmax, both dtypes, with and without bias; the output stored by TMA (n %
// 8 == 0, no split) and thread by thread. Skipped off compute capability 9.0.
TEST(Linear4bitCuda, WgmmaPathMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  if (!wgmma_4bit_runs_here()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
  check_forced_path({{{1, 77, 64, 64}, 64, 1}, {{3, 130, 192, 128}, 0, 0}, {{17, 300, 1024, 64}, 128, 3},
                     {{64, 128, 4160, 4096}, 64, 5}, {{65, 129, 512, 256}, 64, 1}, {{129, 200, 320, 64}, 128, 2},
                     {{300, 96, 1088, 64}, 256, 4}, {{513, 257, 256, 64}, 0, 0}, {{200, 1000, 2048, 128}, 0, 0},
                     {{40, 64, 448, 64}, 256, 7}, {{1, 300, 1088, 64}, 8, 0}, {{5, 129, 640, 128}, 8, 3},
                     {{16, 200, 2048, 64}, 16, 0}, {{17, 77, 192, 64}, 16, 2}, {{3, 256, 4160, 4096}, 16, 5},
                     {{32, 130, 512, 64}, 32, 1}, {{33, 64, 1024, 256}, 32, 4},
                     // n % 8 == 0 without a k split: the output through TMA
                     // (a last weight tile of 8 rows, tokens past m clipped).
                     {{37, 136, 512, 64}, 8, 1}, {{70, 264, 640, 64}, 32, 1}, {{100, 392, 1024, 64}, 64, 1},
                     {{150, 520, 448, 64}, 128, 1}, {{300, 200, 256, 64}, 256, 1}, {{9, 64, 192, 64}, 16, 1}},
                    ops::cuda::Gemm4bitPath::kWgmma, ops::cuda::fused4::set_wgmma_tokens, 1100);
}

// The wgmma GEMM split stream-K (equal ranges of (tile, stage) units a
// block; tiles shared by blocks summed through partial slots): tiles spread
// over dozens of blocks (few tiles, long k), a block's range inside one
// tile, ranges ending mid-tile, n and m not multiples of the tiles, token
// tiles of 64, 128 and 256, both dtypes, f32 and double-quantized absmax.
TEST(Linear4bitCuda, WgmmaStreamKMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  if (!wgmma_4bit_runs_here()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
  ops::cuda::fused4::set_wgmma_stream_k(1);
  check_forced_path({{{65, 129, 4096, 64}, 64, 0}, {{100, 300, 2048, 128}, 128, 0}, {{256, 257, 1088, 64}, 128, 0},
                     {{17, 64, 8192, 4096}, 64, 0}, {{300, 1000, 640, 64}, 128, 0}, {{129, 2000, 448, 64}, 0, 0},
                     {{257, 300, 2048, 64}, 256, 0}, {{300, 129, 4096, 128}, 256, 0}, {{512, 640, 1024, 64}, 256, 0},
                     {{200, 264, 2048, 64}, 128, 0}, {{130, 72, 4096, 64}, 256, 0}},
                    ops::cuda::Gemm4bitPath::kWgmma, ops::cuda::fused4::set_wgmma_tokens, 1300);
  ops::cuda::fused4::set_wgmma_stream_k(0);
}

// Stream-K hands partial sums from block to block: sums that are not finite
// must arrive like any others. A token with an infinity and one with a NaN
// give non-finite rows (and the call returns), every other row keeps the
// bits of the clean call, and the call after them gives the clean bits
// again (the flags and counters were left zeroed).
TEST(Linear4bitCuda, WgmmaStreamKHandsOverNonFiniteSums) {
  LOWBIT_REQUIRE_CUDA();
  if (!wgmma_4bit_runs_here()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
  uint32_t seed = 1350;
  const Shape4 shape{256, 1024, 4096, 64};
  const KernelCase kc(shape, DType::BF16, false, seed);
  const auto call = [&] {
    ops::cuda::fused4::set_wgmma_tokens(256);
    ops::cuda::fused4::set_wgmma_stream_k(1);
    const Tensor got = kc.run_forced(DType::BF16, shape.m, ops::cuda::Gemm4bitPath::kWgmma);
    ops::cuda::fused4::set_wgmma_stream_k(0);
    ops::cuda::fused4::set_wgmma_tokens(0);
    return got.defined() ? got.to(Device::cpu()).cast(DType::F32) : Tensor{};
  };
  const Tensor clean = call();
  ASSERT_TRUE(clean.defined()) << "stream-K did not take the case";
  EXPECT_LE(error_in_ulps(clean.cast(DType::BF16), kc.want), 4.0);

  const Tensor x = kc.xg.to(Device::cpu()).cast(DType::F32);
  Tensor poisoned_x = x.clone();
  poisoned_x.data<float>()[7] = std::numeric_limits<float>::infinity();          // token 0
  poisoned_x.data<float>()[shape.k + 3000] = std::numeric_limits<float>::quiet_NaN();  // token 1
  const auto set_x = [&](const Tensor& v) {
    const Tensor g = v.cast(DType::BF16).to(kGpu);
    ASSERT_EQ(cudaMemcpy(kc.xg.raw_data(), g.raw_data(), g.nbytes(), cudaMemcpyDeviceToDevice), cudaSuccess);
  };
  set_x(poisoned_x);
  const Tensor poisoned = call();
  set_x(x);
  const Tensor again = call();
  ASSERT_TRUE(poisoned.defined() && again.defined());
  const float* c = clean.data<float>();
  const float* got = poisoned.data<float>();
  int64_t finite_in_poisoned_rows = 0, changed = 0;
  for (int64_t i = 0; i < shape.m * shape.n; ++i) {
    if (i < 2 * shape.n) finite_in_poisoned_rows += std::isfinite(got[i]) ? 1 : 0;
    else changed += std::memcmp(&got[i], &c[i], 4) != 0 ? 1 : 0;
  }
  EXPECT_EQ(finite_in_poisoned_rows, 0);
  EXPECT_EQ(changed, 0);
  EXPECT_EQ(std::memcmp(again.data<float>(), c, size_t(shape.m * shape.n) * 4), 0) << "the call after the poisoned one";
}

// The wgmma GEMM's k split of 2 or 4 summed in the kernel (256-token tiles,
// one item a block): tiles of a few hundred rows and tokens with ragged
// edges, slices of uneven length, both dtypes, f32 and double-quantized
// absmax, with and without bias. A tile's slices run as one thread-block
// cluster where the GPU holds every tile's cluster at once, else the launch
// is cooperative: a tile for every 4 SMs (33 on an H200, which holds 30
// clusters of 4) takes the second launch with the split of 4.
TEST(Linear4bitCuda, WgmmaFusedSplitMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  if (!wgmma_4bit_runs_here()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
  for (int split : {2, 4}) {
    ops::cuda::fused4::set_wgmma_fused_split(split);
    check_forced_path({{{256, 1024, 4096, 64}, 256, 0}, {{300, 520, 2048, 64}, 256, 0}, {{129, 136, 1088, 128}, 256, 0},
                       {{64, 264, 448, 64}, 256, 0}, {{513, 392, 1024, 64}, 256, 0}},
                      ops::cuda::Gemm4bitPath::kWgmma, ops::cuda::fused4::set_wgmma_tokens, 1400 + uint32_t(split));
  }
  int sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  ops::cuda::fused4::set_wgmma_fused_split(4);
  check_forced_path({{{256, int64_t(sms / 4) * 128, 1024, 64}, 256, 0}}, ops::cuda::Gemm4bitPath::kWgmma,
                    ops::cuda::fused4::set_wgmma_tokens, 1410);
  ops::cuda::fused4::set_wgmma_fused_split(0);
}

// The wgmma GEMM's tiles shared by blocks (stream-K, and a k split of 2
// summed in the kernel) on two streams at once, 12 calls each, queued
// without waiting: the GEMMs' blocks hold SMs while the other's wait for
// theirs (plain programmatic launches; stream-K blocks wait only for blocks
// that started before them, a split's blocks only within their cluster),
// and every call gives the bits of the call made alone.
TEST(Linear4bitCuda, WgmmaSharedTilesOnTwoStreams) {
  LOWBIT_REQUIRE_CUDA();
  if (!wgmma_4bit_runs_here()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
  uint32_t seed = 1500;
  const Shape4 shape{256, 4096, 4096, 64};
  const KernelCase kc(shape, DType::BF16, false, seed);
  const auto bytes_of = [](const Tensor& t) {
    const Tensor c = t.to(Device::cpu());
    const auto* b = static_cast<const uint8_t*>(c.raw_data());
    return std::vector<uint8_t>(b, b + c.nbytes());
  };
  cudaStream_t streams[2];
  for (auto& s : streams) ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  for (bool stream_k : {true, false}) {
    ops::cuda::fused4::set_wgmma_tokens(256);
    if (stream_k) ops::cuda::fused4::set_wgmma_stream_k(1);
    else ops::cuda::fused4::set_wgmma_fused_split(2);
    const Tensor alone = kc.run_forced(DType::BF16, shape.m, ops::cuda::Gemm4bitPath::kWgmma);
    ASSERT_TRUE(alone.defined()) << (stream_k ? "stream-K" : "split of 2") << " did not take the case";
    EXPECT_LE(error_in_ulps(alone, kc.want), 4.0);
    const std::vector<uint8_t> want = bytes_of(alone);
    std::vector<Tensor> outs;
    for (int i = 0; i < 24; ++i) outs.push_back(Tensor::empty({shape.m, shape.n}, DType::BF16, kGpu));
    ops::cuda::set_gemm_4bit_path(ops::cuda::Gemm4bitPath::kWgmma);
    for (size_t i = 0; i < outs.size(); ++i) {
      CudaStreamScope scope(streams[i % 2]);
      ops::cuda::gemm_4bit(DType::BF16, kc.xg.raw_data(), shape.m, kc.p, kc.bg.defined() ? kc.bg.raw_data() : nullptr,
                           outs[i].raw_data());
    }
    for (auto& s : streams) ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    ops::cuda::set_gemm_4bit_path(ops::cuda::Gemm4bitPath::kAuto);
    ops::cuda::fused4::set_wgmma_stream_k(0);
    ops::cuda::fused4::set_wgmma_fused_split(0);
    ops::cuda::fused4::set_wgmma_tokens(0);
    for (size_t i = 0; i < outs.size(); ++i)
      EXPECT_TRUE(bytes_of(outs[i]) == want) << (stream_k ? "stream-K" : "split of 2") << ", call " << i;
  }
  for (auto& s : streams) ASSERT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

// The kernels picked by rows on Llama shapes: the GEMV at one row, on Hopper
// the cluster kernel at 2-16 rows (but for 2-4 rows of weights longer than
// wide), elsewhere the m <= 16 kernel or the wgmma GEMM's narrow tiles,
// the wgmma GEMM from 17 to 1024 rows, then dequantize + cuBLAS.
TEST(Linear4bitCuda, AutoPathByRows) {
  LOWBIT_REQUIRE_CUDA();
  using ops::cuda::Gemm4bitPath;
  const Tensor x = Tensor::zeros({64}, DType::BF16, kGpu);
  const Tensor packed = Tensor::zeros({64}, DType::U8, kGpu);
  const bool hopper = wgmma_4bit_runs_here();
  struct Weight {
    int64_t n, k;
  };
  for (const Weight& w : {Weight{11008, 4096}, Weight{4096, 11008}, Weight{28672, 8192}, Weight{4096, 4096}}) {
    ops::cuda::Packed4bit p;
    p.packed = packed.data<uint8_t>();
    p.n = w.n;
    p.k = w.k;
    const std::string what = std::to_string(w.k) + " x " + std::to_string(w.n);
    EXPECT_EQ(ops::cuda::gemm_4bit_path(DType::BF16, p, 1, x.raw_data()), Gemm4bitPath::kGemv) << what;
    // On Hopper the wgmma GEMM's narrow tiles take 9-16 rows from 2^25
    // values (12-16 where k > n) and 6-8 rows from 2^27; double-quantized
    // weights 9-16 (12-16) rows from 2^25 to 2^27 values.
    const int64_t values = w.n * w.k;
    const Tensor qabsmax = Tensor::zeros({64}, DType::U8, kGpu);
    for (bool nested : {false, true}) {
      p.qabsmax = nested ? qabsmax.data<uint8_t>() : nullptr;
      const bool large = values >= (int64_t(1) << 27);
      for (int64_t m : {2, 5, 6, 8, 9, 12, 16}) {
        const bool narrow = m >= 9 && values >= (int64_t(1) << 25) && (m >= 12 || w.n >= w.k);
        const bool narrow_wgmma = hopper && (nested ? narrow && !large : narrow || (m >= 6 && large));
        const bool cluster = hopper && (m >= 5 || w.n >= w.k);
        EXPECT_EQ(ops::cuda::gemm_4bit_path(DType::BF16, p, m, x.raw_data()),
                  cluster ? Gemm4bitPath::kCluster : narrow_wgmma ? Gemm4bitPath::kWgmma : Gemm4bitPath::kMma)
            << what << " m " << m << (nested ? " nested" : "");
      }
    }
    p.qabsmax = nullptr;
    if (!hopper) continue;
    for (int64_t m : {17, 64, 383, 1024})
      EXPECT_EQ(ops::cuda::gemm_4bit_path(DType::BF16, p, m, x.raw_data()), Gemm4bitPath::kWgmma) << what << " m " << m;
    EXPECT_EQ(ops::cuda::gemm_4bit_path(DType::BF16, p, 1025, x.raw_data()), Gemm4bitPath::kDequantize) << what;
  }
}

// Shapes the wgmma GEMM does not take fall back: k % 64 != 0, blocksize 32, f32 x.
TEST(Linear4bitCuda, WgmmaPathFallsBack) {
  LOWBIT_REQUIRE_CUDA();
  using ops::cuda::Gemm4bitPath;
  const Tensor x = random_tensor({300, 192}, DType::BF16, 12).to(kGpu);
  const Tensor packed = Tensor::zeros({50 * 192 / 2}, DType::U8, kGpu);
  ops::cuda::Packed4bit p;
  p.packed = packed.data<uint8_t>();
  p.n = 50;
  p.k = 96;
  ops::cuda::set_gemm_4bit_path(Gemm4bitPath::kWgmma);
  EXPECT_EQ(ops::cuda::gemm_4bit_path(DType::BF16, p, 300, x.raw_data()), Gemm4bitPath::kDequantize);
  p.k = 192;
  p.blocksize = 32;
  EXPECT_EQ(ops::cuda::gemm_4bit_path(DType::BF16, p, 300, x.raw_data()), Gemm4bitPath::kDequantize);
  p.blocksize = 64;
  EXPECT_EQ(ops::cuda::gemm_4bit_path(DType::F32, p, 300, x.raw_data()), Gemm4bitPath::kDequantize);
  ops::cuda::set_gemm_4bit_path(Gemm4bitPath::kAuto);
}

// dequantize_4bit_weight (the prompt path's first half) gives the CPU's
// dequantized values, cast to the output dtype, exactly: partial warp tiles
// (words not a multiple of 128), blocks of 32 to 4096, f32 and
// double-quantized absmax, every weight/output dtype pair.
TEST(Linear4bitCuda, DequantizeWeightMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 900;
  int runs = 0;
  struct Case {
    int64_t n, k;
    int blocksize;
  };
  for (const Case c : {Case{40, 100, 64}, Case{3, 96, 32}, Case{300, 4096, 64}, Case{7, 4160, 4096},
                       Case{129, 512, 128}}) {
    for (DType wdtype : {DType::BF16, DType::F16}) {
      for (bool nested : {false, true}) {
        const auto type = (seed & 1) ? quant::QuantType::FP4 : quant::QuantType::NF4;
        const Tensor w = random_tensor({c.n, c.k}, wdtype, seed++);
        quant::QuantState state;
        const Tensor packed = quant::quantize_4bit(w, type, c.blocksize, nested, state);
        const Tensor values = quant::dequantize_4bit(packed, state);  // wdtype
        const Tensor packed_g = packed.to(kGpu), code = state.code.to(kGpu);
        const Tensor absmax = nested ? Tensor{} : state.absmax.to(kGpu);
        const Tensor qabsmax = nested ? state.absmax.to(kGpu) : Tensor{};
        const Tensor nested_absmax = nested ? state.nested->nested_absmax.to(kGpu) : Tensor{};
        const Tensor nested_code = nested ? state.nested->nested_code.to(kGpu) : Tensor{};
        ops::cuda::Packed4bit p;
        p.packed = packed_g.data<uint8_t>();
        p.code = code.data<float>();
        if (nested) {
          p.qabsmax = qabsmax.data<uint8_t>();
          p.nested_absmax = nested_absmax.data<float>();
          p.nested_code = nested_code.data<float>();
          p.nested_offset = state.nested->offset;
          p.nested_blocksize = state.nested->blocksize;
        } else {
          p.absmax = absmax.data<float>();
        }
        p.blocksize = c.blocksize;
        p.n = c.n;
        p.k = c.k;
        p.weight_dtype = wdtype;
        for (DType out_dtype : {DType::BF16, DType::F16, DType::F32}) {
          Tensor got = Tensor::from_vector(std::vector<float>(size_t(c.n * c.k), std::nanf("")), {c.n, c.k})
                           .cast(out_dtype)
                           .to(kGpu);
          ops::cuda::dequantize_4bit_weight(out_dtype, p, got.raw_data());
          LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
          const auto g = testing::to_floats(got.to(Device::cpu()));
          const auto want = testing::to_floats(values.cast(out_dtype));
          int64_t bad = 0, first = -1;
          for (size_t i = 0; i < want.size(); ++i)
            if (!(g[i] == want[i])) {  // -0 and +0 agree (FP4's code 8)
              if (first < 0) first = int64_t(i);
              ++bad;
            }
          ++runs;
          EXPECT_EQ(bad, 0) << "n " << c.n << " k " << c.k << " bs " << c.blocksize << " " << dtype_name(wdtype)
                            << " -> " << dtype_name(out_dtype) << " " << quant::traits(type).name
                            << (nested ? " double-quant" : "") << "; first at " << first;
        }
      }
    }
  }
  EXPECT_EQ(runs, 60);
}

// A double-quantized weight kept as such on the GPU (three parts stacked with
// their own offsets, as the model loads q/k/v and gate/up) gives, on each
// path, the bits of the same weight with its absmax decoded first: the
// kernels decode a block's absmax to the same f32 as the CPU does.
TEST(Linear4bitCuda, StackedDoubleQuantEqualsDecodedOnEveryPath) {
  LOWBIT_REQUIRE_CUDA();
  using ops::cuda::Gemm4bitPath;
  for (DType dtype : {DType::BF16, DType::F16}) {
    const std::vector<Tensor> parts = {testing::random_normal({256, 512}, dtype, 1, 1.0f),
                                       testing::random_normal({128, 512}, dtype, 2, 3.0f),
                                       testing::random_normal({130, 512}, dtype, 3, 0.2f)};
    const auto host = testing::double_quantized_stack(parts, quant::QuantType::NF4, 64);
    const auto nested = testing::weight_on(host, kGpu);
    const auto decoded = ops::with_decoded_absmax(nested);  // decoded on the GPU
    const Tensor cpu_absmax = ops::with_decoded_absmax(host).absmax;
    ASSERT_EQ(std::memcmp(decoded.absmax.to(Device::cpu()).raw_data(), cpu_absmax.raw_data(), cpu_absmax.nbytes()),
              0);
    const int64_t n = host.out_features;
    const std::pair<Gemm4bitPath, std::vector<int64_t>> cases[] = {
        {Gemm4bitPath::kAuto, {1, 4, 16, 100, 400}}, {Gemm4bitPath::kGemv, {1, 3}},
        {Gemm4bitPath::kMma, {1, 3, 16}},            {Gemm4bitPath::kMmaWide, {17, 33}},
        {Gemm4bitPath::kLarge, {3, 17, 64}},         {Gemm4bitPath::kWgmma, {17, 64, 300}},
        {Gemm4bitPath::kCluster, {2, 9, 16}},        {Gemm4bitPath::kDequantize, {1, 17, 300}}};
    for (const auto& [path, batches] : cases) {
      ops::cuda::set_gemm_4bit_path(path);
      for (int64_t m : batches) {
        const Tensor x = testing::random_normal({m, 512}, dtype, uint32_t(m)).to(kGpu);
        Tensor a = Tensor::empty({m, n}, dtype, kGpu), b = Tensor::empty({m, n}, dtype, kGpu);
        ops::linear_4bit(x, nested, Tensor{}, a);
        ops::linear_4bit(x, decoded, Tensor{}, b);
        EXPECT_TRUE(testing::same_bytes(a, b)) << dtype_name(dtype) << " path " << int(path) << " m " << m;
      }
    }
    ops::cuda::set_gemm_4bit_path(Gemm4bitPath::kAuto);
    // The fused decoding GEMV (RMSNorm input, SwiGLU output) and the dequantization.
    ops::LinearFusion f;
    f.input = ops::LinearFusion::Input::RmsNorm;
    f.norm_weight = testing::random_normal({512}, dtype, 7).to(kGpu);
    f.eps = 1e-5f;
    f.output = ops::LinearFusion::Output::SwiGLU;
    const Tensor src = testing::random_normal({1, 512}, dtype, 8).to(kGpu);
    Tensor a = Tensor::empty({1, n / 2}, dtype, kGpu), b = Tensor::empty({1, n / 2}, dtype, kGpu);
    EXPECT_TRUE(ops::linear_4bit_fuses(src, nested, Tensor{}, f, a));
    ops::linear_4bit_fused(src, nested, Tensor{}, f, a);
    ops::linear_4bit_fused(src, decoded, Tensor{}, f, b);
    EXPECT_TRUE(testing::same_bytes(a, b)) << dtype_name(dtype) << " fused";
    Tensor wa = Tensor::empty({n, 512}, dtype, kGpu), wb = Tensor::empty({n, 512}, dtype, kGpu);
    ops::dequantize_4bit_weight(nested, wa);
    ops::dequantize_4bit_weight(decoded, wb);
    EXPECT_TRUE(testing::same_bytes(wa, wb)) << dtype_name(dtype) << " dequantized";
  }
}

TEST(Linear4bitCuda, MatchesBitsandbytes) {
  LOWBIT_REQUIRE_CUDA();
  const auto g = io::SafetensorsReader::open(testing::golden_dir() / "dev-quant.safetensors");
  for (const std::string type : {"nf4", "fp4"}) {
    for (const std::string dt : {"bf16", "f16"}) {
      const DType dtype = parse_dtype(dt);
      const auto q = quantize(g.tensor("q4lin.W_f32").cast(dtype), quant::parse_quant_type(type), 64);
      for (const char* batch : {"b1", "b8"}) {
        const std::string prefix = "q4lin." + type + "." + dt + ".";
        const Tensor x = g.tensor(prefix + "x_" + batch);
        Tensor out = Tensor::empty({x.dim(0), q.out_features}, dtype, kGpu);
        ops::linear_4bit(x.to(kGpu), to_gpu(q), Tensor{}, out);
        // As the CPU golden test: FP4 has a few tie-breaking code differences.
        EXPECT_LE(error_in_ulps(out, g.tensor(prefix + "out_" + batch)), type == "fp4" ? 20.0 : 4.0)
            << type << " " << dt << " " << batch;
      }
    }
  }
}

TEST(LinearCuda, DenseMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 100;
  for (DType dtype : {DType::BF16, DType::F16, DType::F32}) {
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 300, 257}, {17, 64, 1000}}) {
      const Tensor w = random_tensor({n, k}, dtype, seed++);
      const Tensor x = random_tensor({m, k}, dtype, seed++);
      const Tensor bias = random_tensor({n}, dtype, seed++);
      Tensor want = Tensor::empty({m, n}, dtype);
      ops::linear(x, w, bias, want);
      Tensor got = Tensor::empty({m, n}, dtype, kGpu);
      ops::linear(x.to(kGpu), w.to(kGpu), bias.to(kGpu), got);
      EXPECT_LE(error_in_ulps(got, want), dtype == DType::F32 ? 100.0 : 2.0) << dtype_name(dtype) << " m " << m;
    }
  }
}

// LLM.int8 on the GPU against the CPU op: same int32 sums, same f32 scaling
// and f16 roundings; only the outlier product's f32 summation may round
// differently: within 2^-11 of max(1, |y|), as the CPU golden test bounds it.
double int8_max_error(const Tensor& got_t, const Tensor& want_t) {
  const auto got = testing::to_floats(got_t.to(Device::cpu()));
  const auto want = testing::to_floats(want_t);
  double max_err = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    max_err = std::max(max_err, std::fabs(double(got[i]) - want[i]) / std::max(1.0, std::fabs(double(want[i]))));
  }
  return max_err;
}

TEST(LinearInt8Cuda, MatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 300;
  // m <= 4 with k % 16 == 0 takes the GEMV (gemv_int8_cuda.cu), the rest the GEMM path.
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 256}, {3, 100, 1000}, {17, 40, 130},
                         {5, 33, 4100}, {1, 257, 4096}, {2, 33, 1040}, {3, 7, 16}, {4, 100, 11008}}) {
    for (DType dtype : {DType::F16, DType::BF16}) {
      for (float threshold : {0.0f, 6.0f}) {
        // Activations ~N(0, 1) with a few large columns, as LLM.int8 expects.
        Tensor x = random_tensor({m, k}, DType::F32, seed++);
        for (int64_t r = 0; r < m; ++r)
          for (int64_t c = 3; c < k; c += 97) x.data<float>()[r * k + c] *= 9.0f;
        x = x.cast(dtype);
        const Tensor w = random_tensor({n, k}, DType::F32, seed++);
        const auto q = quant::quantize_int8_rowwise(w);
        const Tensor bias = random_tensor({n}, dtype, seed++);
        Tensor want = Tensor::empty({m, n}, dtype);
        ops::linear_int8(x, q.codes, q.scb, bias, threshold, want);
        Tensor got = Tensor::empty({m, n}, dtype, kGpu);
        ops::linear_int8(x.to(kGpu), q.codes.to(kGpu), q.scb.to(kGpu), bias.to(kGpu), threshold, got);
        EXPECT_LE(int8_max_error(got, want), 1.0 / 2048)
            << "m " << m << " n " << n << " k " << k << " " << dtype_name(dtype) << " threshold " << threshold;
      }
    }
  }
}

// Over many rows most large columns cross the threshold somewhere: hundreds of
// outlier columns, whose product cuBLAS computes (f16 in, f32 out). Summed in
// cuBLAS's order, the f32 product can round to the neighbouring f16 value:
// one f16 ulp, 2^-10 of max(1, |y|).
TEST(LinearInt8Cuda, ManyOutlierColumnsMatchCpu) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 900;
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{8, 96, 1024}, {40, 70, 1040}}) {
    Tensor x = random_tensor({m, k}, DType::F32, seed++);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < k; c += 3) x.data<float>()[r * k + c] *= 9.0f;
    x = x.cast(DType::F16);
    const auto q = quant::quantize_int8_rowwise(random_tensor({n, k}, DType::F32, seed++));
    const Tensor bias = random_tensor({n}, DType::F16, seed++);
    Tensor want = Tensor::empty({m, n}, DType::F16);
    ops::linear_int8(x, q.codes, q.scb, bias, 6.0f, want);
    Tensor got = Tensor::empty({m, n}, DType::F16, kGpu);
    ops::linear_int8(x.to(kGpu), q.codes.to(kGpu), q.scb.to(kGpu), bias.to(kGpu), 6.0f, got);
    EXPECT_LE(int8_max_error(got, want), 1.0 / 1024) << "m " << m << " n " << n << " k " << k;
  }
}

TEST(LinearInt8Cuda, MatchesCpuOnGoldenData) {
  LOWBIT_REQUIRE_CUDA();
  const auto g = io::SafetensorsReader::open(testing::golden_dir() / "dev-quant.safetensors");
  const Tensor x = g.tensor("int8.A_f16"), codes = g.tensor("int8.W_codes"), scb = g.tensor("int8.W_SCB"),
               bias = g.tensor("int8.bias_f16");
  for (float threshold : {0.0f, 6.0f}) {
    Tensor want = Tensor::empty({x.dim(0), codes.dim(0)}, DType::F16);
    ops::linear_int8(x, codes, scb, bias, threshold, want);
    Tensor got = Tensor::empty({x.dim(0), codes.dim(0)}, DType::F16, kGpu);
    ops::linear_int8(x.to(kGpu), codes.to(kGpu), scb.to(kGpu), bias.to(kGpu), threshold, got);
    EXPECT_LE(int8_max_error(got, want), 1.0 / 2048) << "threshold " << threshold;
  }
}

}  // namespace
}  // namespace lowbit
