// QuantState <-> checkpoint keys, against the 4-bit checkpoints transformers
// + bitsandbytes saved (golden/dev-llama), and quantizing the fp32 source
// weights reproduces those checkpoints' bytes.
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/quant_state.h"
#include "lowbit/quant/kernels.h"
#include "support/test_support.h"

namespace lowbit::quant {
namespace {

using io::SafetensorsReader;

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

std::string text_of(const Tensor& t) { return {static_cast<const char*>(t.raw_data()), size_t(t.numel())}; }

struct Variant {
  const char* dir;
  const char* suffix;
};

class CheckpointState : public ::testing::TestWithParam<Variant> {};

// Every quantized weight: read its state, write it back, get the same tensors
// (including the JSON text) byte for byte.
TEST_P(CheckpointState, RoundTripsEveryWeightByteForByte) {
  const Variant v = GetParam();
  const auto reader = SafetensorsReader::open(testing::golden_dir() / "dev-llama" / v.dir / "model.safetensors");
  auto lookup = [&](const std::string& name) { return reader.contains(name) ? reader.tensor(name) : Tensor(); };
  const std::string marker = std::string("quant_state.bitsandbytes__") + v.suffix;
  int weights = 0;
  for (const std::string& name : reader.names()) {
    if (name.size() < marker.size() || name.compare(name.size() - marker.size(), marker.size(), marker) != 0) continue;
    const std::string prefix = name.substr(0, name.size() - marker.size());
    const QuantState state = QuantState::from_state_dict(prefix, lookup);
    for (const auto& [key, tensor] : state.to_state_dict(prefix)) {
      ASSERT_TRUE(reader.contains(key)) << key;
      EXPECT_TRUE(same_bytes(tensor, reader.tensor(key)))
          << key << (tensor.dtype() == DType::U8 && key == name ? "\n got: " + text_of(tensor) + "\nwant: " + text_of(reader.tensor(key)) : "");
    }
    ++weights;
  }
  EXPECT_EQ(weights, 3 * 7);
}

// Quantizing the fp32 model's weights (cast to the checkpoint's dtype) gives
// the checkpoint's packed weights and states.
TEST_P(CheckpointState, QuantizingTheSourceWeightsReproducesTheCheckpoint) {
  const Variant v = GetParam();
  const auto quantized = SafetensorsReader::open(testing::golden_dir() / "dev-llama" / v.dir / "model.safetensors");
  const auto source = SafetensorsReader::open(testing::golden_dir() / "dev-llama" / "fp32" / "model.safetensors");
  auto lookup = [&](const std::string& name) {
    return quantized.contains(name) ? quantized.tensor(name) : Tensor();
  };
  const std::string marker = std::string("quant_state.bitsandbytes__") + v.suffix;
  int64_t codes = 0;
  for (const std::string& name : quantized.names()) {
    if (name.size() < marker.size() || name.compare(name.size() - marker.size(), marker.size(), marker) != 0) continue;
    const std::string prefix = name.substr(0, name.size() - marker.size());
    const std::string weight_name = prefix.substr(0, prefix.size() - 1);
    const QuantState want = QuantState::from_state_dict(prefix, lookup);
    const Tensor weight = source.tensor(weight_name).cast(want.dtype);
    QuantState got;
    const Tensor packed = quantize_4bit(weight, want.type, want.blocksize, want.nested.has_value(), got);
    const Tensor want_packed = quantized.tensor(weight_name);
    ASSERT_EQ(packed.shape(), want_packed.shape()) << weight_name;
    EXPECT_TRUE(same_bytes(packed, want_packed)) << weight_name;
    codes += weight.numel();
    for (const auto& [key, tensor] : got.to_state_dict(prefix))
      EXPECT_TRUE(same_bytes(tensor, quantized.tensor(key))) << key;
  }
  EXPECT_GT(codes, 0);
}

INSTANTIATE_TEST_SUITE_P(DevLlama, CheckpointState,
                         ::testing::Values(Variant{"nf4-dq-bf16", "nf4"}, Variant{"fp4-f16", "fp4"}),
                         [](const auto& info) { return std::string(info.param.suffix); });

TEST(QuantState, MissingAndInconsistentKeysNameTheTensor) {
  QuantState state;
  const Tensor x = Tensor::from_vector(std::vector<float>(300, 1.5f), {3, 100});
  quantize_4bit(x, QuantType::NF4, 64, true, state);
  std::map<std::string, Tensor> dict;
  for (auto& [k, t] : state.to_state_dict("w.")) dict[k] = t;
  auto lookup_in = [](std::map<std::string, Tensor> d) {
    return [d](const std::string& name) { return d.count(name) ? d.at(name) : Tensor(); };
  };
  const QuantState back = QuantState::from_state_dict("w.", lookup_in(dict));
  EXPECT_EQ(back.shape, (Shape{3, 100}));
  EXPECT_EQ(back.blocksize, 64);
  ASSERT_TRUE(back.nested.has_value());
  EXPECT_EQ(back.nested->offset, state.nested->offset);

  auto expect_error = [&](std::map<std::string, Tensor> d, const std::string& tensor, const std::string& needle) {
    try {
      QuantState::from_state_dict("w.", lookup_in(std::move(d)));
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.context().tensor, tensor);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto without = [&](const std::string& key) {
    auto d = dict;
    d.erase(key);
    return d;
  };
  expect_error(without("w.quant_state.bitsandbytes__nf4"), "w.quant_state.bitsandbytes__nf4", "missing");
  expect_error(without("w.nested_absmax"), "w.nested_absmax", "missing");
  expect_error(without("w.absmax"), "w.absmax", "missing");
  auto bad_absmax = dict;
  bad_absmax["w.absmax"] = Tensor::from_vector(std::vector<uint8_t>(3, 0));
  expect_error(bad_absmax, "w.absmax", "5 elements");
  auto bad_json = dict;
  const std::string text = "{\"quant_type\": \"nf4\"";
  bad_json["w.quant_state.bitsandbytes__nf4"] = Tensor::from_vector(std::vector<uint8_t>(text.begin(), text.end()));
  expect_error(bad_json, "w.quant_state.bitsandbytes__nf4", "not valid");
}

TEST(QuantState, JsonTextMatchesPythonFormatting) {
  QuantState state;
  const Tensor x = Tensor::from_vector(std::vector<float>(64, 2.0f), {8, 8});
  quantize_4bit(x, QuantType::FP4, 64, true, state);
  const auto dict = state.to_state_dict("p.");
  EXPECT_EQ(text_of(dict.back().second),
            R"({"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [8, 8], "nested_blocksize": 256, )"
            R"("nested_dtype": "float32", "nested_offset": 2.0})");
}

}  // namespace
}  // namespace lowbit::quant
