#include "lowbit/io/tokenizer.h"

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/tokenizer/utf8.h"
#include "lowbit/core/error.h"

namespace lowbit::io {

namespace fs = std::filesystem;
using nlohmann::json;

void Tokenizer::add_eos_id(int32_t id) {
  if (id >= 0 && std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
}

void check_utf8(std::string_view text, std::string_view what) {
  const size_t bad = utf8::first_invalid(text);
  if (bad != std::string_view::npos)
    fail("{} is not valid UTF-8 (byte 0x{:02X} at offset {}); tokenizers accept UTF-8 text only", what,
         static_cast<unsigned char>(text[bad]), bad);
}

namespace {

std::optional<json> read_json(const fs::path& path) {
  if (!fs::exists(path)) return std::nullopt;
  std::ifstream in(path);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(fmt::format("invalid JSON: {}", e.what())).with_file(path.string());
  }
}

// tokenizer_config.json writes a token as "text" or {"content": "text", ...}.
std::optional<std::string> token_text(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

std::vector<int32_t> int_or_list(const json& j, const fs::path& path, const char* key) {
  std::vector<int32_t> out;
  if (j.is_number_integer()) {
    out.push_back(j.get<int32_t>());
  } else if (j.is_array()) {
    for (const auto& v : j) {
      if (!v.is_number_integer()) throw Error(fmt::format("'{}' must be an integer or a list of integers", key)).with_file(path.string());
      out.push_back(v.get<int32_t>());
    }
  } else if (!j.is_null()) {
    throw Error(fmt::format("'{}' must be an integer or a list of integers", key)).with_file(path.string());
  }
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& dir) {
  const auto config = read_json(dir / "tokenizer_config.json");
  std::unique_ptr<Tokenizer> tokenizer;
  if (fs::exists(dir / "tokenizer.json")) {
    tokenizer = load_hf_tokenizer(dir / "tokenizer.json");
  } else if (fs::exists(dir / "tokenizer.model")) {
    const auto flag = [&](const char* key, bool fallback) {
      if (!config) return fallback;
      auto it = config->find(key);
      return it != config->end() && it->is_boolean() ? it->get<bool>() : fallback;
    };
    tokenizer = load_sentencepiece_tokenizer(dir / "tokenizer.model", flag("add_bos_token", true),
                                             flag("add_eos_token", false));
  } else {
    throw Error(fmt::format("no tokenizer in '{}': expected tokenizer.json or tokenizer.model", dir.string()))
        .with_file(dir.string());
  }
  // bos / eos as transformers sees them: tokenizer_config.json names them,
  // generation_config.json lists every id that ends generation.
  if (config) {
    if (auto bos = token_text(*config, "bos_token")) {
      const int32_t id = tokenizer->token_to_id(*bos);
      if (id >= 0) tokenizer->set_bos_id(id);
    }
    if (auto eos = token_text(*config, "eos_token")) tokenizer->add_eos_id(tokenizer->token_to_id(*eos));
  }
  const GenerationDefaults generation = load_generation_config(dir);
  for (int32_t id : generation.eos_token_ids) tokenizer->add_eos_id(id);
  return tokenizer;
}

GenerationDefaults load_generation_config(const fs::path& dir) {
  GenerationDefaults g;
  const fs::path path = dir / "generation_config.json";
  auto j = read_json(path);
  if (!j) return g;
  try {
    if (auto it = j->find("bos_token_id"); it != j->end() && it->is_number_integer()) g.bos_token_id = it->get<int32_t>();
    if (auto it = j->find("eos_token_id"); it != j->end()) g.eos_token_ids = int_or_list(*it, path, "eos_token_id");
    if (auto it = j->find("pad_token_id"); it != j->end() && it->is_number_integer()) g.pad_token_id = it->get<int32_t>();
    g.do_sample = j->value("do_sample", g.do_sample);
    g.temperature = j->value("temperature", g.temperature);
    g.top_k = j->value("top_k", g.top_k);
    g.top_p = j->value("top_p", g.top_p);
    g.repetition_penalty = j->value("repetition_penalty", g.repetition_penalty);
    if (auto it = j->find("max_new_tokens"); it != j->end() && it->is_number_integer()) g.max_new_tokens = it->get<int64_t>();
    if (auto it = j->find("max_length"); it != j->end() && it->is_number_integer()) g.max_length = it->get<int64_t>();
  } catch (const json::exception& e) {
    throw Error(fmt::format("invalid generation config: {}", e.what())).with_file(path.string());
  }
  return g;
}

// The window method of text-generation-inference: decode the ids since the
// last emitted boundary twice, with and without the new ones, and emit the
// difference once it does not end in a broken character. Decoding from an
// earlier boundary keeps context (e.g. the space a Metaspace decoder strips
// from a first token).
StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_(skip_special_tokens) {}

std::string StreamingDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::span<const int32_t> all(ids_);
  const std::string before = tokenizer_.decode(all.subspan(prefix_, read_ - prefix_), skip_special_);
  const std::string now = tokenizer_.decode(all.subspan(prefix_), skip_special_);
  const bool broken = now.size() >= 3 && now.compare(now.size() - 3, 3, utf8::kReplacementChar) == 0;
  if (now.size() <= before.size() || broken) return {};
  prefix_ = read_;
  read_ = ids_.size();
  return now.substr(before.size());
}

std::string StreamingDecoder::finish() {
  const std::span<const int32_t> all(ids_);
  const std::string before = tokenizer_.decode(all.subspan(prefix_, read_ - prefix_), skip_special_);
  const std::string now = tokenizer_.decode(all.subspan(prefix_), skip_special_);
  prefix_ = read_ = ids_.size();
  return now.size() > before.size() ? now.substr(before.size()) : std::string();
}

}  // namespace lowbit::io
