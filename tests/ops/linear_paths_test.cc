// The one-token (GEMV) path of each linear equals the many-token path (GEMM)
// on the same row: both accumulate in f32 (int8: exactly in int32).
#include <cmath>
#include <random>

#include "lowbit/ops/linear.h"
#include "lowbit/quant/int8.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

Tensor random_tensor(Shape shape, DType dtype, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = dist(rng);
  return Tensor::from_vector(v, shape).cast(dtype);
}

// Row 0 of a 3-token product against the same token alone.
template <typename Fn>
void expect_gemv_equals_gemm(const Tensor& x3, int64_t out_features, DType dtype, Fn&& run, double tolerance) {
  Tensor all = Tensor::empty({3, out_features}, dtype), one = Tensor::empty({1, out_features}, dtype);
  run(x3, all);
  run(x3.rows(0, 1), one);
  const auto a = testing::to_floats(all.rows(0, 1)), b = testing::to_floats(one);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tolerance * (1.0 + std::fabs(a[i]))) << i;
}

TEST(LinearPaths, DenseGemvEqualsGemm) {
  std::mt19937 rng(1);
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    const Tensor w = random_tensor({37, 203}, dtype, rng), x = random_tensor({3, 203}, dtype, rng);
    const Tensor bias = random_tensor({37}, dtype, rng);
    const double tol = dtype == DType::F32 ? 1e-5 : dtype == DType::BF16 ? 1.0 / 128 : 1.0 / 1024;
    expect_gemv_equals_gemm(x, 37, dtype, [&](const Tensor& in, Tensor& out) { ops::linear(in, w, bias, out); }, tol);
  }
}

TEST(LinearPaths, Int8GemvEqualsGemmExactly) {
  std::mt19937 rng(2);
  for (float threshold : {0.0f, 6.0f}) {
    const Tensor w = random_tensor({41, 1500}, DType::F16, rng, 0.05f);
    const Tensor x = random_tensor({3, 1500}, DType::F16, rng, 2.0f);  // some |x| >= 6
    const auto q = quant::quantize_int8_rowwise(w);
    // The int8 part is exact either way; only the outlier columns (which
    // differ between one row and three) change the f16 result.
    Tensor one_a = Tensor::empty({1, 41}, DType::F16), one_b = Tensor::empty({1, 41}, DType::F16);
    ops::linear_int8(x.rows(0, 1), q.codes, q.scb, Tensor{}, threshold, one_a);
    const Tensor x_twice = Tensor::empty({2, 1500}, DType::F16);
    std::memcpy(x_twice.raw_data(), x.raw_data(), x.rows(0, 1).nbytes());
    std::memcpy(static_cast<char*>(x_twice.raw_data()) + x.rows(0, 1).nbytes(), x.raw_data(), x.rows(0, 1).nbytes());
    Tensor two = Tensor::empty({2, 41}, DType::F16);
    ops::linear_int8(x_twice, q.codes, q.scb, Tensor{}, threshold, two);
    std::memcpy(one_b.raw_data(), two.raw_data(), one_b.nbytes());
    EXPECT_EQ(testing::to_floats(one_a), testing::to_floats(one_b)) << threshold;
  }
}

}  // namespace
}  // namespace lowbit
