#include "lowbit/engine/generate.h"

#include <algorithm>
#include <chrono>

#include "lowbit/core/half.h"
#include "lowbit/ops/sampling.h"

namespace lowbit::engine {
namespace {

Tensor last_row(const Tensor& logits) {
  const int64_t vocab = logits.dim(-1), rows = logits.numel() / vocab;
  return logits.reshape({-1, vocab}).rows(rows - 1, rows);
}

std::vector<float> last_row_f32(const Tensor& logits) {
  // Only the last row comes back from the GPU.
  const Tensor row = last_row(logits).to(Device::cpu());
  const Tensor f = row.dtype() == DType::F32 ? row : row.cast(DType::F32);
  return {f.data<float>(), f.data<float>() + f.numel()};
}

// Chooses each next token: the caller's function on the host's f32 logits,
// or the sampling settings where the logits are (on a GPU only the id comes
// back; the history lives there too).
class TokenChooser {
 public:
  TokenChooser(const GenerationOptions& options, Device device, std::span<const int32_t> prompt, int64_t capacity)
      : fn_(options.next_token), sampler_(options.sampling) {
    if (fn_) return;
    if (sampler_.greedy() && options.sampling.repetition_penalty == 1.0f) {
      choice_ = Tensor::empty({1}, DType::I32, device);
      return;
    }
    history_ = Tensor::empty({std::max<int64_t>(capacity, 1)}, DType::I32, device);
    copy_bytes(history_.raw_data(), device, prompt.data(), Device::cpu(), prompt.size_bytes());
    length_ = int64_t(prompt.size());
  }

  int32_t next(const Tensor& logits, std::span<const int32_t> history) {
    if (fn_) return fn_(last_row_f32(logits), history);
    if (history_.defined()) {
      // Tokens chosen since the last call (the caller's history is the truth).
      for (; length_ < int64_t(history.size()) && length_ < history_.numel(); ++length_)
        copy_bytes(static_cast<int32_t*>(history_.raw_data()) + length_, history_.device(), &history[size_t(length_)],
                   Device::cpu(), sizeof(int32_t));
      return sampler_.sample(last_row(logits), history_.rows(0, length_));
    }
    ops::argmax(last_row(logits), choice_);
    int32_t id = 0;
    copy_bytes(&id, Device::cpu(), choice_.raw_data(), choice_.device(), sizeof id);
    LOWBIT_CHECK(id >= 0, "generate: the logits contain NaN; the model output is broken");
    return id;
  }

 private:
  NextTokenFn fn_;
  Sampler sampler_;
  Tensor choice_;   // greedy: the id, on the logits' device
  Tensor history_;  // sampling: prompt and generated ids, on the logits' device
  int64_t length_ = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int32_t argmax(std::span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

GenerationResult generate(const models::CausalLM& model, std::span<const int32_t> prompt,
                          const GenerationOptions& options, const std::function<bool(int32_t)>& on_token) {
  // The cache holds what this call can use: prompt + new tokens, at most the
  // model's context (a 128k-token cache of a large model would not fit).
  const int64_t max_context = model.config().max_position_embeddings;
  const int64_t context = options.context > 0
                              ? options.context
                              : std::min(max_context, int64_t(prompt.size()) + std::max<int64_t>(options.max_new_tokens, 1));
  LOWBIT_CHECK(!prompt.empty(), "generate: the prompt is empty");
  LOWBIT_CHECK(int64_t(prompt.size()) < std::min(context, max_context),
               "generate: the prompt has {} tokens but the context holds {} (max_position_embeddings or --context); "
               "shorten the prompt",
               prompt.size(), std::min(context, max_context));
  GenerationResult result;
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  models::KVCache cache = model.make_cache(context);

  TokenChooser chooser(options, model.device(), prompt, context);

  auto t0 = std::chrono::steady_clock::now();
  int32_t next = chooser.next(model.forward(prompt, cache, false), history);
  result.prompt_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    result.tokens.push_back(next);
    history.push_back(next);
    const bool keep_going = !on_token || on_token(next);
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), next) != options.stop_tokens.end()) {
      result.stop_reason = "stop token";
      break;
    }
    if (!keep_going) {
      result.stop_reason = "stopped";
      break;
    }
    if (i + 1 == options.max_new_tokens) {
      result.stop_reason = "max new tokens";
      break;
    }
    if (cache.length >= context) {
      result.stop_reason = "context full";
      break;
    }
    const int32_t token[1] = {next};
    next = chooser.next(model.forward(token, cache, false), history);
  }
  if (options.max_new_tokens <= 0) result.stop_reason = "max new tokens";
  result.decode_seconds = seconds_since(t0);
  return result;
}

}  // namespace lowbit::engine
