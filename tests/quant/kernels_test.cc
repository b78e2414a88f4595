// The optimized CPU kernels (quant/kernels.h) against the scalar reference
// (quant/cpu/reference.h), bit for bit, on odd shapes and awkward values.
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include "lowbit/core/half.h"
#include "lowbit/quant/formats.h"
#include "lowbit/quant/kernels.h"
#include "quant/cpu/dynamic8_highway.h"
#include "quant/cpu/reference.h"
#include "quant/cpu/scalar.h"

namespace lowbit::quant {
namespace {

// Normal values with a sprinkling of zeros, NaN, +-Inf, subnormals, huge
// values and all-zero stretches (whole blocks of zeros hit 0 * Inf = NaN).
template <typename T>
std::vector<T> awkward_values(int64_t n, uint32_t seed, bool specials = true) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::uniform_int_distribution<int> pick(0, 199);
  std::vector<T> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float x = dist(rng);
    const int p = pick(rng);
    if (specials) {
      if (p == 0) x = std::numeric_limits<float>::quiet_NaN();
      if (p == 1) x = std::numeric_limits<float>::infinity();
      if (p == 2) x = -std::numeric_limits<float>::infinity();
      if (p == 3) x = 1e-40f;
      if (p == 4) x = 3e4f;
      if (p == 5) x = 0.0f;
    }
    if ((i / 700) % 5 == 3) x = 0.0f;
    v[size_t(i)] = from_f32<T>(x);
  }
  return v;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

const std::vector<int64_t> kLengths = {0, 1, 2, 3, 31, 32, 33, 63, 64, 65, 127, 1000, 4095, 4096, 4097, 70001};

// Runs `body` once per instruction set compiled into the kernels that this
// CPU supports (AVX-512, AVX2, SSE4, scalar...), so every dispatch target is
// checked, not only the best one.
template <typename Fn>
void for_each_target(Fn&& body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

template <typename T>
void check_4bit(QuantType type, int bs, int64_t n) {
  for (bool specials : {false, true}) {
    const std::vector<T> x = awkward_values<T>(n, uint32_t(n * 7 + bs), specials);
    const int64_t blocks = (n + bs - 1) / bs;
    std::vector<uint8_t> p_ref(static_cast<size_t>((n + 1) / 2)), p_opt(p_ref.size());
    std::vector<float> a_ref(static_cast<size_t>(blocks)), a_opt(static_cast<size_t>(blocks));
    ref::quantize_4bit(x.data(), n, type, bs, p_ref.data(), a_ref.data());
    cpu::quantize_4bit(x.data(), n, type, bs, p_opt.data(), a_opt.data());
    ASSERT_TRUE(same_bits(p_ref, p_opt)) << "quantize T" << sizeof(T) << " " << traits(type).name << " bs" << bs << " n" << n;
    ASSERT_TRUE(same_bits(a_ref, a_opt)) << "absmax T" << sizeof(T) << " " << traits(type).name << " bs" << bs << " n" << n;
    std::vector<T> d_ref(static_cast<size_t>(n)), d_opt(static_cast<size_t>(n));
    ref::dequantize_4bit(p_ref.data(), a_ref.data(), n, type, bs, d_ref.data());
    cpu::dequantize_4bit(p_ref.data(), a_ref.data(), n, type, bs, d_opt.data());
    ASSERT_TRUE(same_bits(d_ref, d_opt)) << "dequantize " << traits(type).name << " bs" << bs << " n" << n;
  }
}

TEST(QuantKernels, FourBitMatchesReference) {
  for_each_target([] {
    for (QuantType type : {QuantType::NF4, QuantType::FP4})
      for (int bs : {32, 64, 128, 256, 512, 1024, 2048, 4096})
        for (int64_t n : kLengths) {
          check_4bit<float>(type, bs, n);
          check_4bit<f16>(type, bs, n);
          check_4bit<bf16>(type, bs, n);
        }
  });
}

// The GEMV building block: any start, any length (rows of odd width).
TEST(QuantKernels, FourBitRangeMatchesReferenceAtAnyOffset) {
  const int64_t n = 9001;
  const std::vector<float> x = awkward_values<float>(n, 5);
  for_each_target([&] {
  for (QuantType type : {QuantType::NF4, QuantType::FP4})
    for (int bs : {32, 64, 256}) {
      std::vector<uint8_t> packed(static_cast<size_t>((n + 1) / 2));
      std::vector<float> absmax(static_cast<size_t>((n + bs - 1) / bs)), all(static_cast<size_t>(n));
      ref::quantize_4bit(x.data(), n, type, bs, packed.data(), absmax.data());
      ref::dequantize_4bit(packed.data(), absmax.data(), n, type, bs, all.data());
      for (int64_t first : {0, 1, 31, 33, 63, 64, 1001}) {
        for (int64_t count : {0, 1, 2, 33, 95, 1000, 4000}) {
          std::vector<float> out(static_cast<size_t>(count));
          cpu::dequantize_4bit_range_f32(packed.data(), absmax.data(), type, bs, first, count, out.data());
          ASSERT_TRUE(count == 0 || std::memcmp(out.data(), all.data() + first, size_t(count) * 4) == 0)
              << traits(type).name << " bs" << bs << " first " << first << " count " << count;
        }
      }
    }
  });
}

template <typename T>
void check_dynamic8(int bs, int64_t n) {
  const float* code = dynamic_map_signed().data();
  const std::vector<T> x = awkward_values<T>(n, uint32_t(n * 3 + bs));
  const int64_t blocks = (n + bs - 1) / bs;
  std::vector<uint8_t> c_ref(static_cast<size_t>(n)), c_opt(static_cast<size_t>(n));
  std::vector<float> a_ref(static_cast<size_t>(blocks)), a_opt(static_cast<size_t>(blocks));
  ref::quantize_dynamic8(x.data(), n, code, bs, c_ref.data(), a_ref.data());
  cpu::quantize_dynamic8(x.data(), n, code, bs, c_opt.data(), a_opt.data());
  ASSERT_TRUE(same_bits(c_ref, c_opt)) << "quantize bs" << bs << " n" << n;
  ASSERT_TRUE(same_bits(a_ref, a_opt)) << "absmax bs" << bs << " n" << n;
  std::vector<T> d_ref(static_cast<size_t>(n)), d_opt(static_cast<size_t>(n));
  ref::dequantize_dynamic8(c_ref.data(), a_ref.data(), code, n, bs, d_ref.data());
  cpu::dequantize_dynamic8(c_ref.data(), a_ref.data(), code, n, bs, d_opt.data());
  ASSERT_TRUE(same_bits(d_ref, d_opt)) << "dequantize bs" << bs << " n" << n;
}

TEST(QuantKernels, Dynamic8MatchesReference) {
  for_each_target([] {
    for (int bs : {64, 128, 256, 512, 1024, 2048, 4096})
      for (int64_t n : kLengths) {
        check_dynamic8<float>(bs, n);
        check_dynamic8<f16>(bs, n);
        check_dynamic8<bf16>(bs, n);
      }
  });
}

// Every midpoint of the dynamic map and its float neighbours: ties go to the
// search pivot exactly as bitsandbytes' dQuantize decides.
TEST(QuantKernels, Dynamic8TiesAndEdgesMatchReference) {
  const auto& code = dynamic_map_signed();
  std::vector<float> x;
  for (int k = 0; k + 1 < 256; ++k) {
    const float mid = (code[size_t(k)] + code[size_t(k + 1)]) * 0.5f;
    for (float v : {mid, std::nextafter(mid, -2.0f), std::nextafter(mid, 2.0f), code[size_t(k)]}) x.push_back(v);
  }
  for (float v : {-1.0f, 1.0f, -2.0f, 2.0f, 0.0f, -0.0f}) x.push_back(v);
  for (size_t i = 0; i < x.size(); ++i) {
    const uint8_t want = scalar::quantize_dynamic(code.data(), x[i]);
    ASSERT_EQ(cpu::quantize_dynamic_scaled(code.data(), x[i]), want) << x[i];
  }
  // The same values through the block kernels: with 1.0 in every block the
  // scale is exactly 1, so the vector search sees the tie values unchanged.
  std::vector<float> blocks;
  for (size_t i = 0; i < x.size(); ++i) {
    if (blocks.size() % 64 == 0) blocks.push_back(1.0f);
    if (std::fabs(x[i]) <= 1.0f) blocks.push_back(x[i]);
  }
  while (blocks.size() % 64) blocks.push_back(0.5f);
  const int64_t n = int64_t(blocks.size());
  for_each_target([&] {
    std::vector<uint8_t> c_ref(static_cast<size_t>(n)), c_opt(static_cast<size_t>(n));
    std::vector<float> a_ref(static_cast<size_t>(n / 64)), a_opt(static_cast<size_t>(n / 64));
    ref::quantize_dynamic8(blocks.data(), n, code.data(), 64, c_ref.data(), a_ref.data());
    cpu::quantize_dynamic8(blocks.data(), n, code.data(), 64, c_opt.data(), a_opt.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(c_opt[size_t(i)], c_ref[size_t(i)]) << blocks[size_t(i)];
  });
}

// The signed map takes the vector search; any other sorted map (here the
// unsigned one) gives the reference's codes too, fast or not.
TEST(QuantKernels, Dynamic8SearchTables) {
  cpu::DynamicSearch scratch;
  EXPECT_TRUE(cpu::dynamic_search(dynamic_map_signed().data(), scratch).usable);
  const float* unsigned_map = dynamic_map_unsigned().data();
  const std::vector<float> x = awkward_values<float>(5000, 11);
  std::vector<float> positive(x.size());
  for (size_t i = 0; i < x.size(); ++i) positive[i] = std::fabs(x[i]);
  std::vector<uint8_t> c_ref(x.size()), c_opt(x.size());
  std::vector<float> a_ref(x.size() / 64 + 1), a_opt(x.size() / 64 + 1);
  ref::quantize_dynamic8(positive.data(), int64_t(x.size()), unsigned_map, 64, c_ref.data(), a_ref.data());
  cpu::quantize_dynamic8(positive.data(), int64_t(x.size()), unsigned_map, 64, c_opt.data(), a_opt.data());
  EXPECT_TRUE(same_bits(c_ref, c_opt));
}

template <typename T>
void check_int8(int64_t rows, int64_t cols, float threshold) {
  const std::vector<T> a = awkward_values<T>(rows * cols, uint32_t(rows * 131 + cols));
  std::vector<int8_t> c_ref(static_cast<size_t>(rows * cols)), c_opt(c_ref.size());
  std::vector<float> s_ref(static_cast<size_t>(rows)), s_opt(static_cast<size_t>(rows));
  ref::int8_vectorwise_quant(a.data(), rows, cols, threshold, c_ref.data(), s_ref.data());
  cpu::int8_vectorwise_quant(a.data(), rows, cols, threshold, c_opt.data(), s_opt.data());
  ASSERT_TRUE(same_bits(c_ref, c_opt)) << sizeof(T) << " " << rows << "x" << cols << " thr " << threshold;
  ASSERT_TRUE(same_bits(s_ref, s_opt)) << sizeof(T) << " " << rows << "x" << cols << " thr " << threshold;
  std::vector<T> d_ref(c_ref.size()), d_opt(c_ref.size());
  ref::int8_vectorwise_dequant(c_ref.data(), s_ref.data(), rows, cols, d_ref.data());
  cpu::int8_vectorwise_dequant(c_ref.data(), s_ref.data(), rows, cols, d_opt.data());
  ASSERT_TRUE(same_bits(d_ref, d_opt)) << sizeof(T) << " " << rows << "x" << cols;
}

TEST(QuantKernels, Int8MatchesReference) {
  for_each_target([] {
    for (int64_t rows : {1, 2, 7, 33})
      for (int64_t cols : {1, 5, 16, 63, 64, 100, 1030})
        for (float threshold : {0.0f, 1.5f}) {
          check_int8<float>(rows, cols, threshold);
          check_int8<f16>(rows, cols, threshold);
          check_int8<bf16>(rows, cols, threshold);
        }
  });
}

}  // namespace
}  // namespace lowbit::quant
