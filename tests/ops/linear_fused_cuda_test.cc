// ops::linear_4bit_fused on the GPU: one GEMV kernel that makes its input row
// in shared memory (as is, RMSNorm or SwiGLU) and stores its output or adds it
// to `out`, and a prompt's SwiGLU output in the wgmma GEMM, against the same
// ops run in turn on the GPU: the same bits. Also the plain one-row GEMV with
// and without the staged row.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "lowbit/ops/elementwise.h"
#include "lowbit/ops/linear.h"
#include "lowbit/ops/norm.h"
#include "lowbit/quant/blockwise.h"
#include "ops/cuda/gemm_4bit_kernels.h"
#include "ops/wgmma_probe_cuda.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

const Device kGpu = Device::cuda(0);
using Input = ops::LinearFusion::Input;
using Output = ops::LinearFusion::Output;

Tensor random_tensor(Shape shape, DType dtype, uint32_t seed, float scale = 1.0f) {
  return testing::random_normal(shape, dtype, seed, scale);
}

ops::Blockwise4bitWeight quantize_on_gpu(const Tensor& w, int blocksize) {
  return testing::weight_on(testing::quantize_4bit_weight(w, quant::QuantType::NF4, blocksize, false), kGpu);
}

using testing::same_bytes;

// The largest |got - want| in ulps of the largest finite |want| (equal
// values, infinities included, differ by 0; a NaN or an infinity against a
// finite value: infinite).
double max_ulps_of_largest(const Tensor& got, const Tensor& want) {
  const std::vector<float> g = testing::to_floats(got), w = testing::to_floats(want);
  float largest = 0.0f;
  for (float v : w)
    if (std::isfinite(v)) largest = std::max(largest, std::fabs(v));
  const int mantissa = want.dtype() == DType::BF16 ? 7 : 10;
  const double ulp = std::ldexp(1.0, std::ilogb(largest) - mantissa);
  double worst = 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (g[i] == w[i]) continue;
    const double d = std::fabs(double(g[i]) - double(w[i]));
    if (!std::isfinite(d)) return INFINITY;
    worst = std::max(worst, d / ulp);
  }
  return worst;
}

// The ops that linear_4bit_fused stands for, one by one on the GPU.
Tensor ops_in_turn(const Tensor& src, const ops::Blockwise4bitWeight& w, const Tensor& bias, const ops::LinearFusion& f,
                   const Tensor& out0) {
  const Tensor x = ops::fused_linear_input(src, f);
  Tensor y = Tensor::empty({x.dim(0), w.out_features}, out0.dtype(), kGpu);
  ops::linear_4bit(x, w, bias, y);
  if (f.output == Output::Store) return y;
  Tensor out = out0.clone();
  if (f.output == Output::SwiGLU) ops::swiglu(y, out);
  else ops::add(out, y, out);
  return out;
}

struct FusedShape {
  int64_t n, k;
  int blocksize;
};

// k picks the norm's sum order: 4096 and 160 (four values a thread), 8192
// (eight), 11008 (sixteen), 18432 (the looped kernel's 256 threads).
void expect_equals_ops_in_turn(std::initializer_list<FusedShape> shapes, uint32_t seed) {
  for (const FusedShape s : shapes) {
    for (DType dtype : {DType::BF16, DType::F16}) {
      const auto w = quantize_on_gpu(random_tensor({s.n, s.k}, dtype, seed++), s.blocksize);
      for (Input input : {Input::Plain, Input::RmsNorm, Input::SwiGLU}) {
        for (Output output : {Output::Store, Output::Add, Output::SwiGLU}) {
          if (output == Output::SwiGLU && s.n % 2 != 0) continue;
          const bool with_bias = (seed % 2) == 0;
          ops::LinearFusion f;
          f.input = input;
          f.output = output;
          f.eps = 1e-5f;
          // Activations of a decoder's scale: residual streams of norm ~30,
          // gate values past silu's tails.
          const float scale = input == Input::RmsNorm ? 30.0f : input == Input::SwiGLU ? 4.0f : 1.0f;
          const Tensor src = random_tensor({1, input == Input::SwiGLU ? 2 * s.k : s.k}, dtype, seed++, scale).to(kGpu);
          if (input == Input::RmsNorm) f.norm_weight = random_tensor({s.k}, dtype, seed++).to(kGpu);
          const Tensor bias = with_bias ? random_tensor({s.n}, dtype, seed++).to(kGpu) : Tensor{};
          const Tensor out0 =
              random_tensor({1, output == Output::SwiGLU ? s.n / 2 : s.n}, dtype, seed++, 8.0f).to(kGpu);
          Tensor got = out0.clone();
          ASSERT_TRUE(ops::linear_4bit_fuses(src, w, bias, f, got)) << s.n << " x " << s.k;
          ops::linear_4bit_fused(src, w, bias, f, got);
          const Tensor want = ops_in_turn(src, w, bias, f, out0);
          EXPECT_TRUE(same_bytes(got, want)) << "n " << s.n << " k " << s.k << " " << dtype_name(dtype) << " input "
                                             << int(input) << " output " << int(output)
                                             << (with_bias ? " bias" : "");
        }
      }
    }
  }
}

