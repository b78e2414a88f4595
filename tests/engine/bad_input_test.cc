// Loading errors a user can act on.
#include <fstream>

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "lowbit/engine/model_loader.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// dev-llama's weights with an edited config.json.
fs::path model_with_config(const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
  const fs::path src = testing::golden_dir() / "dev-llama/fp32";
  const fs::path dir = testing::temp_dir(name);
  fs::create_symlink(src / "model.safetensors", dir / "model.safetensors");
  std::ifstream in(src / "config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  edit(config);
  std::ofstream(dir / "config.json") << config.dump(2);
  return dir;
}

std::string load_error(const fs::path& dir) {
  try {
    engine::load_model(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(LoadErrors, UnknownArchitectureNamesItAndListsSupported) {
  const auto dir = model_with_config("arch", [](nlohmann::json& c) {
    c["architectures"] = {"GPT2LMHeadModel"};
    c["model_type"] = "gpt2";
  });
  const std::string msg = load_error(dir);
  EXPECT_THAT(msg, HasSubstr("GPT2LMHeadModel"));
  EXPECT_THAT(msg, HasSubstr("LlamaForCausalLM"));
  EXPECT_THAT(msg, HasSubstr("MistralForCausalLM"));
  EXPECT_THAT(msg, HasSubstr("Qwen2ForCausalLM"));
}

TEST(LoadErrors, ShapeMismatchNamesTheTensor) {
  const auto dir = model_with_config("shape", [](nlohmann::json& c) { c["intermediate_size"] = 700; });
  const std::string msg = load_error(dir);
  EXPECT_THAT(msg, HasSubstr("model.layers.0.mlp.gate_proj.weight"));
  EXPECT_THAT(msg, HasSubstr("[688, 256]"));
}

TEST(LoadErrors, MissingTensorAndMissingConfig) {
  const auto dir = model_with_config("layers", [](nlohmann::json& c) { c["num_hidden_layers"] = 4; });
  EXPECT_THAT(load_error(dir), HasSubstr("model.layers.3.input_layernorm.weight is missing"));
  EXPECT_THAT(load_error(testing::temp_dir("empty")), HasSubstr("config.json is missing"));
}

}  // namespace
}  // namespace lowbit
