#include "io/tokenizer/hf_pipeline.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cctype>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "io/tokenizer/utf8.h"
#include "lowbit/core/error.h"

namespace lowbit::io {

using nlohmann::json;

// ---------------------------------------------------------------- Regex

Regex::Regex(std::string_view pattern, bool literal) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  // PCRE2 refuses UCP together with LITERAL (it has no meaning there).
  const uint32_t options = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error, &offset,
                        nullptr);
  if (!code_) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    fail("tokenizer regex '{}' does not compile at offset {}: {}", std::string(pattern), offset,
         reinterpret_cast<const char*>(message));
  }
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
}

Regex::~Regex() { pcre2_code_free(code_); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  // The text was checked to be valid UTF-8 before it got here.
  while (pos <= text.size()) {
    const int rc = pcre2_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(data);
      fail("tokenizer regex: matching failed (PCRE2 error {})", rc);
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data);
    if (ov[1] == ov[0]) {  // empty match: skip one character, as Rust's find_iter does
      if (ov[0] >= text.size()) break;
      pos = ov[0] + utf8::char_length(static_cast<unsigned char>(text[ov[0]]));
      continue;
    }
    matches.emplace_back(ov[0], ov[1]);
    pos = ov[1];
  }
  pcre2_match_data_free(data);
  return matches;
}

// ---------------------------------------------------------------- byte-level map