TEST(Linear4bitFusedCuda, EqualsOpsInTurn) {
  LOWBIT_REQUIRE_CUDA();
  expect_equals_ops_in_turn({FusedShape{40, 64, 64}, FusedShape{300, 4096, 64}, FusedShape{77, 11008, 64},
                             FusedShape{33, 8192, 128}, FusedShape{13, 18432, 64}, FusedShape{130, 160, 32},
                             FusedShape{2100, 4096, 64}, FusedShape{22016, 4096, 64}, FusedShape{8192, 4096, 64}},
                            1);
}

// Each launch shape (12 x 2, 10 x 2, 20 x 1 warps x blocks an SM), the
// plain GEMV's and the fused ones', on many row groups and on few.
TEST(Linear4bitFusedCuda, EqualsOpsInTurnInEachLaunchShape) {
  LOWBIT_REQUIRE_CUDA();
  for (int config : {-1, 1, 2}) {
    ops::cuda::fused4::set_gemv_launch_shape(config);
    expect_equals_ops_in_turn({FusedShape{22016, 4096, 64}, FusedShape{40002, 160, 32}, FusedShape{300, 4096, 64}},
                              302 + config);
  }
  ops::cuda::fused4::set_gemv_launch_shape(0);
}

// Where one kernel does not apply (two rows, k past the staged row, the
// output overlapping the input, a norm weight of another dtype) the op runs
// the ops in turn.
TEST(Linear4bitFusedCuda, FallsBackToOpsInTurn) {
  LOWBIT_REQUIRE_CUDA();
  const DType dtype = DType::BF16;
  struct Case {
    int64_t m, n, k;
    Input input;
    bool alias, f32_norm;
  };
  uint32_t seed = 100;
  for (const Case c : {Case{2, 64, 256, Input::RmsNorm, false, false}, Case{1, 16, 18464, Input::Plain, false, false},
                       Case{1, 256, 256, Input::Plain, true, false}, Case{1, 64, 256, Input::RmsNorm, false, true},
                       Case{3, 48, 128, Input::SwiGLU, false, false}}) {
    const auto w = quantize_on_gpu(random_tensor({c.n, c.k}, dtype, seed++), 64);
    ops::LinearFusion f;
    f.input = c.input;
    f.output = Output::Add;
    f.eps = 1e-6f;
    if (c.input == Input::RmsNorm) f.norm_weight = random_tensor({c.k}, c.f32_norm ? DType::F32 : dtype, seed++).to(kGpu);
    Tensor src = random_tensor({c.m, c.input == Input::SwiGLU ? 2 * c.k : c.k}, dtype, seed++).to(kGpu);
    const Tensor out0 = c.alias ? src : random_tensor({c.m, c.n}, dtype, seed++).to(kGpu);
    const Tensor want = ops_in_turn(src, w, Tensor{}, f, out0);
    Tensor got = c.alias ? src : out0.clone();
    EXPECT_FALSE(ops::linear_4bit_fuses(src, w, Tensor{}, f, got));
    ops::linear_4bit_fused(src, w, Tensor{}, f, got);
    EXPECT_TRUE(same_bytes(got, want)) << c.m << " x " << c.n << " x " << c.k;
  }
}

