// Bit-exact agreement with bitsandbytes' reference data
// (/work/shared/golden/dev-quant.safetensors, see its README).
#include <cmath>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "lowbit/core/half.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/formats.h"
#include "lowbit/quant/int8.h"
#include "lowbit/quant/kernels.h"
#include "support/test_support.h"

namespace lowbit::quant {
namespace {

const io::SafetensorsReader& golden() {
  static const io::SafetensorsReader reader = io::SafetensorsReader::open(testing::golden_dir() / "dev-quant.safetensors");
  return reader;
}

// Byte-for-byte equality (so -0.0 vs 0.0 and NaN payloads count), reporting
// the first differing element.
void expect_same_bytes(const Tensor& got, const std::string& key) {
  const Tensor want = golden().tensor(key);
  ASSERT_EQ(got.dtype(), want.dtype()) << key;
  ASSERT_EQ(got.numel(), want.numel()) << key << ": got " << got.describe() << ", want " << want.describe();
  const size_t bytes = want.nbytes();
  const auto* a = static_cast<const unsigned char*>(got.raw_data());
  const auto* b = static_cast<const unsigned char*>(want.raw_data());
  if (std::memcmp(a, b, bytes) == 0) return;
  const size_t esize = element_size(want.dtype());
  size_t mismatches = 0, first = bytes;
  for (size_t i = 0; i < bytes; i += esize)
    if (std::memcmp(a + i, b + i, esize) != 0) {
      ++mismatches;
      first = std::min(first, i / esize);
    }
  ADD_FAILURE() << key << ": " << mismatches << " of " << want.numel() << " elements differ, first at " << first;
}

float golden_scalar(const std::string& key) { return golden().tensor(key).data<float>()[0]; }

TEST(QuantGolden, CodeTables) {
  auto same = [](std::span<const float> got, const std::string& key) {
    expect_same_bytes(Tensor::from_vector(std::vector<float>(got.begin(), got.end())), key);
  };
  same(dynamic_map_signed(), "code.dynamic_signed");
  same(dynamic_map_unsigned(), "code.dynamic_unsigned");
  same(nf4_code(), "code.nf4");
  same(fp4_code(), "code.fp4");
  same(create_dynamic_map(true, 7, 8), "code.dynamic_signed");
}

struct Case {
  std::string type;   // nf4, fp4 (4-bit) or "" for dynamic 8-bit
  std::string dtype;  // f32, f16, bf16
  int blocksize;
  bool nested;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << (c.type.empty() ? "dynamic8" : c.type) << " " << c.dtype << " bs" << c.blocksize << (c.nested ? " nested" : "");
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return (c.type.empty() ? "" : c.type + "_") + c.dtype + "_bs" + std::to_string(c.blocksize) +
         (c.nested ? "_nested" : "_plain");
}

class Golden4Bit : public ::testing::TestWithParam<Case> {};

TEST_P(Golden4Bit, QuantizeAndDequantizeMatchBitsandbytes) {
  const Case c = GetParam();
  const std::string key = "q4." + c.type + "." + c.dtype + ".bs" + std::to_string(c.blocksize) +
                          (c.nested ? ".dq." : ".plain.");
  const Tensor x = golden().tensor("input.x_" + c.dtype);
  QuantState state;
  const Tensor packed = quantize_4bit(x, parse_quant_type(c.type), c.blocksize, c.nested, state);
  const Tensor want_packed = golden().tensor(key + "packed");
  EXPECT_EQ(packed.shape(), want_packed.shape());
  expect_same_bytes(state.absmax, key + "absmax");
  expect_same_bytes(packed, key + "packed");
  if (c.nested) {
    ASSERT_TRUE(state.nested.has_value());
    EXPECT_EQ(std::bit_cast<uint32_t>(state.nested->offset), std::bit_cast<uint32_t>(golden_scalar(key + "offset")));
    expect_same_bytes(state.nested->nested_absmax, key + "nested_absmax");
  }
  expect_same_bytes(dequantize_4bit(packed, state), key + "dequant");
  // Dequantizing bitsandbytes' own bytes gives its values too.
  QuantState theirs = state;
  theirs.absmax = golden().tensor(key + "absmax");
  if (c.nested) {
    theirs.nested->offset = golden_scalar(key + "offset");
    theirs.nested->nested_absmax = golden().tensor(key + "nested_absmax");
  }
  expect_same_bytes(dequantize_4bit(golden().tensor(key + "packed"), theirs), key + "dequant");
}

std::vector<Case> cases_4bit() {
  std::vector<Case> out;
  for (const char* type : {"nf4", "fp4"})
    for (const char* dtype : {"f32", "f16", "bf16"})
      for (int bs : {32, 64, 128, 256, 512, 1024, 2048, 4096})
        for (bool nested : {false, true}) {
          const std::string key = std::string("q4.") + type + "." + dtype + ".bs" + std::to_string(bs) +
                                  (nested ? ".dq.packed" : ".plain.packed");
          if (golden().contains(key)) out.push_back({type, dtype, bs, nested});
        }
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, Golden4Bit, ::testing::ValuesIn(cases_4bit()), case_name);

class Golden8Bit : public ::testing::TestWithParam<Case> {};

TEST_P(Golden8Bit, QuantizeAndDequantizeMatchBitsandbytes) {
  const Case c = GetParam();
  const std::string key = "q8." + c.dtype + ".bs" + std::to_string(c.blocksize) + (c.nested ? ".nested." : ".plain.");
  const Tensor x = golden().tensor("input.x_" + c.dtype);
  QuantState state;
  const Tensor codes = quantize_blockwise(x, c.blocksize, c.nested, state);
  expect_same_bytes(codes, key + "codes");
  expect_same_bytes(state.absmax, key + "absmax");
  if (c.nested) {
    EXPECT_EQ(std::bit_cast<uint32_t>(state.nested->offset), std::bit_cast<uint32_t>(golden_scalar(key + "offset")));
    expect_same_bytes(state.nested->nested_absmax, key + "nested_absmax");
  }
  expect_same_bytes(dequantize_blockwise(codes, state), key + "dequant");
}

std::vector<Case> cases_8bit() {
  std::vector<Case> out;
  for (const char* dtype : {"f32", "f16", "bf16"})
    for (int bs : {64, 128, 256, 512, 1024, 2048, 4096})
      for (bool nested : {false, true}) {
        const std::string key =
            std::string("q8.") + dtype + ".bs" + std::to_string(bs) + (nested ? ".nested.codes" : ".plain.codes");
        if (golden().contains(key)) out.push_back({"", dtype, bs, nested});
      }
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, Golden8Bit, ::testing::ValuesIn(cases_8bit()), case_name);

TEST(QuantGolden, Int8VectorwiseThreshold0) {
  const Int8Rows q = int8_vectorwise_quant(golden().tensor("int8.A_f16"), 0.0f);
  expect_same_bytes(q.codes, "int8.thr0.0.codes");
  expect_same_bytes(q.row_stats, "int8.thr0.0.row_stats");
  EXPECT_EQ(q.outlier_cols.numel(), 0);
}

TEST(QuantGolden, Int8VectorwiseThreshold6WithOutlierColumns) {
  const Int8Rows q = int8_vectorwise_quant(golden().tensor("int8.A_f16"), 6.0f);
  expect_same_bytes(q.codes, "int8.thr6.0.codes");
  expect_same_bytes(q.row_stats, "int8.thr6.0.row_stats");
  expect_same_bytes(q.outlier_cols, "int8.thr6.0.outlier_cols");
}

TEST(QuantGolden, Int8RowwiseWeight) {
  const Tensor weight = golden().tensor("int8.W_f16");
  const Int8RowwiseWeight w = quantize_int8_rowwise(weight);
  expect_same_bytes(w.scb, "int8.W_SCB");
  expect_same_bytes(w.codes, "int8.W_codes");
}

}  // namespace
}  // namespace lowbit::quant