namespace {

struct ByteMap {
  std::array<std::string, 256> to_char;
  std::unordered_map<std::string, int> to_byte;
  ByteMap() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      utf8::append_codepoint(to_char[size_t(b)], printable ? uint32_t(b) : uint32_t(256 + extra++));
      to_byte[to_char[size_t(b)]] = b;
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

const std::string& byte_to_char(unsigned char byte) { return byte_map().to_char[byte]; }

int char_to_byte(std::string_view ch) {
  const auto& m = byte_map().to_byte;
  auto it = m.find(std::string(ch));
  return it == m.end() ? -1 : it->second;
}

namespace {

std::string type_of(const json& j) {
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string("?");
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  for (size_t at; (at = s.find(from, pos)) != std::string::npos; pos = at + from.size()) {
    out.append(s, pos, at - pos);
    out.append(to);
  }
  out.append(s, pos);
  s = std::move(out);
}

// {"String": "x"} or {"Regex": "x"}.
std::unique_ptr<Regex> pattern_of(const json& j, const std::string& where) {
  const json& p = j.at("pattern");
  if (p.contains("Regex")) return std::make_unique<Regex>(p["Regex"].get<std::string>(), false);
  if (p.contains("String")) return std::make_unique<Regex>(p["String"].get<std::string>(), true);
  fail("tokenizer.json: {} pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}", where);
}

// ---------------------------------------------------------------- normalizers

class NormalizerSequence final : public Normalizer {
 public:
  explicit NormalizerSequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::string& text) const override {
    for (const auto& p : parts_) p->apply(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  void apply(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void apply(std::string& text) const override {
    std::string out;
    size_t pos = 0;
    for (auto [b, e] : pattern_->find_all(text)) {
      out.append(text, pos, b - pos);
      out.append(content_);
      pos = e;
    }
    out.append(text, pos);
    text = std::move(out);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

// NFC: text from files is NFC almost always; lowbit does not carry Unicode
// normalization tables, so the text is taken as it is (see docs/tokenizers.md).
class Identity final : public Normalizer {
 public:
  void apply(std::string&) const override {}
};

// ---------------------------------------------------------------- pre-tokenizers

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };

// Cuts `piece` at the matches according to `behavior`; appends non-empty pieces.
void cut(std::string_view piece, std::vector<std::pair<size_t, size_t>> matches, SplitBehavior behavior, bool invert,
         std::vector<std::string>& out) {
  if (invert) {  // the pattern describes what lies between the pieces of interest
    std::vector<std::pair<size_t, size_t>> gaps;
    size_t pos = 0;
    for (auto [b, e] : matches) {
      if (b > pos) gaps.emplace_back(pos, b);
      pos = e;
    }
    if (pos < piece.size()) gaps.emplace_back(pos, piece.size());
    matches = std::move(gaps);
  }
  const auto emit = [&](size_t b, size_t e) {
    if (e > b) out.emplace_back(piece.substr(b, e - b));
  };
  size_t pos = 0;
  for (auto [b, e] : matches) {
    switch (behavior) {
      case SplitBehavior::kIsolated: emit(pos, b); emit(b, e); pos = e; break;
      case SplitBehavior::kRemoved: emit(pos, b); pos = e; break;
      case SplitBehavior::kMergedWithPrevious: emit(pos, e); pos = e; break;
      case SplitBehavior::kMergedWithNext: emit(pos, b); pos = b; break;
    }
  }
  emit(pos, piece.size());
}

SplitBehavior behavior_of(const json& j) {
  const std::string b = j.value("behavior", std::string("Isolated"));
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  fail("tokenizer.json: Split behavior '{}' is not supported (Isolated, Removed, MergedWithPrevious, MergedWithNext)",
       b);
}

class RegexSplit final : public PreTokenizer {
 public:
  RegexSplit(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void split(std::vector<std::string>& pieces, bool) const override {
    std::vector<std::string> out;
    for (const auto& p : pieces) cut(p, regex_->find_all(p), behavior_, invert_, out);
    pieces = std::move(out);
  }

 private:
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPre final : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), regex_(use_regex ? std::make_unique<Regex>(kGpt2Pattern, false) : nullptr) {}
  void split(std::vector<std::string>& pieces, bool) const override {
    std::vector<std::string> words;
    for (auto& p : pieces) {
      if (add_prefix_space_ && !p.empty() && p[0] != ' ') p.insert(0, " ");
      if (regex_) {
        cut(p, regex_->find_all(p), SplitBehavior::kIsolated, false, words);
      } else {
        words.push_back(std::move(p));
      }
    }
    for (auto& w : words) {
      std::string mapped;
      mapped.reserve(w.size() * 2);
      for (unsigned char c : w) mapped += byte_to_char(c);
      w = std::move(mapped);
    }
    pieces = std::move(words);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

PrependScheme prepend_scheme_of(const json& j) {
  if (auto it = j.find("prepend_scheme"); it != j.end() && it->is_string()) {
    const std::string s = it->get<std::string>();
    if (s == "always") return PrependScheme::kAlways;
    if (s == "first") return PrependScheme::kFirst;
    if (s == "never") return PrependScheme::kNever;
    fail("tokenizer.json: Metaspace prepend_scheme '{}' is not supported (always, first, never)", s);
  }
  return j.value("add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;
}

class MetaspacePre final : public PreTokenizer {
 public:
  MetaspacePre(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void split(std::vector<std::string>& pieces, bool at_text_start) const override {
    std::vector<std::string> out;
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string p = pieces[i];
      replace_all(p, " ", replacement_);
      const bool prepend = scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && i == 0 && at_text_start);
      if (prepend && p.compare(0, replacement_.size(), replacement_) != 0) p.insert(0, replacement_);
      if (!split_) {
        out.push_back(std::move(p));
        continue;
      }
      std::vector<std::pair<size_t, size_t>> marks;
      for (size_t at = p.find(replacement_); at != std::string::npos; at = p.find(replacement_, at + replacement_.size()))
        marks.emplace_back(at, at + replacement_.size());
      cut(p, marks, SplitBehavior::kMergedWithNext, false, out);
    }
    pieces = std::move(out);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class PreTokenizerSequence final : public PreTokenizer {
 public:
  explicit PreTokenizerSequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void split(std::vector<std::string>& pieces, bool at_text_start) const override {
    for (const auto& p : parts_) p->split(pieces, at_text_start);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

// ---------------------------------------------------------------- decoders

class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens)
      for (size_t i = 0; i < t.size();) {
        const size_t len = std::min(utf8::char_length(static_cast<unsigned char>(t[i])), t.size() - i);
        const int b = char_to_byte(std::string_view(t).substr(i, len));
        if (b >= 0) {
          bytes += char(b);
        } else {
          bytes.append(t, i, len);  // outside the map (e.g. an added token's text)
        }
        i += len;
      }
    tokens.assign(1, utf8::lossy(bytes));
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, PrependScheme scheme) : replacement_(std::move(replacement)), scheme_(scheme) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      replace_all(tokens[i], replacement_, " ");
      if (i == 0 && scheme_ != PrependScheme::kNever && !tokens[i].empty() && tokens[i][0] == ' ') tokens[i].erase(0, 1);
    }
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Regex> pattern, std::string content)
      : normalizer_(std::move(pattern), std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) normalizer_.apply(t);
  }

 private:
  ReplaceNormalizer normalizer_;
};

// <0xNN> tokens become their bytes; a run that is not valid UTF-8 becomes
// one U+FFFD per byte, as in `tokenizers`.
class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    size_t run = 0;
    const auto flush = [&] {
      if (run == 0) return;
      if (utf8::first_invalid(bytes) == std::string::npos) {
        out.push_back(bytes);
      } else {
        for (size_t i = 0; i < run; ++i) out.emplace_back(utf8::kReplacementChar);
      }
      bytes.clear();
      run = 0;
    };
    for (auto& t : tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4]))) {
        bytes += char(std::stoi(t.substr(3, 2), nullptr, 16));
        ++run;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      for (size_t i = 0; i < start_ && t.compare(0, content_.size(), content_) == 0; ++i) t.erase(0, content_.size());
      for (size_t i = 0; i < stop_ && t.size() >= content_.size() &&
                         t.compare(t.size() - content_.size(), content_.size(), content_) == 0;
           ++i)
        t.erase(t.size() - content_.size());
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class DecoderSequence final : public Decoder {
 public:
  explicit DecoderSequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& n : j.at("normalizers"))
      if (auto p = make_normalizer(n)) parts.push_back(std::move(p));
    return std::make_unique<NormalizerSequence>(std::move(parts));
  }
  if (type == "Prepend") return std::make_unique<Prepend>(j.at("prepend").get<std::string>());
  if (type == "Replace") return std::make_unique<ReplaceNormalizer>(pattern_of(j, "Replace"), j.at("content").get<std::string>());
  if (type == "NFC") return std::make_unique<Identity>();
  fail("tokenizer.json: normalizer '{}' is not supported (Sequence, Prepend, Replace, NFC)", type);
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : j.at("pretokenizers"))
      if (auto made = make_pre_tokenizer(p)) parts.push_back(std::move(made));
    return std::make_unique<PreTokenizerSequence>(std::move(parts));
  }
  if (type == "Split") return std::make_unique<RegexSplit>(pattern_of(j, "Split"), behavior_of(j), j.value("invert", false));
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPre>(j.value("add_prefix_space", true), j.value("use_regex", true));
  if (type == "Metaspace")
    return std::make_unique<MetaspacePre>(j.value("replacement", std::string("\u2581")), prepend_scheme_of(j),
                                          j.value("split", true));
  if (type == "Digits")
    return std::make_unique<RegexSplit>(std::make_unique<Regex>(j.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)", false),
                                        SplitBehavior::kIsolated, false);
  if (type == "WhitespaceSplit")
    return std::make_unique<RegexSplit>(std::make_unique<Regex>(R"(\s+)", false), SplitBehavior::kRemoved, false);
  if (type == "Whitespace")
    return std::make_unique<RegexSplit>(std::make_unique<Regex>(R"(\w+|[^\w\s]+)", false), SplitBehavior::kRemoved, true);
  fail("tokenizer.json: pre-tokenizer '{}' is not supported (Sequence, Split, ByteLevel, Metaspace, Digits, "
       "Whitespace, WhitespaceSplit)",
       type);
}

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& d : j.at("decoders"))
      if (auto made = make_decoder(d)) parts.push_back(std::move(made));
    return std::make_unique<DecoderSequence>(std::move(parts));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace")
    return std::make_unique<MetaspaceDecoder>(j.value("replacement", std::string("\u2581")), prepend_scheme_of(j));
  if (type == "Replace") return std::make_unique<ReplaceDecoder>(pattern_of(j, "Replace"), j.at("content").get<std::string>());
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip")
    return std::make_unique<StripDecoder>(j.at("content").get<std::string>(), j.value("start", size_t(0)),
                                          j.value("stop", size_t(0)));
  fail("tokenizer.json: decoder '{}' is not supported (Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, "
       "Strip)",
       type);
}

}  // namespace lowbit::io
