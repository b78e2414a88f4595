// Autoregressive generation with a key/value cache: the prompt runs in one
// forward pass, then one token at a time until a stop token or the budget.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "lowbit/engine/sampler.h"
#include "lowbit/models/causal_lm.h"

namespace lowbit::engine {

// Chooses the next token from the f32 logits of the last position and the
// tokens so far (prompt + generated), on the host.
using NextTokenFn = std::function<int32_t(std::span<const float> logits, std::span<const int32_t> history)>;

struct GenerationOptions {
  int64_t max_new_tokens = 128;
  std::vector<int32_t> stop_tokens;  // generation ends after emitting one of these
  // Cache size in tokens (0: prompt + max_new_tokens, at most the model's
  // max_position_embeddings). A prompt that does not fit is an Error;
  // generation stops when the context is full.
  int64_t context = 0;
  // How tokens are chosen: greedy by default. It runs where the logits are
  // (on a GPU only the id comes back; greedy with a repetition penalty and
  // next_token go through the host).
  SamplingConfig sampling{.temperature = 0.0f};
  NextTokenFn next_token;  // when set, replaces `sampling`
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated tokens only
  std::string stop_reason;      // "stop token", "max new tokens", "context full"
  double prompt_seconds = 0.0;
  double decode_seconds = 0.0;
  double tokens_per_second() const {
    return decode_seconds > 0.0 && tokens.size() > 1 ? double(tokens.size() - 1) / decode_seconds : 0.0;
  }
};

int32_t argmax(std::span<const float> logits);

// on_token(id) is called for each generated token as soon as it is chosen
// (for streaming); returning false stops generation.
GenerationResult generate(const models::CausalLM& model, std::span<const int32_t> prompt,
                          const GenerationOptions& options, const std::function<bool(int32_t)>& on_token = {});

}  // namespace lowbit::engine
