// Quantizing dev-llama into each reference variant (same keys, dtypes,
// shapes, bytes; same config), loading the references back, footprints, and
// the errors for bad model directories.
#include <cmath>
#include <cstring>
#include <fstream>

#include <gmock/gmock.h>

#include "lowbit/core/half.h"
#include "lowbit/io/checkpoint.h"
#include "lowbit/io/convert.h"
#include "lowbit/quant/formats.h"
#include "support/test_support.h"

namespace lowbit::io {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path dev_llama() { return testing::golden_dir() / "dev-llama"; }

struct Variant {
  std::string name;
  QuantizationConfig config;
  DType dtype;
};

std::vector<Variant> variants() {
  QuantizationConfig int8;
  int8.load_in_8bit = true;
  QuantizationConfig nf4;
  nf4.load_in_4bit = true;
  nf4.bnb_4bit_quant_type = "nf4";
  nf4.bnb_4bit_use_double_quant = true;
  nf4.bnb_4bit_compute_dtype = DType::BF16;
  QuantizationConfig fp4;
  fp4.load_in_4bit = true;
  fp4.bnb_4bit_compute_dtype = DType::F16;
  return {{"int8", int8, DType::F16}, {"nf4-dq-bf16", nf4, DType::BF16}, {"fp4-f16", fp4, DType::F16}};
}

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(QuantizationConfig, DefaultsAndJsonMatchTransformers) {
  const auto ref = read_json(dev_llama() / "int8" / "config.json")["quantization_config"];
  QuantizationConfig c;
  c.load_in_8bit = true;
  EXPECT_EQ(c.to_json(), ref);
  EXPECT_EQ(c.to_json().dump(), ref.dump());
  const QuantizationConfig back = QuantizationConfig::from_json(ref);
  EXPECT_TRUE(back.load_in_8bit);
  EXPECT_EQ(back.llm_int8_threshold, 6.0);
  EXPECT_EQ(back.bnb_4bit_quant_type, "fp4");
  EXPECT_EQ(back.bnb_4bit_compute_dtype, DType::F32);
  EXPECT_FALSE(back.llm_int8_skip_modules.has_value());
  EXPECT_EQ(back.skip_modules(), std::vector<std::string>{"lm_head"});
}

TEST(QuantizationConfig, ValidationNamesTheField) {
  auto error_of = [](const nlohmann::json& j) {
    try {
      QuantizationConfig::from_json(j);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error_of({{"load_in_8bit", true}, {"load_in_4bit", true}}), HasSubstr("both true"));
  EXPECT_THAT(error_of({{"load_in_4bit", true}, {"bnb_4bit_quant_type", "int3"}}), HasSubstr("bnb_4bit_quant_type"));
  EXPECT_THAT(error_of({{"bnb_4bit_compute_dtype", "int8"}}), HasSubstr("bnb_4bit_compute_dtype"));
  EXPECT_THAT(error_of({{"bnb_4bit_quant_storage", "float16"}}), HasSubstr("uint8"));
  EXPECT_THAT(error_of({{"llm_int8_threshold", -1.0}}), HasSubstr("llm_int8_threshold"));
  EXPECT_THAT(error_of({{"load_in_4bits", true}}), HasSubstr("unknown BitsAndBytesConfig field"));
  EXPECT_THAT(error_of({{"load_in_4bit", "yes"}}), HasSubstr("true or false"));
}

TEST(HFConfig, ReadsBothRopeLayouts) {
  const HFConfig c = HFConfig::load(testing::models_dir() / "shakespeare-llama");
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.num_hidden_layers, 4);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.dtype, DType::BF16);
  const HFConfig l3 = HFConfig::load(testing::golden_dir() / "dev-arch" / "llama3-rope");
  EXPECT_EQ(l3.rope_scaling.rope_type, "llama3");
  EXPECT_EQ(l3.rope_scaling.factor, 8.0);
  EXPECT_EQ(l3.rope_scaling.original_max_position_embeddings, 64);
  EXPECT_EQ(l3.rope_theta, 500000.0);
  const HFConfig old = HFConfig::parse({{"hidden_size", 64}, {"num_attention_heads", 4}, {"rope_theta", 5e5},
                                        {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 32.0},
                                                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                                          {"original_max_position_embeddings", 8192}}},
                                        {"torch_dtype", "float16"}, {"eos_token_id", {1, 2}}});
  EXPECT_EQ(old.head_dim, 16);
  EXPECT_EQ(old.rope_theta, 5e5);
  EXPECT_EQ(old.rope_scaling.factor, 32.0);
  EXPECT_EQ(old.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(old.dtype, DType::F16);
  EXPECT_EQ(old.eos_token_ids, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(c.quantization_config.has_value(), false);
  EXPECT_TRUE(HFConfig::load(dev_llama() / "nf4-dq-bf16").quantization_config.has_value());
  // A saved config from another transformers version may carry fields this
  // one does not know: read, not refused (a user's --config file is strict).
  const HFConfig newer = HFConfig::parse(
      {{"quantization_config", {{"load_in_4bit", true}, {"bnb_4bit_quant_type", "nf4"}, {"some_new_field", 1}}}});
  EXPECT_EQ(newer.quantization_config->bnb_4bit_quant_type, "nf4");
}

TEST(Quantize, DevLlamaMatchesEachReferenceVariant) {
  for (const auto& v : variants()) {
    SCOPED_TRACE(v.name);
    const fs::path out = testing::temp_dir("quantize-" + v.name) / "out";
    ConvertOptions options;
    options.dtype = v.dtype;
    quantize_checkpoint(dev_llama() / "fp32", out, v.config, options);
    const fs::path ref_dir = dev_llama() / v.name;
    EXPECT_EQ(read_json(out / "config.json"), read_json(ref_dir / "config.json"));
    EXPECT_EQ(read_json(out / "config.json")["quantization_config"],
              read_json(ref_dir / "config.json")["quantization_config"]);
    EXPECT_EQ(file_bytes(out / "generation_config.json"), file_bytes(ref_dir / "generation_config.json"));
    const auto ours = SafetensorsReader::open(out / "model.safetensors");
    const auto ref = SafetensorsReader::open(ref_dir / "model.safetensors");
    ASSERT_EQ(ours.names(), ref.names());
    for (const auto& e : ref.entries()) {
      const auto& o = ours.entry(e.name);
      EXPECT_EQ(o.dtype, e.dtype) << e.name;
      EXPECT_EQ(o.shape, e.shape) << e.name;
      EXPECT_EQ(o.begin, e.begin) << e.name;
      const Tensor a = ours.tensor(e.name), b = ref.tensor(e.name);
      EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0) << e.name;
    }
    // Header, metadata, order and every byte of every tensor.
    EXPECT_EQ(file_bytes(out / "model.safetensors"), file_bytes(ref_dir / "model.safetensors"));
  }
}

