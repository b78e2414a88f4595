#include "lowbit/io/hf_config.h"

#include <fstream>

#include <fmt/format.h>

#include "lowbit/core/error.h"

namespace lowbit::io {

namespace fs = std::filesystem;

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open the file").with_file(path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("invalid JSON: {}", e.what())).with_file(path.string());
  }
}

namespace {

template <typename T>
T number(const nlohmann::json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) fail("config field {} must be a number, got {}", key, it->dump());
  return it->get<T>();
}

std::vector<int64_t> token_ids(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (it->is_number_integer()) return {it->get<int64_t>()};
  if (it->is_array()) return it->get<std::vector<int64_t>>();
  fail("config field {} must be an id or a list of ids, got {}", key, it->dump());
}

void read_rope(const nlohmann::json& r, HFConfig& c) {
  c.rope_theta = number<double>(r, "rope_theta", c.rope_theta);
  auto& s = c.rope_scaling;
  if (r.contains("rope_type") && r["rope_type"].is_string()) s.rope_type = r["rope_type"].get<std::string>();
  else if (r.contains("type") && r["type"].is_string()) s.rope_type = r["type"].get<std::string>();
  s.factor = number<double>(r, "factor", s.factor);
  s.low_freq_factor = number<double>(r, "low_freq_factor", s.low_freq_factor);
  s.high_freq_factor = number<double>(r, "high_freq_factor", s.high_freq_factor);
  s.original_max_position_embeddings =
      number<int64_t>(r, "original_max_position_embeddings", s.original_max_position_embeddings);
}

}  // namespace

HFConfig HFConfig::parse(const nlohmann::json& j) {
  LOWBIT_CHECK(j.is_object(), "config.json must hold a JSON object");
  HFConfig c;
  c.raw = j;
  if (j.contains("architectures") && j["architectures"].is_array())
    c.architectures = j["architectures"].get<std::vector<std::string>>();
  if (j.contains("model_type") && j["model_type"].is_string()) c.model_type = j["model_type"].get<std::string>();
  c.hidden_size = number<int64_t>(j, "hidden_size", 0);
  c.intermediate_size = number<int64_t>(j, "intermediate_size", 0);
  c.num_hidden_layers = number<int64_t>(j, "num_hidden_layers", 0);
  c.num_attention_heads = number<int64_t>(j, "num_attention_heads", 0);
  c.num_key_value_heads = number<int64_t>(j, "num_key_value_heads", c.num_attention_heads);
  c.head_dim = number<int64_t>(j, "head_dim", c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
  c.vocab_size = number<int64_t>(j, "vocab_size", 0);
  c.rms_norm_eps = number<double>(j, "rms_norm_eps", c.rms_norm_eps);
  c.max_position_embeddings = number<int64_t>(j, "max_position_embeddings", 0);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  c.attention_bias = j.value("attention_bias", false);
  c.sliding_window = number<int64_t>(j, "sliding_window", 0);
  // transformers 5: rope_parameters; older: rope_theta + rope_scaling.
  c.rope_theta = number<double>(j, "rope_theta", c.rope_theta);
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) read_rope(j["rope_scaling"], c);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) read_rope(j["rope_parameters"], c);
  for (const char* key : {"dtype", "torch_dtype"})
    if (j.contains(key) && j[key].is_string()) {
      c.dtype = parse_dtype(j[key].get<std::string>());
      break;
    }
  c.bos_token_ids = token_ids(j, "bos_token_id");
  c.eos_token_ids = token_ids(j, "eos_token_id");
  if (j.contains("quantization_config") && j["quantization_config"].is_object())
    c.quantization_config = QuantizationConfig::from_json(j["quantization_config"], /*strict=*/false);
  return c;
}

HFConfig HFConfig::load(const fs::path& dir_or_file) {
  const fs::path path = fs::is_directory(dir_or_file) ? dir_or_file / "config.json" : dir_or_file;
  if (!fs::exists(path))
    throw Error(fmt::format("{} is not a model directory: config.json is missing", dir_or_file.string()))
        .with_file(path.string());
  const nlohmann::json j = read_json(path);
  try {
    return parse(j);
  } catch (const Error& e) {
    throw e.with_file(path.string());
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("config.json: {}", e.what())).with_file(path.string());
  }
}

}  // namespace lowbit::io
