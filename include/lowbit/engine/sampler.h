// Choosing the next token from logits the way transformers' generate() does:
// repetition penalty (RepetitionPenaltyLogitsProcessor), then temperature,
// top-k and top-p (the warpers, in that order), then a draw from the softmax
// (ops::sample_token, on the logits' device). The draw uses std::mt19937_64,
// so a seed gives the same tokens on every machine (not the same as PyTorch's
// generator).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "lowbit/core/tensor.h"

namespace lowbit::engine {

struct SamplingConfig {
  float temperature = 1.0f;         // 0: greedy (argmax, first on ties)
  int top_k = 0;                    // 0: no limit; ties with the k-th logit are kept
  float top_p = 1.0f;               // nucleus mass in (0, 1]; at least one token is kept
  float repetition_penalty = 1.0f;  // > 0; 1: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  // Throws Error naming the option when a value is out of range.
  explicit Sampler(SamplingConfig config);

  // logits: f32 scores of the last position (one per vocabulary entry);
  // previous_tokens: prompt and generated ids, for the repetition penalty.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> previous_tokens);
  // The same for a logits row [1, vocab] and previous ids (i32 [n]) on any
  // device: on a GPU only the chosen id comes back. Greedy with a repetition
  // penalty goes through the host.
  int32_t sample(const Tensor& logits, const Tensor& previous_tokens);

  const SamplingConfig& config() const { return config_; }
  bool greedy() const { return config_.temperature == 0.0f; }

 private:
  SamplingConfig config_;
  std::mt19937_64 rng_;
  std::vector<float> scores_;
  Tensor choice_;  // the drawn id, on the logits' device (kept: no allocation a step)
};

// The repetition penalty of transformers, in place: each distinct token of
// `previous` has its score divided by `penalty` when positive, multiplied when
// negative.
void apply_repetition_penalty(std::span<float> scores, std::span<const int32_t> previous, float penalty);

}  // namespace lowbit::engine
