// ops::argmax and ops::sample_token on the CPU: greedy choice (first index of
// the largest value), the warpers' support, the draw order, bad rows.
#include <cmath>

#include <gmock/gmock.h>

#include "lowbit/ops/sampling.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

TEST(Argmax, FirstLargestPerRowAndNanMarked) {
  Tensor x = Tensor::from_vector<float>({1, 5, 5, 2,                                   //
                                         -INFINITY, -INFINITY, -INFINITY, -INFINITY,  //
                                         0, NAN, 9, 1},
                                        {3, 4});
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    Tensor out = Tensor::empty({3}, DType::I32);
    ops::argmax(x.cast(dtype), out);
    EXPECT_EQ(out.data<int32_t>()[0], 1) << dtype_name(dtype);
    EXPECT_EQ(out.data<int32_t>()[1], 0) << dtype_name(dtype);
    EXPECT_EQ(out.data<int32_t>()[2], -1) << dtype_name(dtype);
  }
}

TEST(Argmax, RejectsBadShapes) {
  Tensor out = Tensor::empty({2}, DType::I32);
  EXPECT_THROW(ops::argmax(Tensor::zeros({2, 3, 4}, DType::F32), out), Error);
  EXPECT_THROW(ops::argmax(Tensor::zeros({3, 4}, DType::F32), out), Error);
  Tensor wrong = Tensor::empty({2}, DType::I64);
  EXPECT_THROW(ops::argmax(Tensor::zeros({2, 4}, DType::F32), wrong), Error);
}

int32_t draw(const std::vector<float>& logits, ops::SamplingParams p, double u, std::vector<int32_t> previous = {},
             DType dtype = DType::F32) {
  const Tensor x = Tensor::from_vector(logits, {1, int64_t(logits.size())}).cast(dtype);
  const Tensor prev = Tensor::from_vector(previous, {int64_t(previous.size())});
  Tensor out = Tensor::empty({1}, DType::I32);
  ops::sample_token(x, prev, p, u, out);
  return out.data<int32_t>()[0];
}

// u walks the kept tokens' cumulative probability in ascending id order.
TEST(SampleToken, InverseCdfInIdOrder) {
  const std::vector<float> l = {0.0f, std::log(2.0f), std::log(3.0f)};  // weights 1 : 2 : 3
  std::vector<int> counts(3);
  for (int i = 0; i < 600; ++i) ++counts[size_t(draw(l, {}, (i + 0.5) / 600))];
  EXPECT_EQ(counts, (std::vector<int>{100, 200, 300}));
  EXPECT_EQ(draw(l, {}, 0.0), 0);
  EXPECT_EQ(draw(l, {}, 0.999999), 2);
}

TEST(SampleToken, TopKTopPAndTies) {
  const std::vector<float> l = {1.0f, 4.0f, 3.0f, 2.0f, 4.0f};
  for (int i = 0; i < 50; ++i) {
    const double u = (i + 0.5) / 50;
    const int32_t k2 = draw(l, {.top_k = 2}, u);  // both 4.0s
    EXPECT_TRUE(k2 == 1 || k2 == 4) << u;
    const int32_t k3 = draw(l, {.top_k = 3}, u);  // and the 3.0
    EXPECT_TRUE(k3 == 1 || k3 == 2 || k3 == 4) << u;
  }
  // Equal scores: the nucleus takes ties in ascending id order, as many as
  // the mass needs (top_p 0.5 of four equal tokens and a negligible fifth: 3).
  const std::vector<float> ties = {5.0f, 5.0f, 5.0f, 5.0f, -20.0f};
  EXPECT_EQ(draw(ties, {.top_p = 0.5f}, 0.0), 0);
  EXPECT_EQ(draw(ties, {.top_p = 0.5f}, 0.999), 2);
  EXPECT_EQ(draw(ties, {.top_p = 0.2f}, 0.999), 0);
  // A tiny nucleus is the top token.
  EXPECT_EQ(draw(l, {.top_p = 1e-6f}, 0.99), 1);
}

TEST(SampleToken, PenaltyTemperatureAndBadRows) {
  // 2.0 seen before -> 1.0: the 1.9 is the only token of top_k 1.
  EXPECT_EQ(draw({2.0f, 1.9f}, {.top_k = 1, .repetition_penalty = 2.0f}, 0.5, {0, 0}), 1);
  // Negative scores are multiplied: -1 seen -> -2, below -1.5.
  EXPECT_EQ(draw({-1.0f, -1.5f}, {.top_k = 1, .repetition_penalty = 2.0f}, 0.5, {0}), 1);
  // A low temperature concentrates the mass on the top token.
  EXPECT_EQ(draw({0.0f, 1.0f}, {.temperature = 0.01f}, 0.999), 1);
  EXPECT_EQ(draw({1.0f, NAN, 2.0f}, {}, 0.5), -1);
  EXPECT_EQ(draw({-INFINITY, -INFINITY}, {}, 0.5), -1);
  EXPECT_THROW(draw({1.0f}, {.temperature = 0.0f}, 0.5), Error);
  EXPECT_THROW(draw({1.0f}, {.top_p = 0.0f}, 0.5), Error);
  EXPECT_THROW(draw({1.0f}, {}, 1.0), Error);
}

}  // namespace
}  // namespace lowbit
