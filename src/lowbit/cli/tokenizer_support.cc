#include "cli/tokenizer_support.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "lowbit/core/error.h"

namespace lowbit::cli {

namespace fs = std::filesystem;

// Byte-level BPE as the `tokenizers` library runs it for Llama 3 / GPT-2
// style tokenizer.json files.
class BpeTokenizer {
 public:
  explicit BpeTokenizer(const fs::path& dir) {
    const fs::path path = dir / "tokenizer.json";
    if (!fs::exists(path))
      throw Error(fmt::format("no tokenizer in {}: tokenizer.json is missing", dir.string())).with_file(path.string());
    std::ifstream in(path);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("invalid tokenizer.json: {}", e.what())).with_file(path.string());
    }
    const auto& model = j.at("model");
    if (model.value("type", "") != "BPE")
      throw Error(fmt::format("tokenizer model '{}' is not supported (byte-level BPE only)", model.value("type", "?")))
          .with_file(path.string());
    for (const auto& [token, id] : model.at("vocab").items()) {
      vocab_[token] = id.get<int32_t>();
      tokens_[id.get<int32_t>()] = token;
    }
    // Only byte-level BPE (GPT-2 / Llama 3 style); SentencePiece-style BPE
    // (Metaspace, byte fallback: Llama 2, Mistral) would be mis-encoded.
    if (j.value("decoder", nlohmann::json::object()).is_null() ||
        j.value("decoder", nlohmann::json::object()).value("type", "") != "ByteLevel")
      throw Error("tokenizer.json: only byte-level BPE tokenizers (decoder ByteLevel, as in Llama 3 and GPT-2) are "
                  "supported here")
          .with_file(path.string());
    ignore_merges_ = model.value("ignore_merges", false);
    int32_t rank = 0;
    for (const auto& m : model.at("merges")) {
      std::string a, b;
      if (m.is_array()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      }
      ranks_[a + '\x01' + b] = rank++;
    }
    for (const auto& t : j.value("added_tokens", nlohmann::json::array())) {
      special_[t.at("content").get<std::string>()] = t.at("id").get<int32_t>();
      tokens_[t.at("id").get<int32_t>()] = t.at("content").get<std::string>();
      special_ids_.push_back(t.at("id").get<int32_t>());
    }
    compile_split_regex(j, path);
    if (auto pp = j.find("post_processor"); pp != j.end() && pp->is_object() && pp->value("type", "") == "TemplateProcessing")
      for (const auto& piece : pp->at("single")) {
        if (!piece.contains("SpecialToken")) break;
        prefix_.push_back(special_.at(piece["SpecialToken"]["id"].get<std::string>()));
      }
    // The GPT-2 byte <-> printable character map.
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + extra++);
      byte_char_[b] = utf8(cp);
      char_byte_[byte_char_[b]] = uint8_t(b);
    }
  }

  ~BpeTokenizer() {
    if (regex_) pcre2_code_free(regex_);
  }

  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) {
    std::vector<int32_t> ids;
    if (add_special_tokens) ids = prefix_;
    // Special tokens written in the text are matched first.
    size_t start = 0;
    while (start < text.size()) {
      size_t best = std::string::npos;
      const std::string* best_token = nullptr;
      for (const auto& [content, id] : special_) {
        const size_t at = text.find(content, start);
        if (at < best) best = at, best_token = &content;
      }
      encode_plain(text.substr(start, best == std::string::npos ? std::string::npos : best - start), ids);
      if (!best_token) break;
      ids.push_back(special_.at(*best_token));
      start = best + best_token->size();
    }
    return ids;
  }

  // Bytes of the ids (special tokens as their text unless skipped).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const {
    std::string out;
    for (int32_t id : ids) {
      auto it = tokens_.find(id);
      if (it == tokens_.end()) continue;
      if (std::find(special_ids_.begin(), special_ids_.end(), id) != special_ids_.end()) {
        if (!skip_special) out += it->second;
        continue;
      }
      const std::string& t = it->second;
      for (size_t i = 0; i < t.size();) {
        const size_t len = utf8_length(uint8_t(t[i]));
        auto b = char_byte_.find(t.substr(i, len));
        if (b != char_byte_.end()) out += char(b->second);
        i += len;
      }
    }
    return out;
  }

 private:
  static std::string utf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += char(cp);
    } else if (cp < 0x800) {
      s += char(0xc0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3f));
    } else {
      s += char(0xe0 | (cp >> 12));
      s += char(0x80 | ((cp >> 6) & 0x3f));
      s += char(0x80 | (cp & 0x3f));
    }
    return s;
  }
  static size_t utf8_length(uint8_t c) { return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4; }

  void compile_split_regex(const nlohmann::json& j, const fs::path& path) {
    std::string pattern;
    std::function<void(const nlohmann::json&)> find = [&](const nlohmann::json& node) {
      if (!node.is_object()) return;
      if (node.value("type", "") == "Split" && node.contains("pattern") && node["pattern"].contains("Regex"))
        pattern = node["pattern"]["Regex"].get<std::string>();
      for (const char* key : {"pretokenizers"})
        if (node.contains(key))
          for (const auto& child : node[key]) find(child);
    };
    find(j.value("pre_tokenizer", nlohmann::json::object()));
    if (pattern.empty())  // GPT-2's byte-level split
      pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
    int error = 0;
    PCRE2_SIZE offset = 0;
    regex_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                           &error, &offset, nullptr);
    if (!regex_) throw Error("tokenizer.json: the split regex does not compile").with_file(path.string());
    pcre2_jit_compile(regex_, PCRE2_JIT_COMPLETE);
  }

  void encode_plain(const std::string& text, std::vector<int32_t>& ids) {
    if (text.empty()) return;
    pcre2_match_data* match = pcre2_match_data_create_from_pattern(regex_, nullptr);
    size_t pos = 0;
    while (pos < text.size()) {
      const int rc = pcre2_match(regex_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos, 0, match, nullptr);
      size_t begin = text.size(), end = text.size();
      if (rc > 0) {
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
        begin = ov[0];
        end = std::max<size_t>(ov[1], ov[0] + 1);
      }
      if (begin > pos) encode_word(text.substr(pos, begin - pos), ids);  // text the regex skipped
      if (begin < text.size()) encode_word(text.substr(begin, end - begin), ids);
      pos = end;
    }
    pcre2_match_data_free(match);
  }

  void encode_word(const std::string& word, std::vector<int32_t>& ids) {
    auto cached = cache_.find(word);
    if (cached != cache_.end()) {
      ids.insert(ids.end(), cached->second.begin(), cached->second.end());
      return;
    }
    std::vector<std::string> parts;
    for (unsigned char c : word) parts.push_back(byte_char_[c]);
    if (ignore_merges_) {
      // Llama 3 tokenizers: a whole piece that is in the vocabulary is one token.
      std::string whole;
      for (const auto& p : parts) whole += p;
      if (auto it = vocab_.find(whole); it != vocab_.end()) parts = {whole};
    }
    for (;;) {
      int32_t best = INT32_MAX;
      size_t at = 0;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        auto it = ranks_.find(parts[i] + '\x01' + parts[i + 1]);
        if (it != ranks_.end() && it->second < best) best = it->second, at = i;
      }
      if (best == INT32_MAX) break;
      parts[at] += parts[at + 1];
      parts.erase(parts.begin() + long(at) + 1);
    }
    std::vector<int32_t> out;
    for (const auto& p : parts) {
      auto it = vocab_.find(p);
      if (it == vocab_.end()) throw Error(fmt::format("tokenizer: piece '{}' is not in the vocabulary", p));
      out.push_back(it->second);
    }
    ids.insert(ids.end(), out.begin(), out.end());
    cache_.emplace(word, std::move(out));
  }

  std::unordered_map<std::string, int32_t> vocab_, ranks_, special_;
  std::unordered_map<int32_t, std::string> tokens_;
  std::vector<int32_t> special_ids_, prefix_;
  std::string byte_char_[256];
  std::unordered_map<std::string, uint8_t> char_byte_;
  std::unordered_map<std::string, std::vector<int32_t>> cache_;
  pcre2_code* regex_ = nullptr;
  bool ignore_merges_ = false;
};