TEST(Load, ReferenceCheckpointsDequantizeToTheSource) {
  const ModelWeights source = ModelWeights::load(dev_llama() / "fp32");
  for (const auto& v : variants()) {
    SCOPED_TRACE(v.name);
    const ModelWeights q = ModelWeights::load(dev_llama() / v.name);
    ASSERT_TRUE(q.quantization.has_value());
    EXPECT_EQ(q.dtype, v.dtype);
    EXPECT_EQ(q.names(), source.names());
    int quantized = 0;
    for (const auto& name : source.names()) {
      const LoadedWeight& w = q.get(name);
      const std::vector<float> ref = testing::to_floats(source.get(name).dense);
      const std::vector<float> got = testing::to_floats(w.dequantize(DType::F32));
      ASSERT_EQ(got.size(), ref.size());
      // Bound of the format: int8 rounds to SCB/127 steps (half a step, on
      // the f16 weight); 4-bit to the code table, whose widest gap is 1/3 of
      // the block absmax (FP4 0.667..1; NF4's is 0.277), half of it plus the
      // 16-bit rounding of the source and of the double-quantized absmax.
      const int64_t cols = w.shape().back();
      for (size_t i = 0; i < ref.size(); ++i) {
        double bound = 0;
        if (w.format == LoadedWeight::Int8Rowwise) {
          bound = w.int8.scb.data<float>()[i / size_t(cols)] / 127.0 * 0.5 + std::abs(ref[i]) * 1e-3 + 3e-8;
        } else if (w.format == LoadedWeight::Blockwise4bit) {
          float absmax = 0;
          for (size_t k = i / 64 * 64; k < std::min(ref.size(), i / 64 * 64 + 64); ++k)
            absmax = std::max(absmax, std::abs(ref[k]));
          bound = absmax * (1.0 / 6.0 + 0.02);
        } else {
          bound = std::abs(ref[i]) * (v.dtype == DType::BF16 ? 1.0 / 256 : 1.0 / 2048) + 3e-8;  // f16 subnormals
        }
        ASSERT_LE(std::abs(double(got[i]) - ref[i]), bound) << name << "[" << i << "]";
      }
      quantized += w.format != LoadedWeight::Dense;
    }
    EXPECT_EQ(quantized, 21);
  }
}

