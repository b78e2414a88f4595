#include <cmath>
#include <limits>
#include <string>

#include <gmock/gmock.h>

#include "lowbit/core/half.h"
#include "lowbit/core/tensor.h"
#include "lowbit/core/thread_pool.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f).bits, 0x3f80);
  // 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f).bits, 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f).bits, 0x3f81);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(INFINITY)), INFINITY);
}

TEST(Half, F16RoundTripsEveryValue) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const f16 h = f16::from_bits(uint16_t(b));
    const float f = f16_to_f32(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f).bits, h.bits) << b;
  }
}

TEST(Half, F16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(65504.0f).bits, 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f).bits, 0x7c00);  // halfway to the next power: Inf
  EXPECT_EQ(f32_to_f16(0x1p-25f).bits, 0x0000);  // half the smallest subnormal: ties to even (0)
  EXPECT_EQ(f32_to_f16(0x1.8p-25f).bits, 0x0001);
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f).bits, 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f).bits, 0xc000);
}

TEST(Tensor, ShapesViewsAndCopies) {
  Tensor t = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.dim(-1), 2);
  Tensor r = t.rows(1, 3);
  EXPECT_EQ(r.shape(), (Shape{2, 2}));
  EXPECT_EQ(r.data<float>()[0], 3.0f);
  Tensor flat = t.reshape({-1});
  EXPECT_EQ(flat.shape(), (Shape{6}));
  Tensor c = t.clone();
  c.data<float>()[0] = 42;
  EXPECT_EQ(t.data<float>()[0], 1.0f);
  EXPECT_THROW(t.reshape({4, 2}), Error);
  EXPECT_THROW(t.data<int32_t>(), Error);
  EXPECT_THROW(t.rows(2, 4), Error);
}

TEST(Tensor, CastBetweenFloatTypes) {
  Tensor t = Tensor::from_vector<float>({1.5f, -2.25f, 3.0e-3f});
  Tensor b = t.cast(DType::BF16).cast(DType::F32);
  EXPECT_EQ(b.data<float>()[0], 1.5f);
  EXPECT_NEAR(b.data<float>()[2], 3.0e-3f, 1e-5f);
  EXPECT_THROW(Tensor::zeros({2}, DType::I32).cast(DType::F32), Error);
}

TEST(Tensor, EmptyTensors) {
  Tensor t = Tensor::empty({0, 5}, DType::BF16);
  EXPECT_EQ(t.numel(), 0);
  EXPECT_EQ(t.nbytes(), 0u);
  EXPECT_EQ(storage_bytes(DType::U4, 7), 4u);
}

TEST(DType, ParsesNames) {
  EXPECT_EQ(parse_dtype("bfloat16"), DType::BF16);
  EXPECT_EQ(parse_dtype("f16"), DType::F16);
  EXPECT_THROW(parse_dtype("float8"), Error);
  DType d;
  EXPECT_TRUE(parse_safetensors_dtype("I8", d));
  EXPECT_EQ(d, DType::I8);
  EXPECT_FALSE(parse_safetensors_dtype("F8_E4M3", d));
}

TEST(Device, Parses) {
  EXPECT_EQ(Device::parse("cuda:1"), Device::cuda(1));
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_THROW(Device::parse("tpu"), Error);
}

TEST(Error, CarriesContext) {
  Error e = Error("bad shape").with_file("a.safetensors").with_tensor("w");
  EXPECT_STREQ(e.what(), "bad shape (file: a.safetensors, tensor: w)");
  EXPECT_EQ(e.context().tensor, "w");
}

TEST(ThreadPool, CoversRangeOnceAndPropagatesErrors) {
  std::vector<int> hits(100000, 0);
  parallel_for(0, hits.size(), 100, [&](size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; ++i) hits[i]++;
  });
  for (int h : hits) ASSERT_EQ(h, 1);
  EXPECT_THROW(parallel_for(0, 1000, 1, [](size_t lo, size_t) {
                 if (lo > 500) throw Error("boom");
               }),
               Error);
  // Nested calls run inline instead of deadlocking.
  std::atomic<int> total{0};
  parallel_for(0, 8, 1, [&](size_t lo, size_t hi) {
    parallel_for(0, 10, 1, [&](size_t a, size_t b) { total += int((hi - lo) * (b - a)); });
  });
  EXPECT_EQ(total.load(), 80);
}

// An allocation the host cannot make is an Error with its size, not a crash
// (4 EiB: more than any address space holds).
TEST(HostStorage, OutOfMemoryIsAnError) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "AddressSanitizer stops the process on an impossible allocation";
#endif
  try {
    Tensor::empty({int64_t(1) << 62}, DType::U8, Device::cpu());
    ADD_FAILURE() << "a 4 EB tensor was allocated";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("out of host memory: could not allocate 4611686.02 TB"));
  }
}

}  // namespace
}  // namespace lowbit
