// Perplexity with overlapping windows, the protocol of
// shared/models/README.md (and of transformers' perplexity guide):
// windows of `ctx` tokens start every `stride` tokens; each runs from position
// 0 with a fresh cache; token t is scored with the f32 log-softmax of the
// logits at t - 1; the first window scores all its tokens but the first, each
// later one only the tokens no earlier window scored (its last end - prev_end);
// it stops after the window that reaches the end of the text.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "lowbit/models/causal_lm.h"

namespace lowbit::engine {

struct PerplexityOptions {
  int64_t ctx = 256;
  int64_t stride = 128;
  // Called after each window with (windows done, windows in all).
  std::function<void(int64_t, int64_t)> progress;
};

struct PerplexityResult {
  double perplexity = 0.0;
  double nll_sum = 0.0;           // sum of negative log-likelihoods (nats)
  int64_t scored_tokens = 0;
  int64_t evaluated_tokens = 0;   // tokens run through the model (windows overlap)
  int64_t windows = 0;
  double seconds = 0.0;
  double tokens_per_second = 0.0; // scored tokens per second
};

PerplexityResult perplexity(const models::CausalLM& model, std::span<const int32_t> ids,
                            const PerplexityOptions& options = {});

}  // namespace lowbit::engine