TEST(Footprint, MatchesTransformersForDevLlama) {
  const auto logits = SafetensorsReader::open(dev_llama() / "logits.safetensors");
  for (const auto& v : variants()) {
    const ModelWeights q = ModelWeights::load(dev_llama() / v.name);
    EXPECT_EQ(std::to_string(q.footprint().total_bytes), logits.metadata().at("footprint." + v.name)) << v.name;
  }
  // Quantizing on load counts the same as loading the saved checkpoint.
  QuantizationConfig nf4 = variants()[1].config;
  const ModelWeights on_load = ModelWeights::load(dev_llama() / "fp32", nf4, DType::BF16);
  EXPECT_EQ(std::to_string(on_load.footprint().total_bytes), logits.metadata().at("footprint.nf4-dq-bf16"));
  EXPECT_EQ(on_load.get("model.layers.0.mlp.up_proj.weight").format, LoadedWeight::Blockwise4bit);
  EXPECT_EQ(on_load.get("lm_head.weight").format, LoadedWeight::Dense);
  EXPECT_EQ(on_load.get("model.embed_tokens.weight").dense.dtype(), DType::BF16);
}

TEST(Quantize, ShardsAboveTheLimitAndLoadsBack) {
  const fs::path out = testing::temp_dir("quantize-shards") / "out";
  ConvertOptions options;
  options.max_shard_size = 700'000;
  options.dtype = DType::F16;
  const ConvertResult r = quantize_checkpoint(dev_llama() / "fp32", out, variants()[0].config, options);
  EXPECT_GT(r.shards, 2);
  const auto index = read_json(out / "model.safetensors.index.json");
  EXPECT_EQ(index["weight_map"]["model.layers.0.mlp.up_proj.SCB"], index["weight_map"]["model.layers.0.mlp.up_proj.weight"]);
  const ModelWeights sharded = ModelWeights::load(out);
  const ModelWeights single = ModelWeights::load(dev_llama() / "int8");
  EXPECT_EQ(sharded.footprint().total_bytes, single.footprint().total_bytes);
  const fs::path back = testing::temp_dir("dequantize-shards") / "out";
  dequantize_checkpoint(out, back, {.dtype = DType::F32});
  EXPECT_FALSE(read_json(back / "config.json").contains("quantization_config"));
  EXPECT_EQ(read_json(back / "config.json")["dtype"], "float32");
  const ModelWeights dense = ModelWeights::load(back);
  EXPECT_EQ(dense.get("model.layers.1.self_attn.q_proj.weight").dense.dtype(), DType::F32);
}

// ---------------------------------------------------------------------------
// Bad input: a clear Error naming the file (and tensor), no partial output.

std::string quantize_error(const fs::path& in, const fs::path& out, QuantizationConfig c = variants()[1].config) {
  try {
    quantize_checkpoint(in, out, c);
  } catch (const Error& e) {
    EXPECT_FALSE(fs::exists(out)) << "partial output at " << out;
    if (fs::is_directory(out.parent_path()))
      for (const auto& entry : fs::directory_iterator(out.parent_path()))
        EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr("lowbit-tmp")));
    return e.what();
  }
  return "no error";
}

