#include "lowbit/models/model_config.h"

#include "lowbit/core/error.h"

namespace lowbit::models {
namespace {

using nlohmann::json;

template <typename T>
T get_or(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw Error(fmt::format("config.json: '{}' has the wrong type ({})", key, it->dump()));
  }
}

int64_t require_int(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() <= 0)
    fail("config.json: '{}' must be a positive integer{}", key, it == j.end() ? " (missing)" : ", got " + it->dump());
  return it->get<int64_t>();
}

std::vector<int64_t> token_ids(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (it->is_number_integer()) return {it->get<int64_t>()};
  if (it->is_array()) return it->get<std::vector<int64_t>>();
  fail("config.json: '{}' must be an integer or a list of integers, got {}", key, it->dump());
}

// transformers 5 writes rope_parameters; older files write rope_theta plus an
// optional rope_scaling object (with "type" or "rope_type").
ops::RopeConfig parse_rope(const json& j, int64_t head_dim) {
  ops::RopeConfig rope;
  rope.head_dim = int(head_dim);
  json params = json::object();
  if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) params = *it;
  else if (auto sc = j.find("rope_scaling"); sc != j.end() && sc->is_object()) params = *sc;
  rope.theta = float(get_or<double>(params, "rope_theta", get_or<double>(j, "rope_theta", 10000.0)));
  rope.type = get_or<std::string>(params, "rope_type", get_or<std::string>(params, "type", "default"));
  rope.factor = float(get_or<double>(params, "factor", 1.0));
  rope.low_freq_factor = float(get_or<double>(params, "low_freq_factor", 1.0));
  rope.high_freq_factor = float(get_or<double>(params, "high_freq_factor", 4.0));
  rope.original_max_position = int(get_or<int64_t>(params, "original_max_position_embeddings", 8192));
  if (rope.type != "default" && rope.type != "llama3" && rope.type != "linear")
    fail("config.json: rope type '{}' is not supported (supported: default, linear, llama3)", rope.type);
  return rope;
}

}  // namespace

ModelConfig parse_common_config(const json& j) {
  ModelConfig c;
  c.model_type = get_or<std::string>(j, "model_type", "");
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty())
    c.architecture = (*it)[0].get<std::string>();
  c.vocab_size = require_int(j, "vocab_size");
  c.hidden_size = require_int(j, "hidden_size");
  c.intermediate_size = require_int(j, "intermediate_size");
  c.num_layers = require_int(j, "num_hidden_layers");
  c.num_heads = require_int(j, "num_attention_heads");
  c.num_kv_heads = get_or<int64_t>(j, "num_key_value_heads", c.num_heads);
  c.head_dim = get_or<int64_t>(j, "head_dim", c.hidden_size / c.num_heads);
  LOWBIT_CHECK(c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0,
               "config.json: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", c.num_heads,
               c.num_kv_heads);
  c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", 2048);
  c.rms_norm_eps = float(get_or<double>(j, "rms_norm_eps", 1e-6));
  c.rope = parse_rope(j, c.head_dim);
  c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", false);
  c.eos_token_ids = token_ids(j, "eos_token_id");
  const auto bos = token_ids(j, "bos_token_id");
  c.bos_token_id = bos.empty() ? -1 : bos.front();
  c.torch_dtype = get_or<std::string>(j, "dtype", get_or<std::string>(j, "torch_dtype", ""));
  if (get_or<std::string>(j, "hidden_act", "silu") != "silu")
    fail("config.json: hidden_act '{}' is not supported (expected silu)", j["hidden_act"].dump());
  return c;
}

}  // namespace lowbit::models
