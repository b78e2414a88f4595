// Properties of the blockwise formats beyond the reference data: any length,
// every block size and dtype, error bounds on normal data, NaN/Inf, and clear
// errors for invalid arguments.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "lowbit/core/half.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/formats.h"
#include "support/test_support.h"

namespace lowbit::quant {
namespace {

std::vector<float> normal_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

Tensor tensor_of(const std::vector<float>& v, DType dtype) {
  return Tensor::from_vector(v).cast(dtype);
}

double mean_abs_error(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::fabs(double(a[i]) - double(b[i]));
  return a.empty() ? 0.0 : s / double(a.size());
}

// Error bound of one element: the code is chosen with the true absmax m (the
// nearest code is at most half the widest gap of the table away), then scaled
// by the stored absmax m' (double quantization moves it: |code| <= 1 adds
// |m' - m|), then rounded to the output dtype.
float element_bound(float half_gap, float m, float stored, float value, DType dtype) {
  const float rounding = dtype == DType::BF16 ? 0x1p-8f : dtype == DType::F16 ? 0x1p-11f : 0x1p-23f;
  return half_gap * m + std::fabs(stored - m) + rounding * std::fabs(value) + 1e-7f;
}

// Every length class (empty, 1, odd, not a multiple of the block), block size
// and dtype: shapes come back and every element is within element_bound.
TEST(Blockwise4Bit, RoundTripsAnyLengthBlockSizeAndDtype) {
  for (QuantType type : {QuantType::NF4, QuantType::FP4}) {
    const auto& code = traits(type).code;
    std::vector<float> sorted(code.begin(), code.end());
    std::sort(sorted.begin(), sorted.end());
    float widest = 0;
    for (size_t i = 1; i < sorted.size(); ++i) widest = std::max(widest, sorted[i] - sorted[i - 1]);
    for (DType dtype : {DType::F32, DType::F16, DType::BF16})
      for (int bs = 32; bs <= 4096; bs *= 2)
        for (int64_t n : {int64_t(0), int64_t(1), int64_t(2), int64_t(31), int64_t(bs - 1), int64_t(bs + 1),
                          int64_t(3 * bs + 7)}) {
          const std::vector<float> v = testing::to_floats(tensor_of(normal_values(n, uint32_t(n + bs)), dtype));
          const Tensor x = tensor_of(v, dtype);
          for (bool dq : {false, true}) {
            QuantState state;
            const Tensor packed = quantize_4bit(x, type, bs, dq, state);
            ASSERT_EQ(packed.shape(), (Shape{(n + 1) / 2, 1}));
            EXPECT_EQ(state.blocks(), (n + bs - 1) / bs);
            const Tensor back = dequantize_4bit(packed, state);
            ASSERT_EQ(back.shape(), x.shape());
            ASSERT_EQ(back.dtype(), dtype);
            const std::vector<float> got = testing::to_floats(back);
            const std::vector<float> stored = testing::to_floats(dequantize_nested_absmax(state));
            QuantState plain;
            quantize_4bit(x, type, bs, false, plain);
            const std::vector<float> absmax = testing::to_floats(plain.absmax);
            for (int64_t i = 0; i < n; ++i) {
              const size_t b = size_t(i / bs);
              EXPECT_LE(std::fabs(got[size_t(i)] - v[size_t(i)]),
                        element_bound(widest / 2, absmax[b], stored[b], got[size_t(i)], dtype))
                  << traits(type).name << " " << dtype_name(dtype) << " bs" << bs << " n" << n << " i" << i;
            }
          }
        }
  }
}

TEST(Blockwise8Bit, RoundTripsAnyLengthBlockSizeAndDtype) {
  for (DType dtype : {DType::F32, DType::F16, DType::BF16})
    for (int bs = 64; bs <= 4096; bs *= 2)
      for (int64_t n : {int64_t(0), int64_t(1), int64_t(2), int64_t(bs - 1), int64_t(bs + 1), int64_t(3 * bs + 7)}) {
        const std::vector<float> v = testing::to_floats(tensor_of(normal_values(n, uint32_t(n * 3 + bs)), dtype));
        const Tensor x = tensor_of(v, dtype).reshape({n});
        for (bool nested : {false, true}) {
          QuantState state;
          const Tensor codes = quantize_blockwise(x, bs, nested, state);
          ASSERT_EQ(codes.shape(), x.shape());
          const std::vector<float> got = testing::to_floats(dequantize_blockwise(codes, state, DType::F32));
          const std::vector<float> stored = testing::to_floats(dequantize_nested_absmax(state));
          QuantState plain;
          quantize_blockwise(x, bs, false, plain);
          const std::vector<float> absmax = testing::to_floats(plain.absmax);
          for (int64_t i = 0; i < n; ++i) {
            const size_t b = size_t(i / bs);
            // The dynamic map's widest gap is 0.0140625 (between 0.1 and 1).
            EXPECT_LE(std::fabs(got[size_t(i)] - v[size_t(i)]),
                      element_bound(0.0140625f / 2, absmax[b], stored[b], got[size_t(i)], DType::F32))
                << dtype_name(dtype) << " bs" << bs << " n" << n << " i" << i;
          }
        }
      }
}

// Mean absolute error on standard normal data, 2^20 values. Expected values
// come from an independent model (each x / absmax rounded to the nearest code
// value, Monte Carlo over N(0,1) blocks; docs/quantization.md): NF4 bs64
// 0.0729, FP4 bs64 0.0965, NF4 bs4096 0.0923, dynamic 8-bit bs4096 0.00999.
// Bounds are those +-5%; double quantization adds < 0.5%.
TEST(Blockwise, MeanAbsErrorOnStandardNormalData) {
  const int64_t n = 1 << 20;
  const std::vector<float> v = normal_values(n, 7);
  const Tensor x = tensor_of(v, DType::F32);
  struct Bound {
    QuantType type;
    int bs;
    bool dq;
    double lo, hi;
  };
  for (const Bound& b : {Bound{QuantType::NF4, 64, false, 0.0693, 0.0765}, Bound{QuantType::NF4, 64, true, 0.0693, 0.0765},
                         Bound{QuantType::FP4, 64, false, 0.0917, 0.1013}, Bound{QuantType::NF4, 4096, false, 0.0877, 0.0969}}) {
    QuantState state;
    const Tensor packed = quantize_4bit(x, b.type, b.bs, b.dq, state);
    const double mae = mean_abs_error(v, testing::to_floats(dequantize_4bit(packed, state)));
    std::printf("mae %s bs%d%s %.5f\n", std::string(traits(b.type).name).c_str(), b.bs, b.dq ? " dq" : "", mae);
    RecordProperty(std::string(traits(b.type).name) + "_bs" + std::to_string(b.bs) + (b.dq ? "_dq" : ""), std::to_string(mae));
    EXPECT_GT(mae, b.lo) << traits(b.type).name << " bs" << b.bs;
    EXPECT_LT(mae, b.hi) << traits(b.type).name << " bs" << b.bs;
  }
  QuantState state;
  const Tensor codes = quantize_blockwise(x, 4096, false, state);
  const double mae8 = mean_abs_error(v, testing::to_floats(dequantize_blockwise(codes, state)));
  std::printf("mae dynamic8 bs4096 %.5f\n", mae8);
  EXPECT_GT(mae8, 0.00949);
  EXPECT_LT(mae8, 0.01049);
}

// bitsandbytes' CUDA semantics (docs/quantization.md): NaN is skipped by the
// absmax and coded 0; +-Inf makes the absmax Inf, every finite value of that
// block then codes as 0 * (1/Inf) and dequantizes to code[q] * Inf.
TEST(Blockwise4Bit, NaNAndInfFollowBitsandbytes) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> v(128, 0.5f);
  v[3] = nan;
  v[5] = -2.0f;
  v[70] = inf;
  QuantState state;
  const Tensor packed = quantize_4bit(tensor_of(v, DType::F32), QuantType::NF4, 64, false, state);
  EXPECT_EQ(state.absmax.data<float>()[0], 2.0f);  // NaN skipped
  EXPECT_TRUE(std::isinf(state.absmax.data<float>()[1]));
  const uint8_t* p = packed.data<uint8_t>();
  EXPECT_EQ(p[1] & 15, 0);                          // element 3: NaN -> code 0
  EXPECT_EQ(p[64 / 2] >> 4, 7);                     // 0.5 * (1/Inf) = 0 -> code of 0.0
  const std::vector<float> back = testing::to_floats(dequantize_4bit(packed, state));
  EXPECT_EQ(back[3], -2.0f);                        // code 0 is -1.0
  EXPECT_TRUE(std::isnan(back[64]));                // 0.0 * Inf
  // An all-zero block: absmax 0, 0 * (1/0) is NaN, so the codes are 0 and
  // dequantize to -1 * 0 = -0.
  std::vector<float> zeros(64, 0.0f);
  const Tensor zp = quantize_4bit(tensor_of(zeros, DType::F32), QuantType::NF4, 64, false, state);
  EXPECT_EQ(zp.data<uint8_t>()[0], 0);
  EXPECT_EQ(std::bit_cast<uint32_t>(testing::to_floats(dequantize_4bit(zp, state))[0]), 0x80000000u);
}

TEST(Blockwise8Bit, NaNAndInfFollowBitsandbytes) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> v(128, 0.25f);
  v[1] = nan;
  v[2] = -1.0f;
  v[100] = -inf;
  QuantState state;
  const Tensor codes = quantize_blockwise(tensor_of(v, DType::F32), 64, false, state);
  EXPECT_EQ(state.absmax.data<float>()[0], 1.0f);
  EXPECT_EQ(codes.data<uint8_t>()[1], 0);  // NaN -> code 0 (-0.99297)
  EXPECT_TRUE(std::isinf(state.absmax.data<float>()[1]));
  const std::vector<float> back = testing::to_floats(dequantize_blockwise(codes, state));
  EXPECT_EQ(back[1], dynamic_map_signed()[0]);
  EXPECT_TRUE(std::isnan(back[64]));  // 0.25 * (1/Inf) = 0 -> code 127 (0.0), 0 * Inf
}

