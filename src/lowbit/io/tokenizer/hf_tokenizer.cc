// tokenizer.json: added tokens are cut out of the text first; each remaining
// segment is normalized, pre-tokenized into words and each word run through
// the BPE model; the post-processor's template adds special tokens.
#include <fstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "io/tokenizer/bpe_model.h"
#include "io/tokenizer/hf_pipeline.h"
#include "lowbit/core/error.h"
#include "lowbit/io/tokenizer.h"

namespace lowbit::io {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;
  bool lstrip;
  bool rstrip;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class HfTokenizer final : public Tokenizer {
 public:
  explicit HfTokenizer(const json& j)
      : model_(check_model(j.at("model"))),
        normalizer_(make_normalizer(j.value("normalizer", json()))),
        pre_tokenizer_(make_pre_tokenizer(j.value("pre_tokenizer", json()))),
        decoder_(make_decoder(j.value("decoder", json()))) {
    for (const auto& t : j.value("added_tokens", json::array())) {
      AddedToken a{t.at("id").get<int32_t>(), t.at("content").get<std::string>(), t.value("special", false),
                   t.value("lstrip", false), t.value("rstrip", false)};
      LOWBIT_CHECK(a.id >= 0 && !a.content.empty(), "tokenizer.json: added token '{}' needs an id >= 0 and text",
                   a.content);
      added_by_id_[a.id] = added_.size();
      added_by_content_[a.content] = a.id;
      added_.push_back(std::move(a));
    }
    for (size_t i = 0; i < added_.size(); ++i)
      added_by_first_byte_[static_cast<unsigned char>(added_[i].content[0])].push_back(i);
    vocab_size_ = model_.size();
    for (const auto& a : added_) vocab_size_ = std::max(vocab_size_, a.id + 1);
    parse_post_processor(j.value("post_processor", json()));
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    check_utf8(text);
    std::vector<int32_t> ids;
    if (add_special_tokens) ids = prefix_;
    size_t pos = 0;
    while (pos < text.size()) {
      auto [begin, end, id] = next_added_token(text, pos);
      encode_segment(text.substr(pos, begin - pos), pos == 0, ids);
      if (id < 0) break;
      ids.push_back(id);
      pos = end;
    }
    if (add_special_tokens) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
    return ids;
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      if (auto it = added_by_id_.find(id); it != added_by_id_.end()) {
        if (!(skip_special_tokens && added_[it->second].special)) tokens.push_back(added_[it->second].content);
        continue;
      }
      const std::string* t = model_.id_to_token(id);
      LOWBIT_CHECK(t != nullptr, "decode: token id {} is not in the vocabulary (size {})", id, vocab_size_);
      tokens.push_back(*t);
    }
    std::string text;
    if (decoder_) {
      decoder_->decode_chain(tokens);
      for (const auto& t : tokens) text += t;
    } else {  // tokenizers joins with spaces when there is no decoder
      for (size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
    }
    return text;
  }

  int32_t vocab_size() const override { return vocab_size_; }
  int32_t token_to_id(std::string_view token) const override {
    if (auto it = added_by_content_.find(std::string(token)); it != added_by_content_.end()) return it->second;
    return model_.token_to_id(token);
  }
  std::string id_to_token(int32_t id) const override {
    if (auto it = added_by_id_.find(id); it != added_by_id_.end()) return added_[it->second].content;
    const std::string* t = model_.id_to_token(id);
    LOWBIT_CHECK(t != nullptr, "token id {} is not in the vocabulary (size {})", id, vocab_size_);
    return *t;
  }
  bool is_special(int32_t id) const override {
    auto it = added_by_id_.find(id);
    return it != added_by_id_.end() && added_[it->second].special;
  }

  // The first special token of the template, the usual bos.
  int32_t template_bos() const { return prefix_.empty() ? -1 : prefix_.front(); }

 private:
  static const json& check_model(const json& m) {
    const std::string type = m.value("type", std::string("BPE"));
    if (type != "BPE") fail("tokenizer.json: model type '{}' is not supported (BPE only)", type);
    return m;
  }

  struct AddedMatch {
    size_t begin, end;  // the text the token replaces, with stripped spaces
    int32_t id;
  };

  // Leftmost-longest match of an added token at or after pos; {size, size, -1} when none.
  AddedMatch next_added_token(std::string_view text, size_t pos) const {
    if (!added_.empty())
      for (size_t at = pos; at < text.size(); ++at) {
        const auto& candidates = added_by_first_byte_[static_cast<unsigned char>(text[at])];
        const AddedToken* best = nullptr;
        for (size_t i : candidates) {
          const AddedToken& a = added_[i];
          if ((!best || a.content.size() > best->content.size()) && text.compare(at, a.content.size(), a.content) == 0)
            best = &a;
        }
        if (!best) continue;
        size_t begin = at, end = at + best->content.size();
        if (best->lstrip)
          while (begin > pos && is_space(text[begin - 1])) --begin;
        if (best->rstrip)
          while (end < text.size() && is_space(text[end])) ++end;
        return {begin, end, best->id};
      }
    return {text.size(), text.size(), -1};
  }

  void encode_segment(std::string_view segment, bool at_text_start, std::vector<int32_t>& ids) const {
    if (segment.empty()) return;
    std::vector<std::string> pieces{std::string(segment)};
    if (normalizer_) normalizer_->apply(pieces[0]);
    if (pre_tokenizer_) pre_tokenizer_->split(pieces, at_text_start);
    for (const auto& p : pieces) model_.tokenize(p, ids);
  }

  int32_t special_id(const std::string& token) const {
    const int32_t id = token_to_id(token);
    LOWBIT_CHECK(id >= 0, "tokenizer.json: post-processor token '{}' is not in the vocabulary", token);
    return id;
  }

  void parse_post_processor(const json& pp) {
    if (pp.is_null()) return;
    const std::string type = pp.value("type", std::string());
    if (type == "Sequence") {
      for (const auto& p : pp.at("processors")) parse_post_processor(p);
    } else if (type == "TemplateProcessing") {
      // The ids of each named special token come from "special_tokens".
      std::unordered_map<std::string, std::vector<int32_t>> specials;
      const json special_tokens = pp.value("special_tokens", json::object());
      for (const auto& [name, s] : special_tokens.items())
        specials[name] = s.at("ids").get<std::vector<int32_t>>();
      bool after_sequence = false;
      for (const auto& piece : pp.at("single")) {
        if (piece.contains("Sequence")) {
          after_sequence = true;
          continue;
        }
        const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
        auto it = specials.find(name);
        const std::vector<int32_t> piece_ids = it != specials.end() ? it->second : std::vector<int32_t>{special_id(name)};
        auto& target = after_sequence ? suffix_ : prefix_;
        target.insert(target.end(), piece_ids.begin(), piece_ids.end());
      }
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
      prefix_ = {pp.at("cls").at(1).get<int32_t>()};
      suffix_ = {pp.at("sep").at(1).get<int32_t>()};
    } else if (type != "ByteLevel") {  // ByteLevel only adjusts offsets
      fail("tokenizer.json: post-processor '{}' is not supported (TemplateProcessing, ByteLevel, Roberta, Bert, "
           "Sequence)",
           type);
    }
  }

  BpeModel model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<AddedToken> added_;
  std::unordered_map<int32_t, size_t> added_by_id_;
  std::unordered_map<std::string, int32_t> added_by_content_;
  std::vector<size_t> added_by_first_byte_[256];
  std::vector<int32_t> prefix_, suffix_;  // what add_special_tokens puts around the ids
  int32_t vocab_size_ = 0;
};

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open tokenizer file").with_file(path.string());
  try {
    const json j = json::parse(in);
    auto tokenizer = std::make_unique<HfTokenizer>(j);
    tokenizer->set_bos_id(tokenizer->template_bos());
    return tokenizer;
  } catch (const json::exception& e) {
    throw Error(fmt::format("invalid tokenizer.json: {}", e.what())).with_file(path.string());
  } catch (const Error& e) {
    throw e.with_file(path.string());
  }
}

}  // namespace lowbit::io