std::vector<int32_t> encode_text(const std::string& model_dir, const std::string& text, bool add_special_tokens) {
  BpeTokenizer tokenizer(model_dir);
  return tokenizer.encode(text, add_special_tokens);
}

TextStream::TextStream(const std::string& model_dir) : tokenizer_(std::make_unique<BpeTokenizer>(model_dir)) {}
TextStream::~TextStream() = default;

std::vector<int32_t> TextStream::encode(const std::string& text, bool add_special_tokens) const {
  return tokenizer_->encode(text, add_special_tokens);
}

std::string TextStream::push(int32_t id) {
  ids_.push_back(id);
  const std::string text = tokenizer_->decode(ids_, true);
  // Hold back an incomplete UTF-8 character at the end.
  size_t complete = text.size();
  for (size_t back = 1; back <= 3 && back <= text.size(); ++back) {
    const auto c = uint8_t(text[text.size() - back]);
    if ((c & 0xc0) == 0x80) continue;
    const size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    if (need > back) complete = text.size() - back;
    break;
  }
  if (complete <= emitted_) return {};
  std::string piece = text.substr(emitted_, complete - emitted_);
  emitted_ = complete;
  return piece;
}

std::string TextStream::finish() {
  const std::string text = tokenizer_->decode(ids_, true);
  std::string rest = emitted_ < text.size() ? text.substr(emitted_) : std::string();
  emitted_ = text.size();
  return rest;
}

