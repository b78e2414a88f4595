// The kernels' fast f32 -> bf16/f16 rounding equals core/half.h's conversions
// bit for bit (normal, subnormal, overflow, ties, NaN, infinities).
#include <bit>
#include <cmath>
#include <random>

#include "ops/dispatch.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

TEST(FastRounding, MatchesCoreConversions) {
  std::mt19937 rng(3);
  std::vector<float> values = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.0f, 65520.0f, 1e-8f, 6.1e-5f, 6.0e-5f,
                               INFINITY, -INFINITY, NAN, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, -2.5e-6f};
  for (int i = 0; i < 1000000; ++i) values.push_back(std::bit_cast<float>(uint32_t(rng())));
  for (float v : values) {
    ASSERT_EQ(ops::detail::store<f16>(v).bits, f32_to_f16(v).bits) << v;
    ASSERT_EQ(ops::detail::store<bf16>(v).bits, f32_to_bf16(v).bits) << v;
    if (!std::isnan(v)) {
      ASSERT_EQ(ops::detail::round_to<f16>(v), f16_to_f32(f32_to_f16(v))) << v;
      ASSERT_EQ(ops::detail::round_to<bf16>(v), bf16_to_f32(f32_to_bf16(v))) << v;
    }
  }
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

TEST(FastRounding, F16LoadMatchesCore) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const f16 h = f16::from_bits(uint16_t(bits));
    const float a = ops::detail::load(h), b = f16_to_f32(h);
    ASSERT_EQ(std::bit_cast<uint32_t>(a), std::bit_cast<uint32_t>(b)) << bits;
  }
}

}  // namespace
}  // namespace lowbit
