#include "cli/tokenizer_support.h"

#include <algorithm>
#include <cmath>
#include <random>

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
