// Each 8-bit optimizer trains a small least-squares regression to the loss of
// its 32-bit twin (within 1%); the state memory and resume-from-file claims.
#include <cblas.h>

#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "lowbit/train/optim/optimizer.h"
#include "support/test_support.h"

namespace lowbit::train {
namespace {

// y = x w* + noise, x [256, 64], w [64, 128]: 8192 weights (8-bit state).
struct Regression {
  static constexpr int N = 256, D = 64, K = 128;
  std::vector<float> x, y;
  Regression() : x(N * D), y(N * K) {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> w(D * K);
    for (float& v : x) v = normal(rng);
    for (float& v : w) v = normal(rng) * 0.5f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, D, 1.0f, x.data(), D, w.data(), K, 0.0f, y.data(), K);
    for (float& v : y) v += 0.1f * normal(rng);
  }
  // Mean squared error over all outputs; the gradient is that of the sum over
  // outputs (2/N x^T (x w - y)), so that its scale does not depend on K.
  float loss_and_grad(const float* w, float* grad) const {
    std::vector<float> r(y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, D, 1.0f, x.data(), D, w, K, -1.0f, r.data(), K);
    double loss = 0;
    for (float v : r) loss += double(v) * v;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, K, N, 2.0f / N, x.data(), D, r.data(), K, 0.0f, grad,
                K);
    return float(loss / (N * K));
  }
};

struct Setting {
  OptimizerKind kind;
  float lr;
  int steps;
};

float train(const Regression& problem, const Setting& s, int bits, int steps) {
  OptimizerConfig config = OptimizerConfig::defaults(s.kind, bits);
  config.lr = s.lr;
  config.weight_decay = 0.0f;
  config.beta3 = 0.999f;  // AdEMAMix: a slow EMA that this short run can fill
  Optimizer opt(config);
  // A non-zero start: LAMB and LARS scale steps by the parameter norm.
  Tensor w = Tensor::empty({Regression::D, Regression::K}, DType::F32);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  for (float& v : w.span<float>()) v = normal(rng);
  Tensor g = Tensor::zeros({Regression::D, Regression::K}, DType::F32);
  opt.add(w);
  // Linear decay to zero, as training runs do: sign (Lion) and RMS-normalized
  // steps otherwise hover at a distance set by lr and never settle.
  for (int i = 0; i < steps; ++i) {
    opt.set_lr(s.lr * float(steps - i) / float(steps));
    problem.loss_and_grad(w.data<float>(), g.data<float>());
    opt.step(std::span<const Tensor>(&g, 1));
  }
  if (steps > 0) EXPECT_EQ(opt.state(0).bits, bits);
  return problem.loss_and_grad(w.data<float>(), g.data<float>());
}

class OptimConvergence : public ::testing::TestWithParam<Setting> {};

TEST_P(OptimConvergence, EightBitReachesThirtyTwoBitLoss) {
  static const Regression problem;
  const Setting s = GetParam();
  const float start = train(problem, s, 32, 0);
  const float loss32 = train(problem, s, 32, s.steps);
  const float loss8 = train(problem, s, 8, s.steps);
  std::printf("%-9s start %.5f  32-bit %.6f  8-bit %.6f  ratio %.4f\n", std::string(optimizer_name(s.kind)).c_str(),
              start, loss32, loss8, loss8 / loss32);
  EXPECT_LT(loss32, 0.1f * start) << "the 32-bit run should learn the problem";
  EXPECT_LE(loss8, 1.01f * loss32);
}

INSTANTIATE_TEST_SUITE_P(
    Regression, OptimConvergence,
    ::testing::Values(Setting{OptimizerKind::Adam, 2e-2f, 500}, Setting{OptimizerKind::AdamW, 2e-2f, 500},
                      Setting{OptimizerKind::Lion, 1e-2f, 1000}, Setting{OptimizerKind::SGD, 1e-1f, 500},
                      Setting{OptimizerKind::RMSprop, 1e-2f, 1000}, Setting{OptimizerKind::Adagrad, 2e-1f, 500},
                      Setting{OptimizerKind::LAMB, 5e-2f, 800}, Setting{OptimizerKind::LARS, 1.0f, 500},
                      Setting{OptimizerKind::AdEMAMix, 2e-2f, 800}),
    [](const ::testing::TestParamInfo<Setting>& info) { return std::string(optimizer_name(info.param.kind)); });

