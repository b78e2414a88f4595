#include <cmath>
#include <map>

#include "lowbit/core/error.h"
#include "lowbit/engine/sampler.h"
#include "support/test_support.h"

namespace lowbit::engine {
namespace {

std::vector<float> random_logits(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> l(n);
  for (float& x : l) x = normal(rng);
  return l;
}

int32_t argmax(const std::vector<float>& l) { return int32_t(std::max_element(l.begin(), l.end()) - l.begin()); }

TEST(Sampler, GreedyIsFirstArgmax) {
  Sampler greedy({.temperature = 0.0f});
  EXPECT_EQ(greedy.sample(std::vector<float>{1, 5, 5, 2}, {}), 1);
  const auto l = random_logits(1000, 1);
  EXPECT_EQ(greedy.sample(l, {}), argmax(l));
}

TEST(Sampler, SameSeedSameTokens) {
  const auto l = random_logits(500, 2);
  SamplingConfig c{.temperature = 1.3f, .top_k = 50, .top_p = 0.95f, .seed = 42};
  Sampler a(c), b(c);
  c.seed = 43;
  Sampler other(c);
  std::vector<int32_t> ta, tb, to;
  for (int i = 0; i < 64; ++i) {
    ta.push_back(a.sample(l, ta));
    tb.push_back(b.sample(l, tb));
    to.push_back(other.sample(l, to));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, to);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto l = random_logits(300, 100 + seed);
    Sampler top1({.temperature = 2.0f, .top_k = 1, .seed = seed});
    Sampler nucleus({.temperature = 2.0f, .top_p = 1e-6f, .seed = seed});
    EXPECT_EQ(top1.sample(l, {}), argmax(l));
    EXPECT_EQ(nucleus.sample(l, {}), argmax(l));
  }
}

TEST(Sampler, DrawsFollowTheSoftmax) {
  const std::vector<float> l{0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};  // p = 0.1 0.2 0.3 0.4
  Sampler s({.temperature = 1.0f, .seed = 7});
  std::vector<int> counts(4);
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++counts[size_t(s.sample(l, {}))];
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(counts[i] / double(n), 0.1 * double(i + 1), 0.01) << i;
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  const std::vector<float> l{0.0f, 1.0f};
  const auto share_of_1 = [&](float t) {
    Sampler s({.temperature = t, .seed = 3});
    int ones = 0;
    for (int i = 0; i < 20000; ++i) ones += s.sample(l, {});
    return ones / 20000.0;
  };
  EXPECT_NEAR(share_of_1(1.0f), 1.0 / (1.0 + std::exp(-1.0)), 0.015);
  EXPECT_NEAR(share_of_1(0.5f), 1.0 / (1.0 + std::exp(-2.0)), 0.015);
  EXPECT_NEAR(share_of_1(100.0f), 0.5, 0.02);
}

TEST(Sampler, TopKAndTopPRestrictTheSupport) {
  const std::vector<float> l{0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};  // p = 0.1 0.2 0.3 0.4
  Sampler k2({.top_k = 2, .seed = 1});
  // top_p 0.6: 0.4 alone is below it, 0.4 + 0.3 reaches it: {3, 2}.
  Sampler p6({.top_p = 0.6f, .seed = 1});
  // top_p 0.75: tokens 3, 2 hold 0.7 < 0.75, so token 1 joins.
  Sampler p75({.top_p = 0.75f, .seed = 1});
  std::map<int32_t, int> seen_k, seen_p, seen_p75;
  for (int i = 0; i < 4000; ++i) {
    ++seen_k[k2.sample(l, {})];
    ++seen_p[p6.sample(l, {})];
    ++seen_p75[p75.sample(l, {})];
  }
  EXPECT_EQ(seen_k.size(), 2u);
  EXPECT_TRUE(seen_k.count(2) && seen_k.count(3));
  EXPECT_EQ(seen_p.size(), 2u);
  EXPECT_TRUE(seen_p.count(2) && seen_p.count(3));
  EXPECT_NEAR(seen_p[3] / 4000.0, 4.0 / 7.0, 0.03);
  EXPECT_EQ(seen_p75.size(), 3u);
  EXPECT_FALSE(seen_p75.count(0));
}

TEST(Sampler, TopKKeepsTiesWithTheKthScore) {
  const std::vector<float> l{1.0f, 3.0f, 2.0f, 2.0f};
  Sampler s({.temperature = 1.0f, .top_k = 2, .seed = 5});
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[s.sample(l, {})];
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_FALSE(seen.count(0));
}

TEST(Sampler, RepetitionPenaltyAsTransformers) {
  std::vector<float> scores{2.0f, -2.0f, 0.0f, 4.0f};
  const std::vector<int32_t> previous{0, 1, 1, 2};
  apply_repetition_penalty(scores, previous, 2.0f);
  EXPECT_EQ(scores, (std::vector<float>{1.0f, -4.0f, 0.0f, 4.0f}));  // once per distinct token

  // Greedy with the penalty moves away from a repeated token.
  Sampler g({.temperature = 0.0f, .repetition_penalty = 3.0f});
  const std::vector<float> l{3.0f, 2.0f};
  EXPECT_EQ(g.sample(l, {}), 0);
  EXPECT_EQ(g.sample(l, std::vector<int32_t>{0}), 1);
  EXPECT_THROW(g.sample(l, std::vector<int32_t>{7}), Error);
}

TEST(Sampler, RejectsBadConfigAndLogits) {
  EXPECT_THROW(Sampler({.temperature = -1.0f}), Error);
  EXPECT_THROW(Sampler({.top_k = -2}), Error);
  EXPECT_THROW(Sampler({.top_p = 0.0f}), Error);
  EXPECT_THROW(Sampler({.top_p = 1.5f}), Error);
  EXPECT_THROW(Sampler({.repetition_penalty = 0.0f}), Error);
  try {
    Sampler({.top_p = 2.0f});
  } catch (const Error& e) {
    EXPECT_EQ(e.context().option, "top_p");
  }
  Sampler s({});
  EXPECT_THROW(s.sample(std::vector<float>{}, {}), Error);
  EXPECT_THROW(s.sample(std::vector<float>{1.0f, NAN}, {}), Error);
  EXPECT_THROW(s.sample(std::vector<float>{-INFINITY, -INFINITY}, {}), Error);
  EXPECT_EQ(s.sample(std::vector<float>{-INFINITY, 0.0f}, {}), 1);
}

}  // namespace
}  // namespace lowbit::engine
