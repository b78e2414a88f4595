// LLM.int8 vector-wise quantization beyond the reference data.
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "lowbit/quant/int8.h"
#include "support/test_support.h"

namespace lowbit::quant {
namespace {

TEST(Int8Vectorwise, RoundTripErrorIsAtMostHalfAStep) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist;
  for (int64_t rows : {1, 3, 17})
    for (int64_t cols : {1, 7, 64, 513}) {
      std::vector<float> v(size_t(rows * cols));
      for (float& x : v) x = dist(rng);
      const Int8Rows q = int8_vectorwise_quant(Tensor::from_vector(v, {rows, cols}), 0.0f);
      const Tensor back = int8_vectorwise_dequant(q.codes, q.row_stats);
      ASSERT_EQ(back.shape(), (Shape{rows, cols}));
      for (int64_t r = 0; r < rows; ++r) {
        const float m = q.row_stats.data<float>()[r];
        for (int64_t c = 0; c < cols; ++c)
          EXPECT_LE(std::fabs(back.data<float>()[r * cols + c] - v[size_t(r * cols + c)]), m / 127 * 0.5f + 1e-6f);
      }
    }
}

TEST(Int8Vectorwise, OutliersAreExcludedAndTheirColumnsCleared) {
  // 3 rows: column 1 holds an outlier in row 0 only.
  const std::vector<float> v = {1.0f, 8.0f, -2.0f, 0.5f, 1.0f, 4.0f, 0.25f, 2.0f, -1.0f};
  const Int8Rows q = int8_vectorwise_quant(Tensor::from_vector(v, {3, 3}), 6.0f);
  ASSERT_EQ(q.outlier_cols.numel(), 1);
  EXPECT_EQ(q.outlier_cols.data<int32_t>()[0], 1);
  EXPECT_EQ(q.row_stats.data<float>()[0], 2.0f);  // 8.0 excluded
  EXPECT_EQ(q.row_stats.data<float>()[1], 4.0f);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(q.codes.data<int8_t>()[r * 3 + 1], 0) << r;
  EXPECT_EQ(q.codes.data<int8_t>()[2], -127);
  // One row: only the outlier itself is zeroed (bitsandbytes skips the column pass).
  const Int8Rows one = int8_vectorwise_quant(Tensor::from_vector(std::vector<float>{1.0f, 8.0f, 2.0f}, {1, 3}), 6.0f);
  EXPECT_EQ(one.codes.data<int8_t>()[1], 0);
  EXPECT_EQ(one.codes.data<int8_t>()[2], 127);
}

TEST(Int8Vectorwise, ZeroRowsAndNaNFollowBitsandbytes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Int8Rows q = int8_vectorwise_quant(Tensor::from_vector(std::vector<float>{0, 0, 1.0f, nan}, {2, 2}), 0.0f);
  EXPECT_EQ(q.row_stats.data<float>()[0], 0.0f);
  EXPECT_EQ(q.codes.data<int8_t>()[0], 0);  // 0 * (127/0) is NaN, coded 0
  EXPECT_EQ(q.row_stats.data<float>()[1], 1.0f);  // NaN skipped by the absmax
  EXPECT_EQ(q.codes.data<int8_t>()[3], 0);
}

TEST(Int8Vectorwise, InvalidInputsGiveClearErrors) {
  EXPECT_THROW(int8_vectorwise_quant(Tensor::from_vector(std::vector<int32_t>{1, 2}, {1, 2})), Error);
  EXPECT_THROW(int8_vectorwise_quant(Tensor::from_vector(std::vector<float>{1, 2}, {1, 2}), -1.0f), Error);
  const Int8Rows q = int8_vectorwise_quant(Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}));
  EXPECT_THROW(int8_vectorwise_dequant(q.codes, Tensor::from_vector(std::vector<float>{1.0f})), Error);
  EXPECT_THROW(quantize_int8_rowwise(Tensor::from_vector(std::vector<float>{1, 2})), Error);
}

}  // namespace
}  // namespace lowbit::quant
