#include "lowbit/engine/perplexity.h"

#include <chrono>
#include <cmath>

#include "lowbit/ops/elementwise.h"

namespace lowbit::engine {

PerplexityResult perplexity(const models::CausalLM& model, std::span<const int32_t> ids,
                            const PerplexityOptions& options) {
  const int64_t n = int64_t(ids.size()), ctx = options.ctx, stride = options.stride;
  LOWBIT_CHECK(ctx >= 2, "perplexity: --ctx must be at least 2, got {}", ctx);
  LOWBIT_CHECK(stride >= 1 && stride <= ctx, "perplexity: --stride must be in [1, ctx = {}], got {}", ctx, stride);
  LOWBIT_CHECK(n >= 2, "perplexity: the text has {} tokens; at least 2 are needed", n);
  const int64_t windows = n <= ctx ? 1 : (n - ctx + stride - 1) / stride + 1;

  const auto start = std::chrono::steady_clock::now();
  PerplexityResult r;
  models::KVCache cache = model.make_cache(std::min(ctx, n));
  int64_t prev_end = 0;
  for (int64_t begin = 0;; begin += stride) {
    const int64_t end = std::min(begin + ctx, n);
    // Targets [score_from, end): new tokens only, never the window's first.
    const int64_t score_from = std::max(prev_end, begin + 1);
    cache.clear();
    const Tensor logits = model.forward(ids.subspan(size_t(begin), size_t(end - begin)), cache, true);
    const int64_t first_row = score_from - 1 - begin, rows = end - score_from;
    const Tensor needed = logits.rows(first_row, first_row + rows);
    // Log-softmax where the logits are (the GPU's model computes it there),
    // then the scored rows on the host.
    Tensor on_device = Tensor::empty(needed.shape(), DType::F32, needed.device());
    ops::log_softmax(needed, on_device);
    const Tensor logprobs = on_device.to(Device::cpu());
    const int64_t vocab = logprobs.dim(1);
    for (int64_t i = 0; i < rows; ++i) {
      const int32_t target = ids[size_t(score_from + i)];
      LOWBIT_CHECK(target >= 0 && target < vocab, "perplexity: token id {} is outside the vocabulary ({})", target,
                   vocab);
      r.nll_sum -= double(logprobs.data<float>()[i * vocab + target]);
    }
    r.scored_tokens += rows;
    r.evaluated_tokens += end - begin;
    ++r.windows;
    if (options.progress) options.progress(r.windows, windows);
    prev_end = end;
    if (end == n) break;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.perplexity = std::exp(r.nll_sum / double(r.scored_tokens));
  r.tokens_per_second = r.seconds > 0.0 ? double(r.scored_tokens) / r.seconds : 0.0;
  return r;
}

}  // namespace lowbit::engine