fs::path copy_model(const std::string& name) {
  const fs::path dir = testing::temp_dir(name) / "model";
  fs::create_directories(dir);
  fs::copy(dev_llama() / "fp32" / "config.json", dir / "config.json");
  return dir;
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

std::string header_image(const std::string& header, size_t data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + std::string(data, '\0');
}

TEST(BadInput, TruncatedFileNamesFileAndTensor) {
  const fs::path dir = copy_model("bad-truncated");
  const std::string full = file_bytes(dev_llama() / "fp32" / "model.safetensors");
  write_file(dir / "model.safetensors", full.substr(0, full.size() / 2));
  const std::string e = quantize_error(dir, dir.parent_path() / "out");
  EXPECT_THAT(e, HasSubstr("model.safetensors"));
  EXPECT_THAT(e, HasSubstr("tensor: model.layers."));
  EXPECT_THAT(e, HasSubstr("truncated"));
}

TEST(BadInput, HeaderOffsetsAndShapes) {
  struct Case {
    std::string header;
    size_t data;
    std::string expect;
  } cases[] = {
      {"{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 8, "a.weight"},   // out of range
      {"{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "weight"},       // overlapping
      {"{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "a.weight"},      // shape vs bytes
      {"{\"a.weight\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "a.weight"},       // dtype
  };
  int i = 0;
  for (const auto& c : cases) {
    const fs::path dir = copy_model("bad-header-" + std::to_string(i++));
    write_file(dir / "model.safetensors", header_image(c.header, c.data));
    const std::string e = quantize_error(dir, dir.parent_path() / "out");
    EXPECT_THAT(e, HasSubstr("model.safetensors")) << c.header;
    EXPECT_THAT(e, HasSubstr(c.expect)) << c.header;
  }
  // Header length past the end of the file.
  const fs::path dir = copy_model("bad-header-length");
  std::string img = header_image("{}", 0);
  img[0] = char(0x40);
  write_file(dir / "model.safetensors", img);
  EXPECT_THAT(quantize_error(dir, dir.parent_path() / "out"), HasSubstr("past the end"));
}

TEST(BadInput, MissingShardNamedInTheIndex) {
  const fs::path dir = copy_model("bad-shard");
  write_file(dir / "model.safetensors.index.json",
             R"({"metadata": {}, "weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}})");
  const std::string e = quantize_error(dir, dir.parent_path() / "out");
  EXPECT_THAT(e, HasSubstr("model-00001-of-00002.safetensors"));
  EXPECT_THAT(e, HasSubstr("lm_head.weight"));
}

TEST(BadInput, PickleWeightsAreRefused) {
  const fs::path dir = copy_model("bad-pickle");
  write_file(dir / "pytorch_model.bin", "not a pickle");
  const std::string e = quantize_error(dir, dir.parent_path() / "out");
  EXPECT_THAT(e, HasSubstr("pytorch_model.bin"));
  EXPECT_THAT(e, HasSubstr("safetensors"));
}

TEST(BadInput, OutputNotWritableOrNotEmpty) {
  const fs::path base = testing::temp_dir("bad-output");
  write_file(base / "plain-file", "x");
  EXPECT_THAT(quantize_error(dev_llama() / "fp32", base / "plain-file" / "out"), HasSubstr("cannot write the output"));
  fs::create_directories(base / "full");
  write_file(base / "full" / "keep", "x");
  EXPECT_THROW(quantize_checkpoint(dev_llama() / "fp32", base / "full", variants()[1].config), Error);
  EXPECT_TRUE(fs::exists(base / "full" / "keep"));
}

TEST(BadInput, AlreadyQuantizedAndBothBits) {
  const fs::path base = testing::temp_dir("bad-config");
  EXPECT_THAT(quantize_error(dev_llama() / "int8", base / "out"), HasSubstr("already quantized"));
  QuantizationConfig both;
  both.load_in_4bit = both.load_in_8bit = true;
  EXPECT_THAT(quantize_error(dev_llama() / "fp32", base / "out", both), HasSubstr("both"));
  QuantizationConfig bad_type;
  bad_type.load_in_4bit = true;
  bad_type.bnb_4bit_quant_type = "nf3";
  EXPECT_THAT(quantize_error(dev_llama() / "fp32", base / "out", bad_type), HasSubstr("nf3"));
}

TEST(BadInput, QuantizedWeightDisagreesWithItsState) {
  const fs::path dir = testing::temp_dir("bad-packed") / "model";
  fs::create_directories(dir);
  fs::copy(dev_llama() / "nf4-dq-bf16" / "config.json", dir / "config.json");
  const auto ref = SafetensorsReader::open(dev_llama() / "nf4-dq-bf16" / "model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  const std::string victim = "model.layers.1.mlp.up_proj.weight";
  for (const auto& name : ref.names()) {
    const Tensor t = ref.tensor(name);
    tensors.emplace_back(name, name == victim ? t.rows(0, t.dim(0) - 8) : t);
  }
  save_safetensors(dir / "model.safetensors", tensors);
  try {
    ModelWeights::load(dir);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().tensor, victim);
    EXPECT_THAT(e.what(), HasSubstr("model.safetensors"));
    EXPECT_THAT(e.what(), HasSubstr("[688, 256]"));
  }
}

TEST(Convert, ParsesShardSizes) {
  EXPECT_EQ(parse_size("5GB"), 5'000'000'000ull);
  EXPECT_EQ(parse_size("500MB"), 500'000'000ull);
  EXPECT_EQ(parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_size("1000"), 1000ull);
  EXPECT_THROW(parse_size("lots"), Error);
}

}  // namespace
}  // namespace lowbit::io
