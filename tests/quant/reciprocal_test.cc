// The GPU's approximate reciprocal as lowbit reproduces it on the CPU
// (quant/reciprocal.h); the CUDA tests check the device's own against it
// through the formats' bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "quant/reciprocal.h"

namespace lowbit::quant {
namespace {

float with_mantissa(uint32_t index10) { return std::bit_cast<float>(0x3f800000u | index10 << 13); }

TEST(GpuReciprocal, MeasuredOneUlpDeviationsOfTenBitMantissas) {
  int up = 0, down = 0;
  for (uint32_t i = 0; i < 1024; ++i) {
    const float x = with_mantissa(i);
    const float exact = 1.0f / x, gpu = gpu_reciprocal(x);
    if (gpu > exact) ++up;
    if (gpu < exact) ++down;
    EXPECT_LE(std::fabs(gpu - exact), std::fabs(std::nextafter(exact, 0.0f) - exact)) << x;
  }
  // The H200 measurement: 90 mantissas one ulp up, 40 one ulp down.
  EXPECT_EQ(up, 90);
  EXPECT_EQ(down, 40);
  // Two of them, in bf16 terms 1 + 4/128 and 1 + 6/128.
  EXPECT_EQ(gpu_reciprocal(1.03125f), std::nextafter(1.0f / 1.03125f, 0.0f));
  EXPECT_EQ(gpu_reciprocal(1.046875f), std::nextafter(1.0f / 1.046875f, 1.0f));
}

TEST(GpuReciprocal, DependsOnTheMantissaAloneAndKeepsTheSign) {
  for (uint32_t i = 0; i < 1024; ++i) {
    const float x = with_mantissa(i), r = gpu_reciprocal(x);
    for (int e : {-100, -20, -1, 1, 7, 60, 100}) {
      EXPECT_EQ(gpu_reciprocal(std::ldexp(x, e)), std::ldexp(r, -e)) << x << " * 2^" << e;
      EXPECT_EQ(gpu_reciprocal(-std::ldexp(x, e)), -std::ldexp(r, -e)) << x << " * 2^" << e;
    }
  }
}

TEST(GpuReciprocal, FlushesSubnormalsAndKeepsSpecialValues) {
  EXPECT_EQ(gpu_reciprocal(0.0f), HUGE_VALF);
  EXPECT_EQ(gpu_reciprocal(-0.0f), -HUGE_VALF);
  EXPECT_EQ(gpu_reciprocal(1e-40f), HUGE_VALF);   // subnormal input
  EXPECT_EQ(gpu_reciprocal(3e38f), 0.0f);         // subnormal result
  EXPECT_TRUE(std::signbit(gpu_reciprocal(-3e38f)));
  EXPECT_EQ(gpu_reciprocal(HUGE_VALF), 0.0f);
  EXPECT_TRUE(std::isnan(gpu_reciprocal(NAN)));
  // Mantissas beyond 10 bits: the correctly rounded reciprocal.
  EXPECT_EQ(gpu_reciprocal(1.2345678f), 1.0f / 1.2345678f);
}

}  // namespace
}  // namespace lowbit::quant
