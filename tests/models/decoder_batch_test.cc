// Several sequences in one forward pass (CausalLM::forward_batch) give each
// sequence the logits it gets alone: the projections see all rows, RoPE and
// attention each sequence's own cache.
#include <cmath>

#include "lowbit/engine/model_loader.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

using testing::golden_dir;

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
  return worst;
}

// Three prompts of four tokens, then two decoding steps, batched against
// one sequence at a time (f32: only the GEMMs' blocking may differ by rows).
TEST(DecoderBatch, EqualsSequencesAlone) {
  const auto model = engine::load_model(golden_dir() / "dev-llama/fp32");
  const int64_t vocab = model->config().vocab_size;
  const std::vector<std::vector<int32_t>> prompts = {{1, 17, 300, 42}, {7, 99, 5, 250}, {3, 3, 3, 3}};
  const std::vector<std::vector<int32_t>> steps = {{11, 12, 13}, {400, 1, 2}};
  for (bool together : {false, true}) {
    SCOPED_TRACE(together ? "caches from make_caches" : "caches made one by one");
    std::vector<models::KVCache> caches;
    if (together) caches = model->make_caches(int64_t(prompts.size()), 8);
    else
      for (size_t s = 0; s < prompts.size(); ++s) caches.push_back(model->make_cache(8));
    std::vector<models::KVCache*> handles;
    for (auto& c : caches) handles.push_back(&c);

    std::vector<int32_t> joined;
    for (const auto& p : prompts) joined.insert(joined.end(), p.begin(), p.end());
    const Tensor all = model->forward_batch(joined, handles, true);
    ASSERT_EQ(all.dim(0), 12);
    const auto all_values = testing::to_floats(all);
    std::vector<std::vector<float>> batched_steps;
    for (const auto& step : steps)
      batched_steps.push_back(testing::to_floats(model->forward_batch(step, handles, false)));
    for (const auto& c : caches) EXPECT_EQ(c.length, 6);

    for (size_t s = 0; s < prompts.size(); ++s) {
      auto cache = model->make_cache(8);
      const auto alone = testing::to_floats(model->forward(prompts[s], cache, true));
      const std::vector<float> part(all_values.begin() + int64_t(s) * 4 * vocab,
                                    all_values.begin() + int64_t(s + 1) * 4 * vocab);
      EXPECT_LT(max_abs_diff(part, alone), 1e-4) << "prompt of sequence " << s;
      for (size_t t = 0; t < steps.size(); ++t) {
        const std::vector<int32_t> one = {steps[t][s]};
        const auto step_alone = testing::to_floats(model->forward(one, cache, false));
        const std::vector<float> row(batched_steps[t].begin() + int64_t(s) * vocab,
                                     batched_steps[t].begin() + int64_t(s + 1) * vocab);
        EXPECT_LT(max_abs_diff(row, step_alone), 1e-4) << "step " << t << " of sequence " << s;
      }
  }

  // Without all_logits a prompt's batch returns each sequence's last row.
  for (auto& c : caches) c.clear();
  const auto last = testing::to_floats(model->forward_batch(joined, handles, false));
  ASSERT_EQ(last.size(), size_t(3 * vocab));
  for (int64_t s = 0; s < 3; ++s) {
    const std::vector<float> want(all_values.begin() + (4 * s + 3) * vocab, all_values.begin() + (4 * s + 4) * vocab);
    const std::vector<float> got(last.begin() + s * vocab, last.begin() + (s + 1) * vocab);
    EXPECT_LT(max_abs_diff(got, want), 1e-5) << "sequence " << s;
  }
  }
}

TEST(DecoderBatch, RefusesUnevenBatches) {
  const auto model = engine::load_model(golden_dir() / "dev-llama/fp32");
  auto a = model->make_cache(8), b = model->make_cache(8), small = model->make_cache(2);
  models::KVCache* two[] = {&a, &b};
  const std::vector<int32_t> five = {1, 2, 3, 4, 5}, four = {1, 2, 3, 4};
  EXPECT_THROW(model->forward_batch(five, two, false), Error);  // 5 ids do not make 2 sequences
  model->forward(std::vector<int32_t>{1}, a, false);
  EXPECT_THROW(model->forward_batch(four, two, false), Error);  // caches at 1 and 0 positions
  a.clear();
  models::KVCache* same[] = {&a, &a};
  EXPECT_THROW(model->forward_batch(four, same, false), Error);
  models::KVCache* short_one[] = {&a, &small};
  EXPECT_THROW(model->forward_batch(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, short_one, false), Error);
  EXPECT_EQ(a.length, 0);
}

}  // namespace
}  // namespace lowbit
