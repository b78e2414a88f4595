// The supported architectures, by transformers' `architectures` / `model_type`.
// Each architecture lives in one file (llama.cc, mistral.cc, qwen2.cc) that
// adds itself here; a new one (GPT-2, OPT, BLOOM) is one more file.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/models/causal_lm.h"

namespace lowbit::models {

struct Architecture {
  std::string model_type;                       // "llama"
  std::vector<std::string> class_names;         // "LlamaForCausalLM"
  std::function<ModelConfig(const nlohmann::json&)> parse_config;
  std::function<std::unique_ptr<CausalLM>(const ModelConfig&, const WeightSource&, DType)> build;
};

// The architecture for a config.json: by architectures[0], else model_type.
// An unknown one is an Error naming it and listing the supported ones.
const Architecture& find_architecture(const nlohmann::json& config);
std::vector<std::string> supported_architectures();  // class names, sorted

}  // namespace lowbit::models