TEST(OptimState, EightBitAdamStateBytesPerParameter) {
  OptimizerConfig config = OptimizerConfig::defaults(OptimizerKind::Adam, 8);
  Optimizer opt(config);
  const int64_t n = 1 << 20;
  opt.add(Tensor::zeros({n}, DType::F32));
  const double per_param = double(opt.state_bytes()) / double(n);
  std::printf("8-bit Adam: %.4f bytes of state per parameter\n", per_param);
  EXPECT_LE(per_param, 2.04);
}

TEST(OptimState, SmallTensorsAndOverridesKeep32BitState) {
  Optimizer opt(OptimizerConfig::defaults(OptimizerKind::AdamW, 8));
  opt.add(Tensor::zeros({4095}, DType::F32));
  opt.add(Tensor::zeros({8192}, DType::F32));
  ParamOverrides embedding;
  embedding.state_bits = 32;
  opt.add(Tensor::zeros({8192}, DType::F32), embedding);
  EXPECT_EQ(opt.state(0).bits, 32);
  EXPECT_EQ(opt.state(1).bits, 8);
  EXPECT_EQ(opt.state(2).bits, 32);
}

TEST(OptimState, ResumedRunContinuesBitForBit) {
  static const Regression problem;
  for (OptimizerKind kind : {OptimizerKind::AdamW, OptimizerKind::Lion, OptimizerKind::AdEMAMix}) {
    OptimizerConfig config = OptimizerConfig::defaults(kind, 8);
    config.percentile_clipping = 90;
    auto run = [&](Optimizer& opt, Tensor& w, int steps) {
      Tensor g = Tensor::zeros(w.shape(), DType::F32);
      for (int i = 0; i < steps; ++i) {
        problem.loss_and_grad(w.data<float>(), g.data<float>());
        opt.step(std::span<const Tensor>(&g, 1));
      }
    };
    Tensor w_full = Tensor::zeros({Regression::D, Regression::K}, DType::F32);
    Optimizer full(config);
    full.add(w_full);
    run(full, w_full, 20);

    Tensor w_a = Tensor::zeros({Regression::D, Regression::K}, DType::F32);
    Optimizer first(config);
    first.add(w_a);
    run(first, w_a, 10);
    const auto path = lowbit::testing::temp_dir("optim_resume") / "state.safetensors";
    first.save_state(path);
    Tensor w_b = w_a.clone();
    Optimizer resumed(config);
    resumed.add(w_b);
    resumed.load_state(path);
    run(resumed, w_b, 10);
    ASSERT_EQ(0, std::memcmp(w_b.raw_data(), w_full.raw_data(), w_full.nbytes())) << optimizer_name(kind);
    for (int k = 0; k < full.state(0).num_states; ++k)
      ASSERT_EQ(0, std::memcmp(resumed.state(0).state[k].raw_data(), full.state(0).state[k].raw_data(),
                               full.state(0).state[k].nbytes()));
  }
}

TEST(OptimState, LoadRejectsAnotherOptimizer) {
  Optimizer adam(OptimizerConfig::defaults(OptimizerKind::Adam, 8));
  adam.add(Tensor::zeros({8192}, DType::F32));
  const auto path = lowbit::testing::temp_dir("optim_reject") / "state.safetensors";
  adam.save_state(path);
  Optimizer lion(OptimizerConfig::defaults(OptimizerKind::Lion, 8));
  lion.add(Tensor::zeros({8192}, DType::F32));
  EXPECT_THROW(lion.load_state(path), Error);
}

}  // namespace
}  // namespace lowbit::train
