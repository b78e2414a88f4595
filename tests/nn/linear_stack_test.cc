// nn::Linear::stack: q/k/v or gate/up as one layer gives each part's outputs
// side by side, bit for bit, in every format; parts that cannot be stacked
// give an undefined layer.
#include <cstring>
#include <random>

#include "lowbit/core/half.h"
#include "lowbit/nn/linear.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/int8.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

Tensor random_tensor(Shape shape, DType dtype, uint32_t seed) { return testing::random_normal(shape, dtype, seed, 0.5f); }

nn::Linear make(const std::string& format, const Tensor& w, const Tensor& bias) {
  if (format == "dense") return nn::Linear::dense(w, bias);
  if (format == "int8") {
    const auto q8 = quant::quantize_int8_rowwise(w);
    return nn::Linear::int8(q8.codes, q8.scb, 6.0f, bias);
  }
  quant::QuantState state;
  ops::Blockwise4bitWeight q4{.type = quant::QuantType::NF4};
  q4.packed = quant::quantize_4bit(w, quant::QuantType::NF4, 64, false, state);
  q4.absmax = state.absmax;
  q4.code = state.code;
  q4.out_features = w.dim(0);
  q4.in_features = w.dim(1);
  q4.dtype = w.dtype();
  return nn::Linear::blockwise_4bit(q4, bias);
}

TEST(LinearStack, OutputsEqualThePartsSideBySide) {
  const DType dtype = DType::F16;
  for (const std::string format : {"dense", "int8", "nf4"})
    for (bool with_bias : {false, true})
      for (int64_t tokens : {1, 5}) {
        const Shape outs = {64, 32, 32};
        std::vector<nn::Linear> parts;
        uint32_t seed = 1;
        for (int64_t o : outs)
          parts.push_back(make(format, random_tensor({o, 128}, dtype, seed++),
                               with_bias ? random_tensor({o}, dtype, seed++) : Tensor{}));
        const nn::Linear stacked = nn::Linear::stack(parts);
        ASSERT_TRUE(stacked.defined()) << format;
        EXPECT_EQ(stacked.out_features(), 128);
        EXPECT_EQ(stacked.format(), parts.front().format());
        size_t bytes = 0;
        for (const auto& p : parts) bytes += p.weight_bytes();
        EXPECT_EQ(stacked.weight_bytes(), bytes);
        const Tensor x = random_tensor({tokens, 128}, dtype, 99);
        const Tensor y = stacked.forward(x);
        int64_t col = 0;
        for (const auto& p : parts) {
          const Tensor part = p.forward(x);
          for (int64_t t = 0; t < tokens; ++t)
            EXPECT_EQ(std::memcmp(part.data<f16>() + t * p.out_features(), y.data<f16>() + t * 128 + col,
                                  size_t(p.out_features()) * 2),
                      0)
                << format << " part at column " << col << " token " << t;
          col += p.out_features();
        }
      }
}

// Double-quantized layers stack with each part's offset kept (the GPU's
// kernels decode them per block); parts that leave a nested block unfinished
// before the next part, or mix double-quantized and plain absmax, do not.
TEST(LinearStack, DoubleQuantizedPartsKeepTheirOffsets) {
  const DType dtype = DType::BF16;
  const auto layer = [&](int64_t rows, float scale, uint32_t seed) {
    return nn::Linear::blockwise_4bit(testing::double_quantized_stack(
        {testing::random_normal({rows, 256}, dtype, seed, scale)}, quant::QuantType::NF4, 64));
  };
  const std::vector<nn::Linear> parts = {layer(128, 1.0f, 1), layer(64, 3.0f, 2), layer(70, 0.2f, 3)};
  const nn::Linear stacked = nn::Linear::stack(parts);
  ASSERT_TRUE(stacked.defined());
  EXPECT_EQ(stacked.out_features(), 262);
  size_t bytes = 0;
  for (const auto& p : parts) bytes += p.weight_bytes();
  EXPECT_EQ(stacked.weight_bytes(), bytes);
  const Tensor x = testing::random_normal({3, 256}, dtype, 9);
  const Tensor y = stacked.forward(x);
  int64_t col = 0;
  for (const auto& p : parts) {
    const Tensor part = p.forward(x);
    for (int64_t t = 0; t < 3; ++t)
      EXPECT_EQ(std::memcmp(part.data<bf16>() + t * p.out_features(), y.data<bf16>() + t * 262 + col,
                            size_t(p.out_features()) * 2),
                0)
          << "part at column " << col << " token " << t;
    col += p.out_features();
  }
  // 70 x 256 / 64 = 280 absmax blocks: a part after it would start inside a nested block.
  EXPECT_FALSE(nn::Linear::stack(std::vector{parts[2], parts[0]}).defined());
  EXPECT_FALSE(nn::Linear::stack(std::vector{parts[0], make("nf4", random_tensor({64, 256}, dtype, 4), {})}).defined());
  // More parts than a weight keeps offsets for.
  EXPECT_FALSE(nn::Linear::stack(std::vector{parts[0], parts[1], parts[0], parts[1], parts[2]}).defined());
}

TEST(LinearStack, RefusesPartsThatDoNotLineUp) {
  const Tensor w = random_tensor({32, 64}, DType::F16, 3);
  const nn::Linear dense = make("dense", w, {}), int8 = make("int8", w, {}), nf4 = make("nf4", w, {});
  const nn::Linear with_bias = make("dense", w, random_tensor({32}, DType::F16, 4));
  EXPECT_FALSE(nn::Linear::stack(std::vector{dense, int8}).defined());
  EXPECT_FALSE(nn::Linear::stack(std::vector{dense, with_bias}).defined());
  // 3 x 10 = 30 weights: the first part's last block would run into the next.
  const nn::Linear odd = make("nf4", random_tensor({3, 10}, DType::F16, 5), {});
  const nn::Linear odd2 = make("nf4", random_tensor({3, 10}, DType::F16, 6), {});
  EXPECT_FALSE(nn::Linear::stack(std::vector{odd, odd2}).defined());
  EXPECT_FALSE(nn::Linear::stack(std::vector{dense, make("dense", random_tensor({32, 48}, DType::F16, 7), {})}).defined());
}

}  // namespace
}  // namespace lowbit
