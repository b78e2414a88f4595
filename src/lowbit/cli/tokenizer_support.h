// Text <-> token ids (io::Tokenizer, io::StreamingDecoder) and token choice
// (engine::Sampler) for the `generate` and `perplexity` verbs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "lowbit/engine/generate.h"
#include "lowbit/io/tokenizer.h"

namespace lowbit::cli {


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
  const std::vector<int32_t>& eos_ids() const { return tokenizer_->eos_ids(); }

 private:
  std::unique_ptr<io::Tokenizer> tokenizer_;
  std::unique_ptr<io::StreamingDecoder> decoder_;
};

struct SamplingArgs {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: all
  float top_p = 1.0f;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
};

void add_sampling_options(CLI::App& app, SamplingArgs& args);
// The settings for engine::generate (checked: a bad value is an Error naming
// the option).
engine::SamplingConfig sampling_config(const SamplingArgs& args);

}  // namespace lowbit::cli
