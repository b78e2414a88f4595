#include "lowbit/quant/formats.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "lowbit/core/error.h"

namespace lowbit::quant {
namespace {

// bitsandbytes' get_4bit_type("nf4"): the normal-distribution quantiles it
// lists, as f32.
constexpr std::array<float, 16> kNF4 = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// get_4bit_type("fp4"): [0, 0.0625, 8, 12, 4, 6, 2, 3] and their negatives,
// divided by 12 in f32 (the Python list holds the integer 0 for "-0").
std::array<float, 16> make_fp4() {
  const float mags[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};
  std::array<float, 16> code{};
  for (int i = 0; i < 8; ++i) {
    code[i] = mags[i] / 12.0f;
    code[i + 8] = i == 0 ? 0.0f : -mags[i] / 12.0f;
  }
  return code;
}

// torch.linspace(start, end, steps) in f32 on the CPU: each point is one fused
// multiply-add from whichever end is nearer (halfway split), which is what
// PyTorch's kernel compiles to; plain a*b+c differs in the last bit.
std::vector<float> linspace_f32(float start, float end, int steps) {
  std::vector<float> out(static_cast<size_t>(steps));
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / float(steps - 1);
  const int halfway = steps / 2;
  for (int i = 0; i < steps; ++i) {
    out[size_t(i)] = i < halfway ? std::fma(step, float(i), start) : std::fma(-step, float(steps - 1 - i), end);
  }
  return out;
}

// The traits table: one row per format. Built on first use so that other
// static initializers may already ask for it.
const std::array<FormatTraits, 4>& traits_table() {
  static const std::array<FormatTraits, 4> table = {{
      {QuantType::Dynamic8, "dynamic8", 8, 4096, 64, 4096, std::span<const float>(dynamic_map_signed())},
      {QuantType::NF4, "nf4", 4, 64, 32, 4096, std::span<const float>(nf4_code())},
      {QuantType::FP4, "fp4", 4, 64, 32, 4096, std::span<const float>(fp4_code())},
      {QuantType::Int8Rowwise, "int8", 8, 0, 0, 0, {}},
  }};
  return table;
}

}  // namespace

const FormatTraits& traits(QuantType type) {
  for (const auto& t : traits_table())
    if (t.type == type) return t;
  fail("unknown quantization type {}", int(type));
}

QuantType parse_quant_type(std::string_view name) {
  std::string valid;
  for (const auto& t : traits_table()) {
    if (t.name == name) return t.type;
    valid += valid.empty() ? "" : ", ";
    valid += t.name;
  }
  throw Error(fmt::format("unknown quantization type \"{}\"; expected one of: {}", name, valid)).with_option("quant_type");
}

// bitsandbytes' create_dynamic_map: for each exponent i, the midpoints of
// linspace(0.1, 1) scaled by 10^(i - (max_exponent_bits - 1)), both signs when
// signed; then 0 and 1, zero padding, sorted. Every step in f32 as torch does
// (the Python scale is rounded to f32 before the multiply).
std::array<float, 256> create_dynamic_map(bool is_signed, int max_exponent_bits, int total_bits) {
  LOWBIT_CHECK(total_bits >= 2 && total_bits <= 8 && max_exponent_bits >= 1 && max_exponent_bits < total_bits,
               "create_dynamic_map: expected 1 <= max_exponent_bits < total_bits <= 8, got {} and {}",
               max_exponent_bits, total_bits);
  std::vector<double> data;
  const int non_sign_bits = total_bits - 1;
  const int additional_items = (1 << (non_sign_bits - max_exponent_bits)) - 1;
  auto add_group = [&](int items, int exponent) {
    const std::vector<float> bounds = linspace_f32(0.1f, 1.0f, items);
    const float scale = float(std::pow(10.0, double(exponent)));
    for (size_t j = 0; j + 1 < bounds.size(); ++j) {
      const float mean = (bounds[j] + bounds[j + 1]) / 2.0f;
      data.push_back(scale * mean);
      if (is_signed) data.push_back(-scale * mean);
    }
  };
  int i = 0;
  for (; i < max_exponent_bits; ++i) {
    const int shift = i + non_sign_bits - max_exponent_bits + (is_signed ? 0 : 1);
    add_group((1 << shift) + 1, -(max_exponent_bits - 1) + i);
  }
  // Python's loop variable keeps its last value here.
  if (additional_items > 0) add_group(additional_items + 1, -(max_exponent_bits - 1) + (i - 1));
  data.push_back(0.0);
  data.push_back(1.0);
  LOWBIT_CHECK(data.size() <= 256, "create_dynamic_map: {} values do not fit 256 codes", data.size());
  data.resize(256, 0.0);
  std::sort(data.begin(), data.end());
  std::array<float, 256> out{};
  for (size_t k = 0; k < 256; ++k) out[k] = float(data[k]);
  return out;
}

const std::array<float, 256>& dynamic_map_signed() {
  static const std::array<float, 256> map = create_dynamic_map(true);
  return map;
}
const std::array<float, 256>& dynamic_map_unsigned() {
  static const std::array<float, 256> map = create_dynamic_map(false);
  return map;
}
const std::array<float, 16>& nf4_code() { return kNF4; }
const std::array<float, 16>& fp4_code() {
  static const std::array<float, 16> code = make_fp4();
  return code;
}

bool is_valid_blocksize(QuantType type, int blocksize) {
  const FormatTraits& t = traits(type);
  if (t.max_blocksize == 0) return false;
  return blocksize >= t.min_blocksize && blocksize <= t.max_blocksize && (blocksize & (blocksize - 1)) == 0;
}

void check_blocksize(QuantType type, int blocksize) {
  if (is_valid_blocksize(type, blocksize)) return;
  const FormatTraits& t = traits(type);
  std::string valid;
  for (int b = t.min_blocksize; b > 0 && b <= t.max_blocksize; b *= 2) valid += (valid.empty() ? "" : ", ") + std::to_string(b);
  throw Error(fmt::format("{}: block size {} is not supported; expected one of: {}", t.name, blocksize,
                          valid.empty() ? "none (not a blockwise format)" : valid))
      .with_option("blocksize");
}

}  // namespace lowbit::quant
