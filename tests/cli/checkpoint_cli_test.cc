// `lowbit quantize`, `inspect` and `dequantize` end to end: each dev-llama
// reference variant from the command line, the shakespeare-llama footprints
// of shared/models/shakespeare-reference.json to the byte, and bad input.
#include <cstdio>
#include <fstream>

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using CliResult = testing::CliRun;
CliResult lowbit_cli(const std::string& args) { return testing::run_lowbit(args); }

nlohmann::json json_file(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

std::string bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

uint64_t inspect_total(const fs::path& model, const std::string& options = "") {
  const CliResult r = lowbit_cli("inspect " + model.string() + " --json " + options);
  EXPECT_EQ(r.status, 0) << r.output;
  return nlohmann::json::parse(r.output)["total_bytes"].get<uint64_t>();
}

struct VariantFlags {
  std::string name, flags;
};

// The options of each reference variant (shared/golden/README.md and
// shared/models/README.md).
const VariantFlags kVariants[] = {
    {"int8", "--load-in-8bit --dtype f16"},
    {"int8-thr0", "--load-in-8bit --llm-int8-threshold 0 --dtype f16"},
    {"nf4-dq-bf16", "--load-in-4bit --bnb-4bit-quant-type nf4 --bnb-4bit-use-double-quant --bnb-4bit-compute-dtype bfloat16 --dtype bf16"},
    {"nf4-bf16", "--load-in-4bit --bnb-4bit-quant-type nf4 --bnb-4bit-compute-dtype bfloat16 --dtype bf16"},
    {"fp4-f16", "--load-in-4bit --bnb-4bit-compute-dtype float16 --dtype f16"},
};

TEST(CheckpointCli, QuantizesDevLlamaIntoEachReferenceLayout) {
  const fs::path golden = testing::golden_dir() / "dev-llama";
  const fs::path base = testing::temp_dir("cli-dev-llama");
  const std::string meta = bytes_of(golden / "logits.safetensors");
  for (const auto& v : kVariants) {
    if (!fs::exists(golden / v.name)) continue;
    SCOPED_TRACE(v.name);
    const fs::path out = base / v.name;
    const CliResult r = lowbit_cli("quantize " + (golden / "fp32").string() + " " + out.string() + " " + v.flags);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(json_file(out / "config.json")["quantization_config"], json_file(golden / v.name / "config.json")["quantization_config"]);
    // Headers (names, dtypes, shapes, offsets) are identical; the data is
    // checked tensor by tensor in tests/io/checkpoint_test.cc.
    const std::string ours = bytes_of(out / "model.safetensors"), ref = bytes_of(golden / v.name / "model.safetensors");
    ASSERT_EQ(ours.size(), ref.size());
    const uint64_t header = *reinterpret_cast<const uint64_t*>(ref.data());
    EXPECT_EQ(ours.substr(0, 8 + header), ref.substr(0, 8 + header));
    const auto logits = io::SafetensorsReader::open(golden / "logits.safetensors");
    EXPECT_EQ(std::to_string(inspect_total(out)), logits.metadata().at("footprint." + v.name));
  }
  // The same through --config with the fields as transformers writes them.
  std::ofstream(base / "nf4.json") << R"({"load_in_4bit": true, "bnb_4bit_quant_type": "nf4",
      "bnb_4bit_use_double_quant": true, "bnb_4bit_compute_dtype": "bfloat16"})";
  const CliResult r = lowbit_cli("quantize " + (golden / "fp32").string() + " " + (base / "from-json").string() +
                                 " --config " + (base / "nf4.json").string() + " --dtype bf16");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(bytes_of(base / "from-json" / "model.safetensors"), bytes_of(golden / "nf4-dq-bf16" / "model.safetensors"));
}

TEST(CheckpointCli, ShakespeareFootprintsMatchTransformers) {
  const fs::path model = testing::models_dir() / "shakespeare-llama";
  const auto reference = json_file(testing::models_dir() / "shakespeare-reference.json")["footprint"];
  const fs::path base = testing::temp_dir("cli-shakespeare");
  EXPECT_EQ(inspect_total(model, "--dtype f32"), reference["fp32"].get<uint64_t>());
  EXPECT_EQ(inspect_total(model), reference["bf16"].get<uint64_t>());
  for (const auto& v : kVariants) {
    SCOPED_TRACE(v.name);
    const fs::path out = base / v.name;
    // Small shards: the sharded writer and index are exercised too.
    const CliResult r = lowbit_cli("quantize " + model.string() + " " + out.string() + " " + v.flags + " --max-shard-size 2MB");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(fs::exists(out / "model.safetensors.index.json"));
    EXPECT_TRUE(fs::exists(out / "tokenizer.json"));
    EXPECT_EQ(inspect_total(out), reference[v.name].get<uint64_t>());
  }
  const CliResult d = lowbit_cli("dequantize " + (base / "nf4-dq-bf16").string() + " " + (base / "dense").string() + " --dtype bf16");
  ASSERT_EQ(d.status, 0) << d.output;
  EXPECT_EQ(inspect_total(base / "dense"), reference["bf16"].get<uint64_t>());
}

TEST(CheckpointCli, InspectPrintsATable) {
  const CliResult r = lowbit_cli("inspect " + (testing::golden_dir() / "dev-llama" / "nf4-dq-bf16").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("model.layers.0.mlp.up_proj.weight"));
  EXPECT_THAT(r.output, HasSubstr("nf4"));
  EXPECT_THAT(r.output, HasSubstr("1615616"));
}

TEST(CheckpointCli, BadInputFailsClearlyWithoutOutput) {
  const fs::path golden = testing::golden_dir() / "dev-llama";
  const fs::path base = testing::temp_dir("cli-errors");
  const std::string in = (golden / "fp32").string();
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"quantize " + in + " " + (base / "a").string() + " --load-in-8bit --load-in-4bit", "both"},
      {"quantize " + in + " " + (base / "b").string() + " --load-in-4bit --bnb-4bit-quant-type nf5", "nf5"},
      {"quantize " + in + " " + (base / "c").string(), "--load-in-8bit or --load-in-4bit"},
      {"quantize " + in + " " + (base / "d").string() + " --load-in-4bit --dtype f8", "--dtype"},
      {"quantize " + (base / "missing").string() + " " + (base / "e").string() + " --load-in-4bit", "config.json"},
      {"quantize " + in + " " + (golden / "fp32" / "config.json").string() + "/out --load-in-4bit", "cannot write"},
  };
  for (const auto& c : cases) {
    const CliResult r = lowbit_cli(c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_THAT(r.output, HasSubstr(c.expect)) << c.args;
  }
  for (const char* name : {"a", "b", "c", "d", "e"}) EXPECT_FALSE(fs::exists(base / name)) << name;
  // A truncated shard: the error names the file and the tensor.
  const fs::path bad = base / "truncated";
  fs::create_directories(bad);
  fs::copy(golden / "fp32" / "config.json", bad / "config.json");
  const std::string full = bytes_of(golden / "fp32" / "model.safetensors");
  std::ofstream(bad / "model.safetensors", std::ios::binary) << full.substr(0, full.size() - 1000);
  const CliResult r = lowbit_cli("quantize " + bad.string() + " " + (base / "f").string() + " --load-in-4bit");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("model.safetensors"));
  EXPECT_THAT(r.output, HasSubstr("tensor: "));
  EXPECT_FALSE(fs::exists(base / "f"));
}

}  // namespace
}  // namespace lowbit