// A prompt's SwiGLU output in the wgmma GEMM's epilogue (Hopper, from 128
// rows): the rows of [gate | up] weights, both token tiles it takes (128,
// 256), stream-K and the k split summed in the kernel, f32 and double-quantized absmax, bias or not, output
// columns not a multiple of the tile: the bits of linear_4bit then swiglu.
TEST(Linear4bitFusedCuda, PromptSwiGLUInTheGemmEqualsOpsInTurn) {
  LOWBIT_REQUIRE_CUDA();
  namespace fused4 = ops::cuda::fused4;
  if (!wgmma_4bit_runs_here()) GTEST_SKIP() << "the wgmma GEMM needs compute capability 9.0";
  struct Case {
    int64_t m, n, k;  // n: gate and up rows together
    int tokens, stream_k, fused_split;  // forced (0: the cost model's; -1: never)
  };
  ops::LinearFusion f;
  f.output = Output::SwiGLU;
  uint32_t seed = 700;
  {
    // Fewer rows than the fused tiles take: the ops in turn.
    const auto w = quantize_on_gpu(random_tensor({256, 256}, DType::BF16, seed++), 64);
    const Tensor src = random_tensor({fused4::kWgmmaSwiGLUMinRows - 1, 256}, DType::BF16, seed++).to(kGpu);
    const Tensor out0 = random_tensor({src.dim(0), 128}, DType::BF16, seed++).to(kGpu);
    Tensor got = out0.clone();
    EXPECT_FALSE(ops::linear_4bit_fuses(src, w, Tensor{}, f, got));
    ops::linear_4bit_fused(src, w, Tensor{}, f, got);
    EXPECT_TRUE(same_bytes(got, ops_in_turn(src, w, Tensor{}, f, out0)));
    // A forced token tile that has no SwiGLU kernel: an error, not garbage.
    const Tensor rows = random_tensor({200, 256}, DType::BF16, seed++).to(kGpu);
    Tensor out = Tensor::empty({200, 128}, DType::BF16, kGpu);
    ASSERT_TRUE(ops::linear_4bit_fuses(rows, w, Tensor{}, f, out));
    fused4::set_wgmma_tokens(64);
    EXPECT_THROW(ops::linear_4bit_fused(rows, w, Tensor{}, f, out), Error);
    fused4::set_wgmma_tokens(0);
  }
  for (const Case c : {Case{128, 1536, 256, 128, 0, 0}, Case{200, 208, 512, 128, 0, 0}, Case{300, 1536, 512, 256, 0, 0},
                       Case{130, 400, 1024, 128, -1, -1}, Case{513, 2064, 1024, 256, -1, -1},
                       Case{200, 3088, 2048, 128, 1, 0}, Case{600, 1040, 4096, 256, 1, 0},
                       Case{256, 528, 4096, 256, 0, 2}, Case{300, 272, 2048, 256, 0, 4}}) {
    for (DType dtype : {DType::BF16, DType::F16}) {
      for (bool nested : {false, true}) {
        const Tensor w = random_tensor({c.n, c.k}, dtype, seed++);
        quant::QuantState state;
        ops::Blockwise4bitWeight q;
        q.packed = quant::quantize_4bit(w, quant::QuantType::NF4, 64, nested, state).to(kGpu);
        q.code = state.code.to(kGpu);
        if (nested) {
          q.absmax = state.absmax.to(kGpu);
          q.nested = ops::Blockwise4bitWeight::Nested{state.nested->nested_absmax.to(kGpu),
                                                      state.nested->nested_code.to(kGpu),
                                                      state.nested->blocksize,
                                                      {state.nested->offset},
                                                      {}};
        } else {
          q.absmax = quant::dequantize_nested_absmax(state).to(kGpu);
        }
        q.blocksize = 64;
        q.dtype = dtype;
        q.out_features = c.n;
        q.in_features = c.k;
        // Sums of a few tens, gate x up far below f16's largest value.
        const Tensor src = random_tensor({c.m, c.k}, dtype, seed++, 0.25f).to(kGpu);
        const Tensor bias = nested ? random_tensor({c.n}, dtype, seed++).to(kGpu) : Tensor{};
        const Tensor out0 = random_tensor({c.m, c.n / 2}, dtype, seed++).to(kGpu);
        // The same choice for both (a k split's order changes the sums'
        // roundings): the case's knobs, and no k split into partials.
        const auto configure = [&](bool on) {
          fused4::set_wgmma_tokens(on ? c.tokens : 0);
          fused4::set_wgmma_stream_k(on ? c.stream_k : 0);
          fused4::set_wgmma_fused_split(on ? c.fused_split : 0);
          const bool whole_k = c.stream_k <= 0 && c.fused_split <= 0;
          ops::cuda::set_gemm_4bit_path(on ? ops::cuda::Gemm4bitPath::kWgmma : ops::cuda::Gemm4bitPath::kAuto,
                                        on && whole_k ? 1 : 0);
        };
        configure(true);
        const Tensor want = ops_in_turn(src, q, bias, f, out0);
        Tensor got = Tensor::from_vector(std::vector<float>(size_t(c.m * c.n / 2), std::nanf("")), {c.m, c.n / 2})
                         .cast(dtype)
                         .to(kGpu);
        const std::string what = std::to_string(c.m) + " x " + std::to_string(c.n) + " x " + std::to_string(c.k) +
                                 " tokens " + std::to_string(c.tokens) + " stream-K " + std::to_string(c.stream_k) +
                                 " split " + std::to_string(c.fused_split) + " " + std::string(dtype_name(dtype)) +
                                 (nested ? " double-quant, bias" : "");
        const bool fuses = ops::linear_4bit_fuses(src, q, bias, f, got);
        if (fuses) ops::linear_4bit_fused(src, q, bias, f, got);
        configure(false);
        ASSERT_TRUE(fuses) << what;
        if (c.stream_k > 0) {
          // Stream-K cuts k at other stages when the tiles pair gate and up
          // rows: a few f32 roundings apart.
          EXPECT_LE(max_ulps_of_largest(got, want), 1.0) << what;
        } else {
          EXPECT_TRUE(same_bytes(got, want)) << what;
        }
      }
    }
  }
}

