#include "lowbit/engine/sampler.h"

#include <algorithm>
#include <cmath>

#include "lowbit/core/error.h"

namespace lowbit::engine {

Sampler::Sampler(SamplingConfig config) : config_(config), rng_(config.seed) {
  if (!(config_.temperature >= 0.0f) || !std::isfinite(config_.temperature))
    throw Error(fmt::format("temperature must be >= 0 (0: greedy), got {}", config_.temperature)).with_option("temperature");
  if (config_.top_k < 0) throw Error(fmt::format("top_k must be >= 0 (0: no limit), got {}", config_.top_k)).with_option("top_k");
  if (!(config_.top_p > 0.0f && config_.top_p <= 1.0f))
    throw Error(fmt::format("top_p must be in (0, 1], got {}", config_.top_p)).with_option("top_p");
  if (!(config_.repetition_penalty > 0.0f) || !std::isfinite(config_.repetition_penalty))
    throw Error(fmt::format("repetition_penalty must be > 0 (1: off), got {}", config_.repetition_penalty))
        .with_option("repetition_penalty");
}

void apply_repetition_penalty(std::span<float> scores, std::span<const int32_t> previous, float penalty) {
  if (penalty == 1.0f) return;
  // transformers gathers the scores of all previous ids first and scatters
  // them back, so a token seen twice is penalized once.
  std::vector<int32_t> seen(previous.begin(), previous.end());
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  for (int32_t id : seen) {
    LOWBIT_CHECK(id >= 0 && size_t(id) < scores.size(), "previous token {} is outside the vocabulary of {} logits", id,
                 scores.size());
    float& s = scores[size_t(id)];
    s = s < 0.0f ? s * penalty : s / penalty;
  }
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> previous_tokens) {
  LOWBIT_CHECK(!logits.empty(), "sampling needs at least one logit");
  scores_.assign(logits.begin(), logits.end());
  for (float s : scores_) LOWBIT_CHECK(!std::isnan(s), "logits contain NaN; the model output is broken");
  apply_repetition_penalty(scores_, previous_tokens, config_.repetition_penalty);

  if (greedy()) return int32_t(std::max_element(scores_.begin(), scores_.end()) - scores_.begin());

  if (config_.temperature != 1.0f)
    for (float& s : scores_) s /= config_.temperature;

  candidates_.clear();
  for (size_t i = 0; i < scores_.size(); ++i)
    if (scores_[i] > -INFINITY) candidates_.push_back(int32_t(i));
  LOWBIT_CHECK(!candidates_.empty(), "every logit is -inf; nothing to sample");
  // Highest score first; equal scores keep the lower id first.
  const auto higher = [&](int32_t a, int32_t b) {
    return scores_[size_t(a)] > scores_[size_t(b)] || (scores_[size_t(a)] == scores_[size_t(b)] && a < b);
  };

  if (config_.top_k > 0 && size_t(config_.top_k) < candidates_.size()) {
    // TopKLogitsWarper: drop scores below the k-th largest (ties with it stay).
    std::nth_element(candidates_.begin(), candidates_.begin() + (config_.top_k - 1), candidates_.end(), higher);
    const float kth = scores_[size_t(candidates_[size_t(config_.top_k - 1)])];
    candidates_.erase(std::remove_if(candidates_.begin(), candidates_.end(),
                                     [&](int32_t id) { return scores_[size_t(id)] < kth; }),
                      candidates_.end());
  }
  double max_score = -INFINITY;
  for (int32_t id : candidates_) max_score = std::max(max_score, double(scores_[size_t(id)]));
  weights_.resize(scores_.size());
  double total = 0.0;
  for (int32_t id : candidates_) total += weights_[size_t(id)] = std::exp(double(scores_[size_t(id)]) - max_score);

  size_t keep = candidates_.size();
  if (config_.top_p < 1.0f) {
    // TopPLogitsWarper removes, in ascending order, tokens whose cumulative
    // probability is <= 1 - top_p; from the top that keeps each token whose
    // more likely tokens hold less than top_p. The nucleus is usually small:
    // sort a growing prefix instead of the whole vocabulary.
    const double target = double(config_.top_p) * total;
    for (size_t sorted = std::min<size_t>(256, candidates_.size());; sorted = std::min(sorted * 4, candidates_.size())) {
      std::partial_sort(candidates_.begin(), candidates_.begin() + long(sorted), candidates_.end(), higher);
      double above = 0.0;
      keep = 0;
      while (keep < sorted && above < target) above += weights_[size_t(candidates_[keep++])];
      if (above >= target || sorted == candidates_.size()) {
        total = above;
        break;
      }
    }
  }

  // Inverse-CDF draw with 53 random bits.
  const double u = double(rng_() >> 11) * 0x1.0p-53 * total;
  double cumulative = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    cumulative += weights_[size_t(candidates_[i])];
    if (u < cumulative) return candidates_[i];
  }
  return candidates_[keep - 1];
}

}  // namespace lowbit::engine
