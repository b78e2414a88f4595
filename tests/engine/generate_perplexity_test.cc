#include <cmath>

#include "lowbit/engine/generate.h"
#include "lowbit/engine/model_loader.h"
#include "lowbit/engine/perplexity.h"
#include "lowbit/ops/elementwise.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

std::vector<int32_t> ids_of(const Tensor& t) { return testing::token_ids(t); }

const models::CausalLM& shakespeare(DType dtype) {
  static auto f32 = engine::load_model(testing::models_dir() / "shakespeare-llama", {.dtype = DType::F32});
  static auto b16 = engine::load_model(testing::models_dir() / "shakespeare-llama", {.dtype = DType::BF16});
  return dtype == DType::F32 ? *f32 : *b16;
}

TEST(Generate, GreedyMatchesTransformers) {
  const auto ref = io::SafetensorsReader::open(testing::models_dir() / "shakespeare-llama-logits.safetensors");
  const auto prompt = ids_of(ref.tensor("greedy.prompt_ids"));
  const auto want = ids_of(ref.tensor("greedy.output_ids"));
  engine::GenerationOptions options;
  options.max_new_tokens = int64_t(want.size() - prompt.size());
  std::vector<int32_t> streamed;
  const auto result = engine::generate(shakespeare(DType::F32), prompt, options, [&](int32_t id) {
    streamed.push_back(id);
    return true;
  });
  std::vector<int32_t> got = prompt;
  got.insert(got.end(), result.tokens.begin(), result.tokens.end());
  EXPECT_EQ(got, want);
  EXPECT_EQ(streamed, result.tokens);
  EXPECT_EQ(result.stop_reason, "max new tokens");
}

TEST(Generate, StopsAtStopTokenAndRejectsLongPrompt) {
  const auto& model = shakespeare(DType::F32);
  const std::vector<int32_t> prompt = {0, 5, 6};
  engine::GenerationOptions options;
  options.max_new_tokens = 5;
  const auto first = engine::generate(model, prompt, options);
  options.stop_tokens = {first.tokens[1]};
  const auto stopped = engine::generate(model, prompt, options);
  EXPECT_EQ(stopped.tokens.size(), 2u);
  EXPECT_EQ(stopped.stop_reason, "stop token");
  options.context = 3;
  EXPECT_THROW(engine::generate(model, prompt, options), Error);
}

// The windowed protocol on a short text, against a direct computation.
TEST(Perplexity, ProtocolMatchesDirectComputation) {
  const auto& model = shakespeare(DType::F32);
  const auto tokens = io::SafetensorsReader::open(testing::models_dir() / "shakespeare-tokens.safetensors");
  const auto all = ids_of(tokens.tensor("dev.ids"));
  const std::vector<int32_t> ids(all.begin(), all.begin() + 100);
  // ctx 40, stride 20: windows [0,40) [20,60) [40,80) [60,100).
  double nll = 0.0;
  int64_t scored = 0;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < 100; begin += 20) {
    const int64_t end = std::min<int64_t>(begin + 40, 100);
    auto cache = model.make_cache(40);
    const Tensor logits = model.forward(std::span(ids).subspan(size_t(begin), size_t(end - begin)), cache, true);
    Tensor lp = Tensor::empty(logits.shape(), DType::F32);
    ops::log_softmax(logits, lp);
    for (int64_t t = std::max(prev_end, begin + 1); t < end; ++t, ++scored)
      nll -= lp.data<float>()[(t - 1 - begin) * lp.dim(1) + ids[size_t(t)]];
    prev_end = end;
    if (end == 100) break;
  }
  const auto r = engine::perplexity(model, ids, {.ctx = 40, .stride = 20});
  EXPECT_EQ(r.scored_tokens, 99);
  EXPECT_EQ(scored, 99);
  EXPECT_EQ(r.windows, 4);
  EXPECT_NEAR(r.perplexity, std::exp(nll / 99.0), 1e-9 * r.perplexity);
}

TEST(Perplexity, RejectsBadWindows) {
  const std::vector<int32_t> ids = {1, 2, 3};
  EXPECT_THROW(engine::perplexity(shakespeare(DType::F32), ids, {.ctx = 4, .stride = 8}), Error);
  EXPECT_THROW(engine::perplexity(shakespeare(DType::F32), std::span(ids).first(1), {}), Error);
}

}  // namespace
}  // namespace lowbit
