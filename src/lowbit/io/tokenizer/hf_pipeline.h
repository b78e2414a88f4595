// The stages of a tokenizer.json around its model, as the `tokenizers`
// library runs them: normalizer, pre-tokenizer (text -> words) and decoder
// (tokens -> text). Each is built from its JSON object; an unsupported type
// is an Error naming it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

typedef struct pcre2_real_code_8 pcre2_code_8;

namespace lowbit::io {

// A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available);
// matching is thread-safe.
class Regex {
 public:
  // literal: the pattern is a plain string (tokenizers' {"String": ...}).
  Regex(std::string_view pattern, bool literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-overlapping matches, left to right, as [begin, end) byte offsets.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  pcre2_code_8* code_ = nullptr;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits each piece further (and may rewrite it, e.g. the byte-level map).
  // at_text_start: the first piece begins at offset 0 of the input.
  virtual void split(std::vector<std::string>& pieces, bool at_text_start) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // tokenizers' decode_chain: token strings in, strings out (joined by the caller).
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// nullptr for a JSON null (no such stage).
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j);

// GPT-2's byte <-> printable character map of byte-level BPE.
const std::string& byte_to_char(unsigned char byte);
// -1 for a character outside the map.
int char_to_byte(std::string_view ch);

}  // namespace lowbit::io
