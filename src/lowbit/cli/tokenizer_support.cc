#include "cli/tokenizer_support.h"

#include <memory>

#include "cli/command.h"
#include "lowbit/engine/sampler.h"
#include "lowbit/core/error.h"

namespace lowbit::cli {

std::vector<int32_t> encode_text(const std::string& model_dir, const std::string& text, bool add_special_tokens) {
  return io::load_tokenizer(model_dir)->encode(text, add_special_tokens);
}

TextStream::TextStream(const std::string& model_dir)
    : tokenizer_(io::load_tokenizer(model_dir)),
      decoder_(std::make_unique<io::StreamingDecoder>(*tokenizer_, /*skip_special_tokens=*/true)) {}
TextStream::~TextStream() = default;

std::vector<int32_t> TextStream::encode(const std::string& text, bool add_special_tokens) const {
  return tokenizer_->encode(text, add_special_tokens);
}

std::string TextStream::push(int32_t id) { return decoder_->push(id); }
std::string TextStream::finish() { return decoder_->finish(); }

void add_sampling_options(CLI::App& app, SamplingArgs& a) {
  app.add_option("--temperature", a.temperature, "sampling temperature (0: greedy)")->check(non_negative());
  app.add_option("--top-k", a.top_k, "sample from the k most likely tokens (0: all)")->check(non_negative());
  app.add_option("--top-p", a.top_p, "nucleus sampling: smallest set with this much probability")
      ->check(number_in(0, 1, true));
  app.add_option("--repetition-penalty", a.repetition_penalty, "divide logits of seen tokens (transformers' rule)")
      ->check(positive());
  app.add_option("--seed", a.seed, "random seed");
}

engine::SamplingConfig sampling_config(const SamplingArgs& a) {
  const engine::SamplingConfig config{a.temperature, a.top_k, a.top_p, a.repetition_penalty, a.seed};
  (void)engine::Sampler(config);  // checks the values
  return config;
}

}  // namespace lowbit::cli