void add_sampling_options(CLI::App& app, SamplingArgs& a) {
  app.add_option("--temperature", a.temperature, "sampling temperature (0: greedy)")->check(CLI::NonNegativeNumber);
  app.add_option("--top-k", a.top_k, "sample from the k most likely tokens (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", a.top_p, "nucleus sampling: smallest set with this much probability")
      ->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--repetition-penalty", a.repetition_penalty, "divide logits of seen tokens (transformers' rule)")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", a.seed, "random seed");
}

engine::NextTokenFn make_next_token_fn(const SamplingArgs& a) {
  auto rng = std::make_shared<std::mt19937_64>(a.seed);
  return [a, rng](std::span<const float> logits, std::span<const int32_t> history) -> int32_t {
    std::vector<float> l(logits.begin(), logits.end());
    if (a.repetition_penalty != 1.0f)
      for (int32_t id : history)
        if (id >= 0 && size_t(id) < l.size()) l[size_t(id)] = l[size_t(id)] > 0 ? l[size_t(id)] / a.repetition_penalty
                                                                              : l[size_t(id)] * a.repetition_penalty;
    if (a.temperature <= 0.0f) return engine::argmax(l);
    std::vector<int32_t> order(l.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int32_t(i);
    // Ties (frequent with bf16 logits) keep the lower id first, as argmax does.
    std::sort(order.begin(), order.end(), [&](int32_t x, int32_t y) {
      return l[size_t(x)] > l[size_t(y)] || (l[size_t(x)] == l[size_t(y)] && x < y);
    });
    if (a.top_k > 0 && size_t(a.top_k) < order.size()) order.resize(size_t(a.top_k));
    std::vector<double> p(order.size());
    const double mx = l[size_t(order[0])] / a.temperature;
    double sum = 0.0;
    for (size_t i = 0; i < order.size(); ++i) sum += p[i] = std::exp(l[size_t(order[i])] / a.temperature - mx);
    size_t keep = order.size();
    if (a.top_p < 1.0f) {
      double cum = 0.0;
      for (size_t i = 0; i < order.size(); ++i) {
        cum += p[i] / sum;
        if (cum >= a.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    std::discrete_distribution<size_t> pick(p.begin(), p.begin() + long(keep));
    return order[pick(*rng)];
  };
}

}  // namespace lowbit::cli
