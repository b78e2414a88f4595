// The vectorized re-quantization of 8-bit optimizer state gives the scalar
// search's codes (update_rules.h quantize_nearest) on every kind of value:
// random magnitudes over the map's whole range, the map's values and the
// midpoints between them exactly, signed zeros, and states whose code would
// take the other sign.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "lowbit/quant/formats.h"
#include "train/optim/cpu/code_search_highway.h"

namespace lowbit::train::optim::detail::cpu {
namespace {

void expect_scalar_codes(const CodeSearch& t, const std::vector<float>& s, float absmax, bool is_signed) {
  std::vector<uint8_t> got(s.size());
  quantize_nearest_block(t, s.data(), int(s.size()), absmax, is_signed, got.data());
  for (size_t j = 0; j < s.size(); ++j)
    ASSERT_EQ(int(got[j]), int(quantize_nearest(t, s[j] / absmax, is_signed, s[j])))
        << "state " << s[j] << " absmax " << absmax << " signed " << is_signed;
}

TEST(CodeSearch, VectorizedBlockEqualsScalarSearch) {
  for (bool is_signed : {true, false}) {
    const auto& map = is_signed ? quant::dynamic_map_signed() : quant::dynamic_map_unsigned();
    CodeSearch t;
    build_code_search(map.data(), t);
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f), exponent(-9.0f, 0.0f);
    for (float absmax : {1.0f, 0.37f, 3.0e-3f}) {
      std::vector<float> s;
      for (int i = 0; i < 20000; ++i) {
        const float v = unit(rng) * std::pow(10.0f, exponent(rng)) * absmax;
        s.push_back(is_signed ? v : std::fabs(v));
      }
      for (int i = 0; i < 256; ++i) {
        s.push_back(map[size_t(i)] * absmax);
        if (i + 1 < 256) s.push_back((map[size_t(i)] + map[size_t(i) + 1]) * 0.5f * absmax);
      }
      for (float v : {0.0f, -0.0f, absmax, is_signed ? -absmax : 0.0f, 1e-30f, -1e-30f}) s.push_back(v);
      for (size_t n : {size_t(1), size_t(7), size_t(17), s.size()})  // lengths below and around the vector width
        expect_scalar_codes(t, std::vector<float>(s.begin(), s.begin() + long(n)), absmax, is_signed);
    }
  }
}

}  // namespace
}  // namespace lowbit::train::optim::detail::cpu
