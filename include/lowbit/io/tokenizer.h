// Text <-> token ids, as transformers' tokenizers produce them.
//
// load_tokenizer(dir) reads a model directory the way AutoTokenizer does:
// tokenizer.json (Hugging Face `tokenizers`: byte-level BPE as in GPT-2 and
// Llama 3, sentencepiece-style BPE with byte fallback as in Llama 2) first,
// else tokenizer.model (sentencepiece), plus tokenizer_config.json and
// generation_config.json for the bos / eos ids. Encoding gives the same ids
// as the reference; decoding gives the text back.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit::io {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Throws Error when `text` is not valid UTF-8. add_special_tokens applies
  // the post-processor (e.g. prepends <|begin_of_text|> or <s>).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const = 0;
  // Always valid UTF-8: byte sequences the ids leave incomplete become U+FFFD,
  // as in the reference. skip_special_tokens drops tokens marked special.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const = 0;

  virtual int32_t vocab_size() const = 0;
  // -1 when the tokenizer has no such token.
  virtual int32_t token_to_id(std::string_view token) const = 0;
  // The vocabulary's string for id (byte-level or ▁ form); Error when out of range.
  virtual std::string id_to_token(int32_t id) const = 0;
  virtual bool is_special(int32_t id) const = 0;

  // -1 when there is none.
  int32_t bos_id() const { return bos_id_; }
  // Every id that ends generation (tokenizer eos plus generation_config's).
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  void set_bos_id(int32_t id) { bos_id_ = id; }
  void add_eos_id(int32_t id);

 private:
  int32_t bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
};

// tokenizer.json, else tokenizer.model; Error naming the directory when
// neither is there.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir);
// One file of either kind.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::filesystem::path& tokenizer_json);
// add_special_tokens puts bos before and/or eos after the ids (transformers'
// add_bos_token / add_eos_token of tokenizer_config.json, which load_tokenizer
// passes on).
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& tokenizer_model,
                                                        bool add_bos = true, bool add_eos = false);

// Throws Error (with the byte offset) when text is not valid UTF-8.
void check_utf8(std::string_view text, std::string_view what = "text");

// Turns ids generated one at a time into text: push() returns the text that
// became complete with this id (a character split over several tokens is held
// back until it is whole). Decodes a small window, not the whole history, so
// each step costs O(1) in the length of the output.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true);
  std::string push(int32_t id);
  // Whatever is still held back (possibly with U+FFFD for a broken character).
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t prefix_ = 0;  // ids_[prefix_, read_) were already emitted; kept as left context
  size_t read_ = 0;
};

// generation_config.json: what transformers' generate() uses by default.
struct GenerationDefaults {
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // the file may hold an int or a list
  std::optional<int32_t> pad_token_id;
  bool do_sample = false;
  float temperature = 1.0f;
  int top_k = 50;
  float top_p = 1.0f;
  float repetition_penalty = 1.0f;
  std::optional<int64_t> max_new_tokens;
  std::optional<int64_t> max_length;
};

// Defaults when the file is missing; Error naming it when it is malformed.
GenerationDefaults load_generation_config(const std::filesystem::path& model_dir);

}  // namespace lowbit::io
