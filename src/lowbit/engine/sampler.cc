#include "lowbit/engine/sampler.h"

#include <algorithm>
#include <cmath>

#include "lowbit/core/error.h"
#include "lowbit/ops/sampling.h"

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
  for (float s : logits) LOWBIT_CHECK(!std::isnan(s), "logits contain NaN; the model output is broken");
  for (int32_t id : previous_tokens)
    LOWBIT_CHECK(id >= 0 && size_t(id) < logits.size(), "previous token {} is outside the vocabulary of {} logits", id,
                 logits.size());
  if (greedy()) {
    scores_.assign(logits.begin(), logits.end());
    apply_repetition_penalty(scores_, previous_tokens, config_.repetition_penalty);
    return int32_t(std::max_element(scores_.begin(), scores_.end()) - scores_.begin());
  }
  const Tensor x = Tensor::from_vector(std::vector<float>(logits.begin(), logits.end()), {1, int64_t(logits.size())});
  const Tensor previous =
      Tensor::from_vector(std::vector<int32_t>(previous_tokens.begin(), previous_tokens.end()),
                          {int64_t(previous_tokens.size())});
  return sample(x, previous);
}

int32_t Sampler::sample(const Tensor& logits, const Tensor& previous_tokens) {
  if (greedy()) {  // on the host: the repetition penalty rewrites the scores first
    const Tensor row = logits.to(Device::cpu()), f = row.dtype() == DType::F32 ? row : row.cast(DType::F32);
    const Tensor prev = previous_tokens.to(Device::cpu());
    return sample(std::span<const float>(f.data<float>(), size_t(f.numel())),
                  std::span<const int32_t>(prev.data<int32_t>(), size_t(prev.numel())));
  }
  // Inverse-CDF draw with 53 random bits.
  const double u = double(rng_() >> 11) * 0x1.0p-53;
  if (!choice_.defined() || !(choice_.device() == logits.device()))
    choice_ = Tensor::empty({1}, DType::I32, logits.device());
  ops::sample_token(logits, previous_tokens,
                    {config_.temperature, config_.top_k, config_.top_p, config_.repetition_penalty}, u, choice_);
  int32_t id = 0;
  copy_bytes(&id, Device::cpu(), choice_.raw_data(), choice_.device(), sizeof id);
  LOWBIT_CHECK(id >= 0, "nothing to sample: the logits contain NaN or are all -inf");
  return id;
}

}  // namespace lowbit::engine
