// nn::Linear: one interface over the weight formats.
#include <random>

#include "lowbit/nn/layers.h"
#include "lowbit/nn/linear.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/int8.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

Tensor random_tensor(Shape shape, DType dtype) {
  static std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = dist(rng);
  return Tensor::from_vector(v, shape).cast(dtype);
}

TEST(Linear, EveryFormatBehindOneForward) {
  const Tensor w = random_tensor({48, 64}, DType::F16), x = random_tensor({2, 64}, DType::F16);
  const Tensor bias = random_tensor({48}, DType::F16);
  const nn::Linear dense = nn::Linear::dense(w, bias);
  const auto q8 = quant::quantize_int8_rowwise(w);
  const nn::Linear int8 = nn::Linear::int8(q8.codes, q8.scb, 6.0f, bias);
  quant::QuantState state;
  ops::Blockwise4bitWeight q4{.type = quant::QuantType::FP4};
  q4.packed = quant::quantize_4bit(w, quant::QuantType::FP4, 64, false, state);
  q4.absmax = state.absmax;
  q4.code = state.code;
  q4.out_features = 48;
  q4.in_features = 64;
  q4.dtype = DType::F16;
  const nn::Linear fp4 = nn::Linear::blockwise_4bit(q4, bias);

  EXPECT_EQ(dense.format(), nn::WeightFormat::Dense);
  EXPECT_EQ(int8.format(), nn::WeightFormat::Int8Rowwise);
  EXPECT_EQ(fp4.format(), nn::WeightFormat::Blockwise4bit);
  EXPECT_EQ(dense.describe(), "f16 [48, 64]");
  EXPECT_EQ(int8.describe(), "int8 [48, 64]");
  EXPECT_EQ(fp4.describe(), "fp4 [48, 64]");
  EXPECT_EQ(dense.weight_bytes(), size_t(48 * 64 * 2 + 48 * 2));
  EXPECT_EQ(int8.weight_bytes(), size_t(48 * 64 + 48 * 4 + 48 * 2));
  EXPECT_EQ(fp4.weight_bytes(), size_t(48 * 64 / 2 + 48 * 4 + 48 * 2));

  // All three approximate the same product; quantization error bounds the gap.
  const auto want = testing::to_floats(dense.forward(x));
  for (const nn::Linear* l : {&int8, &fp4}) {
    const Tensor y = l->forward(x);
    EXPECT_EQ(y.shape(), (Shape{2, 48}));
    EXPECT_EQ(y.dtype(), DType::F16);
    const auto got = testing::to_floats(y);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1.0) << l->describe();
  }
  EXPECT_THROW(nn::Linear().forward(x), Error);
}

TEST(Layers, RmsNormAndEmbedding) {
  const nn::RMSNorm norm{Tensor::from_vector(std::vector<float>{1.0f, 2.0f}), 0.0f};
  const auto y = testing::to_floats(norm.forward(Tensor::from_vector(std::vector<float>{3.0f, 4.0f}, {1, 2})));
  const float rms = std::sqrt((9.0f + 16.0f) / 2.0f);
  EXPECT_FLOAT_EQ(y[0], 3.0f / rms);
  EXPECT_FLOAT_EQ(y[1], 2.0f * 4.0f / rms);
  const nn::Embedding embed{Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {3, 2})};
  const auto e = testing::to_floats(embed.forward(Tensor::from_vector(std::vector<int32_t>{2, 0}), DType::BF16));
  EXPECT_EQ(e, (std::vector<float>{4, 5, 0, 1}));
  EXPECT_THROW(embed.forward(Tensor::from_vector(std::vector<int32_t>{3}), DType::F32), Error);
}

}  // namespace
}  // namespace lowbit
