// The optimizers against bitsandbytes' own results (dev-optim.safetensors):
// 12 steps from p0 with fixed gradients, then the parameters, the 8-bit codes
// and the absmax of every block.
#include <cmath>
#include <cstring>

#include <gtest/gtest.h>

#include "lowbit/train/optim/optimizer.h"
#include "lowbit/quant/formats.h"
#include "support/test_support.h"

namespace lowbit::train {
namespace {

struct Case {
  const char* name;
  OptimizerKind kind;
  int bits;
  float lr, weight_decay;
};

io::SafetensorsReader& golden() {
  static io::SafetensorsReader reader =
      io::SafetensorsReader::open(lowbit::testing::golden_dir() / "dev-optim.safetensors");
  return reader;
}

Optimizer run_case(const Case& c, Tensor& param) {
  auto& g = golden();
  param = g.tensor("p0").clone();
  OptimizerConfig config = OptimizerConfig::defaults(c.kind, c.bits);
  config.lr = c.lr;
  config.weight_decay = c.weight_decay;
  if (c.kind == OptimizerKind::SGD) config.momentum = 0.9f;
  Optimizer opt(config);
  opt.add(param);
  Tensor grads = g.tensor("grads");
  for (int64_t s = 0; s < grads.dim(0); ++s) {
    Tensor row = grads.rows(s, s + 1).reshape({param.numel()}).clone();
    opt.step(std::span<const Tensor>(&row, 1));
  }
  return opt;
}

// Parameters. bitsandbytes forms the bias correction 1 - beta^t in fp32 on the
// device (__powf in the 8-bit kernels, powf in the 32-bit ones); one ulp of
// beta2^t (6e-8) becomes a relative error of 6e-8 / (1 - beta2^t), up to 6e-5
// at t = 1, through the cancellation, and sqrt halves it: each step's size can
// differ by ~3e-5 of itself from a host computing the same formula. The other
// terms (fast division, fused multiply-adds) add a few ulp. So the tolerance
// is 1e-4 of the largest distance the 12 steps can travel (12 lr: every rule
// here moves a parameter by at most about lr per step) plus 4 ulp of its value.
// Where a state code landed on the other side of a rounding boundary in some
// step, that element's later steps differ by one code step of its state: those
// few elements are allowed 12 steps of lr (and counted).
void expect_params(const Case& c, const Tensor& ours, double* max_err) {
  auto theirs = golden().tensor(std::string(c.name) + ".p_final");
  auto p0 = golden().tensor("p0");
  ASSERT_EQ(theirs.numel(), ours.numel());
  const float* a = ours.data<float>();
  const float* b = theirs.data<float>();
  const float* s = p0.data<float>();
  int64_t loose = 0;
  double worst = 0, worst_rel = 0;
  for (int64_t i = 0; i < ours.numel(); ++i) {
    const double err = std::fabs(double(a[i]) - b[i]);
    const double travelled = std::fabs(double(b[i]) - s[i]);
    worst = std::max(worst, err);
    if (travelled > 0) worst_rel = std::max(worst_rel, err / travelled);
    const double tight = 1e-4 * 12 * c.lr + 4 * std::ldexp(1.0, std::ilogb(std::fabs(b[i]) + 1e-30f) - 23);
    if (err > tight) {
      ++loose;
      ASSERT_LE(err, 12.0 * c.lr) << c.name << " element " << i;
    }
  }
  *max_err = worst;
  EXPECT_LE(loose, ours.numel() / 1000) << c.name << ": elements off by more than rounding";
  std::printf("%-16s p_final max |diff| %.3g (%.3g of the distance travelled), %lld of %lld elements beyond "
              "rounding\n", c.name, worst, worst_rel, (long long)loose, (long long)ours.numel());
}

class OptimGolden : public ::testing::TestWithParam<Case> {};

TEST_P(OptimGolden, MatchesBitsandbytes) {
  const Case c = GetParam();
  Tensor param;
  Optimizer opt = run_case(c, param);
  double max_err = 0;
  expect_params(c, param, &max_err);
  const ParamState& st = opt.state(0);
  ASSERT_EQ(st.bits, c.bits);
  ASSERT_EQ(st.step, 12);
  for (int k = 0; k < st.num_states; ++k) {
    const std::string key = std::string(c.name) + ".state.state" + std::to_string(k + 1);
    Tensor theirs = golden().tensor(key);
    if (c.bits == 32) {
      const float* a = st.state[k].data<float>();
      const float* b = theirs.data<float>();
      for (int64_t i = 0; i < theirs.numel(); ++i)
        ASSERT_NEAR(a[i], b[i], 1e-6 * std::fabs(b[i]) + 1e-12) << key << " " << i;
      continue;
    }
    const uint8_t* a = st.state[k].data<uint8_t>();
    const uint8_t* b = theirs.data<uint8_t>();
    int64_t differ = 0, far = 0;
    for (int64_t i = 0; i < theirs.numel(); ++i) {
      differ += a[i] != b[i];
      far += std::abs(int(a[i]) - int(b[i])) > 1;
    }
    Tensor am_theirs = golden().tensor(std::string(c.name) + ".state.absmax" + std::to_string(k + 1));
    const float* am = st.absmax[k].data<float>();
    const float* bm = am_theirs.data<float>();
    int64_t absmax_differ = 0;
    for (int64_t b2 = 0; b2 < am_theirs.numel(); ++b2) {
      absmax_differ += am[b2] != bm[b2];
      EXPECT_NEAR(am[b2], bm[b2], 1e-5 * std::fabs(bm[b2])) << key << " absmax block " << b2;
    }
    std::printf("%-16s state%d: %lld of %lld codes differ (%lld by more than one code), %lld of %lld absmax differ\n",
                c.name, k + 1, (long long)differ, (long long)theirs.numel(), (long long)far,
                (long long)absmax_differ, (long long)am_theirs.numel());
    // Codes may differ only where the value sits on a rounding boundary: rare, and by one code.
    EXPECT_LE(differ, theirs.numel() / 1000) << key;
    EXPECT_EQ(far, 0) << key;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Bitsandbytes, OptimGolden,
    ::testing::Values(Case{"adam8bit", OptimizerKind::Adam, 8, 1e-3f, 0.0f},
                      Case{"adamw8bit", OptimizerKind::AdamW, 8, 1e-3f, 1e-2f},
                      Case{"pagedadamw8bit", OptimizerKind::AdamW, 8, 1e-3f, 1e-2f},
                      Case{"lion8bit", OptimizerKind::Lion, 8, 1e-4f, 1e-2f},
                      Case{"sgd8bit", OptimizerKind::SGD, 8, 1e-2f, 0.0f},
                      Case{"rmsprop8bit", OptimizerKind::RMSprop, 8, 1e-3f, 0.0f},
                      Case{"adagrad8bit", OptimizerKind::Adagrad, 8, 1e-2f, 0.0f},
                      Case{"adam32bit", OptimizerKind::Adam, 32, 1e-3f, 0.0f}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(OptimGolden, QuantMapsAreBitsandbytes) {
  Tensor q1 = golden().tensor("adam8bit.state.qmap1");
  Tensor q2 = golden().tensor("adam8bit.state.qmap2");
  EXPECT_EQ(0, std::memcmp(q1.raw_data(), quant::dynamic_map_signed().data(), 1024));
  EXPECT_EQ(0, std::memcmp(q2.raw_data(), quant::dynamic_map_unsigned().data(), 1024));
}

// 32-bit Adam against PyTorch's Adam: a different formula order, so only close.
TEST(OptimGolden, Adam32bitNearTorch) {
  Tensor param;
  Optimizer opt = run_case(Case{"adam32bit", OptimizerKind::Adam, 32, 1e-3f, 0.0f}, param);
  Tensor torch_p = golden().tensor("torch_adam.p_final");
  for (int64_t i = 0; i < param.numel(); ++i)
    ASSERT_NEAR(param.data<float>()[i], torch_p.data<float>()[i], 1e-6 + 1e-6 * std::fabs(torch_p.data<float>()[i]));
}

}  // namespace
}  // namespace lowbit::train