TEST(Blockwise, DequantizeIntoReusesTheOutput) {
  const std::vector<float> v = normal_values(1000, 3);
  QuantState s4, s8;
  const Tensor packed = quantize_4bit(tensor_of(v, DType::F32), QuantType::NF4, 64, true, s4);
  Tensor out = Tensor::empty({1000}, DType::BF16);
  dequantize_4bit_into(packed, s4, out);
  const std::vector<float> a = testing::to_floats(out), b = testing::to_floats(dequantize_4bit(packed, s4, DType::BF16));
  EXPECT_EQ(a, b);
  const Tensor codes = quantize_blockwise(tensor_of(v, DType::F32), 256, true, s8);
  dequantize_blockwise_into(codes, s8, out);
  EXPECT_EQ(testing::to_floats(out), testing::to_floats(dequantize_blockwise(codes, s8, DType::BF16)));
  Tensor small = Tensor::empty({999}, DType::F32);
  EXPECT_THROW(dequantize_4bit_into(packed, s4, small), Error);
  Tensor ints = Tensor::empty({1000}, DType::I32);
  EXPECT_THROW(dequantize_blockwise_into(codes, s8, ints), Error);
}

TEST(Blockwise, InvalidArgumentsGiveClearErrors) {
  const Tensor x = Tensor::from_vector(std::vector<float>(100, 1.0f));
  QuantState state;
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { quantize_4bit(x, QuantType::NF4, 48, false, state); }).find("32, 64, 128"), std::string::npos);
  EXPECT_NE(message([&] { quantize_4bit(x, QuantType::NF4, 8192, false, state); }).find("block size 8192"), std::string::npos);
  EXPECT_NE(message([&] { quantize_blockwise(x, 32, false, state); }).find("64, 128"), std::string::npos);
  EXPECT_NE(message([&] { quantize_4bit(x, QuantType::Dynamic8, 64, false, state); }).find("nf4 or fp4"), std::string::npos);
  const Tensor ints = Tensor::from_vector(std::vector<int32_t>(10, 1));
  EXPECT_NE(message([&] { quantize_4bit(ints, QuantType::NF4, 64, false, state); }).find("f32, f16 or bf16"), std::string::npos);
  EXPECT_NE(message([] { parse_quant_type("nf5"); }).find("nf4, fp4"), std::string::npos);
  EXPECT_EQ(parse_quant_type("fp4"), QuantType::FP4);
  // A state that does not fit the data.
  const Tensor packed = quantize_4bit(x, QuantType::NF4, 64, false, state);
  QuantState wrong = state;
  wrong.shape = {300};
  EXPECT_NE(message([&] { dequantize_4bit(packed, wrong); }).find("150 bytes"), std::string::npos);
  EXPECT_NE(message([&] { dequantize_4bit(packed, state, DType::I32); }).find("f32, f16 or bf16"), std::string::npos);
}

}  // namespace
}  // namespace lowbit::quant