// The plain one-row GEMV gives the same bits whether it stages the row in
// shared memory or reads it through L1.
TEST(Linear4bitFusedCuda, StagedRowEqualsUnstaged) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 200;
  for (const FusedShape s : {FusedShape{4096, 4096, 64}, FusedShape{100, 11008, 64}, FusedShape{70, 96, 32}}) {
    for (DType dtype : {DType::BF16, DType::F16}) {
      const auto w = quantize_on_gpu(random_tensor({s.n, s.k}, dtype, seed++), s.blocksize);
      const Tensor x = random_tensor({1, s.k}, dtype, seed++).to(kGpu);
      Tensor staged = Tensor::empty({1, s.n}, dtype, kGpu), unstaged = Tensor::empty({1, s.n}, dtype, kGpu);
      ops::cuda::fused4::set_gemv_staging(true);
      ops::linear_4bit(x, w, Tensor{}, staged);
      ops::cuda::fused4::set_gemv_staging(false);
      ops::linear_4bit(x, w, Tensor{}, unstaged);
      ops::cuda::fused4::set_gemv_staging(true);
      EXPECT_TRUE(same_bytes(staged, unstaged)) << s.n << " x " << s.k << " " << dtype_name(dtype);
    }
  }
}

// A prompt's 4-bit product on the GPU dequantizes the weight and calls
// cuBLAS: dequantize_4bit_weight gives that weight (the CPU's values), and
// linear on it gives linear_4bit's bits (what the decoder's dequantize-ahead
// pipeline relies on).
TEST(Linear4bitFusedCuda, DequantizedWeightGivesLinear4bitBits) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 300;
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (const FusedShape s : {FusedShape{192, 224, 64}, FusedShape{100, 4160, 32}}) {
      const Tensor w_dense = random_tensor({s.n, s.k}, dtype, seed++);
      const auto w = quantize_on_gpu(w_dense, s.blocksize);
      const int64_t rows = 300;
      ASSERT_TRUE(ops::linear_4bit_dequantizes(rows, dtype, kGpu, w));
      EXPECT_FALSE(ops::linear_4bit_dequantizes(1, dtype, kGpu, w));
      Tensor deq = Tensor::empty({s.n, s.k}, dtype, kGpu);
      ops::dequantize_4bit_weight(w, deq);
      const ops::Blockwise4bitWeight on_cpu = testing::weight_on(w, Device::cpu());
      Tensor deq_cpu = Tensor::empty({s.n, s.k}, dtype);
      ops::dequantize_4bit_weight(on_cpu, deq_cpu);
      // (Equal values: the CPU may write +0 where the GPU writes -0.)
      EXPECT_TRUE(testing::to_floats(deq.to(Device::cpu())) == testing::to_floats(deq_cpu)) << s.n << " x " << s.k;
      const Tensor x = random_tensor({rows, s.k}, dtype, seed++).to(kGpu);
      const Tensor bias = random_tensor({s.n}, dtype, seed++).to(kGpu);
      Tensor want = Tensor::empty({rows, s.n}, dtype, kGpu), got = Tensor::empty({rows, s.n}, dtype, kGpu);
      ops::linear_4bit(x, w, bias, want);
      ops::linear(x, deq, bias, got);
      EXPECT_TRUE(same_bytes(got, want)) << s.n << " x " << s.k << " " << dtype_name(dtype);
    }
  }
}

}  // namespace
}  // namespace lowbit
