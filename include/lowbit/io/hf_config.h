// A transformers config.json: the raw JSON plus the typed fields of the
// Llama family (Llama, Mistral, Qwen2). Reads both the transformers-5
// `rope_parameters` block and the older `rope_theta` + `rope_scaling`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/core/dtype.h"
#include "lowbit/io/quant_config.h"

namespace lowbit::io {

struct RopeScaling {
  std::string rope_type = "default";  // "default", "linear", "dynamic", "llama3", ...
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
};

struct HFConfig {
  nlohmann::json raw;
  std::vector<std::string> architectures;
  std::string model_type;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // default: num_attention_heads
  int64_t head_dim = 0;             // default: hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  std::optional<DType> dtype;       // "dtype" (transformers 5) or "torch_dtype"
  std::vector<int64_t> bos_token_ids, eos_token_ids;
  int64_t sliding_window = 0;       // 0: none
  std::optional<QuantizationConfig> quantization_config;

  // A model directory (its config.json) or a config file. Errors name the file.
  static HFConfig load(const std::filesystem::path& dir_or_file);
  static HFConfig parse(const nlohmann::json& j);
};

nlohmann::json read_json(const std::filesystem::path& path);

}  // namespace lowbit::io
