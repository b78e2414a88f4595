// The shape of a decoder-only model, read from a transformers config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/ops/rope.h"

namespace lowbit::models {

struct ModelConfig {
  std::string model_type;    // registry key: "llama", "mistral", "qwen2"
  std::string architecture;  // the config's architectures[0], e.g. "LlamaForCausalLM"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  float rms_norm_eps = 1e-6f;
  ops::RopeConfig rope;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;      // bias on q/k/v projections (Qwen2, Llama's attention_bias)
  bool o_bias = false;        // bias on o_proj (Llama's attention_bias)
  bool mlp_bias = false;
  int64_t sliding_window = 0; // 0: full attention
  std::vector<int64_t> eos_token_ids;
  int64_t bos_token_id = -1;
  std::string torch_dtype;    // the config's dtype / torch_dtype ("bfloat16", ...), may be empty
};

// Fields every Llama-family config has (hidden_size, heads, rope, ...). Each
// architecture file starts from this and adds its own.
ModelConfig parse_common_config(const nlohmann::json& config);

}  // namespace lowbit::models
