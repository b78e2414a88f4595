// Text <-> token ids and token choice for the `generate` and `perplexity`
// verbs.
//
// Interim: until lowbit's tokenizer (io/tokenizer.h) and sampler
// (engine/sampler.h) are in the library, this file carries the part the verbs
// need: byte-level BPE from a tokenizer.json (split regex, byte mapping,
// merges, special tokens, the template post-processor) and temperature /
// top-k / top-p / repetition-penalty sampling. The verbs only see the
// functions below, so switching to the library's classes touches this file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "lowbit/engine/generate.h"

namespace lowbit::cli {

class BpeTokenizer;

// Encodes text with the tokenizer of a model directory.
std::vector<int32_t> encode_text(const std::string& model_dir, const std::string& text, bool add_special_tokens);

// Encodes a prompt and turns generated ids back into text piece by piece:
// push() returns the new complete UTF-8 text (a character split over several
// tokens is held back until it is whole).
class TextStream {
 public:
  explicit TextStream(const std::string& model_dir);
  ~TextStream();
  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const;
  std::string push(int32_t id);
  std::string finish();  // whatever is still held back

 private:
  std::unique_ptr<BpeTokenizer> tokenizer_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

struct SamplingArgs {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: all
  float top_p = 1.0f;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
};

void add_sampling_options(CLI::App& app, SamplingArgs& args);
engine::NextTokenFn make_next_token_fn(const SamplingArgs& args);

}  // namespace lowbit::cli
