// `lowbit perplexity --device cuda` and `lowbit generate --device cuda`: every
// variant of shared/models/shakespeare-reference.json within the CPU test's
// tolerances (inference_cli_test.cc), and greedy text equal to the CPU's.
#include <cstdio>
#include <fstream>

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace lowbit {
namespace {

using testing::CliRun;
using testing::run_lowbit;

std::string model() { return (testing::models_dir() / "shakespeare-llama").string(); }
std::string dev_text() { return (testing::models_dir() / "shakespeare-dev.txt").string(); }

double reference(const std::string& variant) {
  std::ifstream in(testing::models_dir() / "shakespeare-reference.json");
  return nlohmann::json::parse(in)["dev"][variant].get<double>();
}

struct PerplexityCase {
  std::string variant, options;
  double tolerance;  // relative, as the CPU test
};

class PerplexityCliCuda : public ::testing::TestWithParam<PerplexityCase> {};

TEST_P(PerplexityCliCuda, MatchesTransformers) {
  LOWBIT_REQUIRE_CUDA();
  const auto& c = GetParam();
  const CliRun r = run_lowbit("perplexity " + model() + " --text " + dev_text() +
                              " --ctx 256 --stride 128 --json --device cuda " + c.options);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  const double want = reference(c.variant), got = j["perplexity"].get<double>();
  std::printf("%s on cuda: reference %.6f, lowbit %.6f (%+.4f%%), %.0f tokens/s\n", c.variant.c_str(), want, got,
              100.0 * (got - want) / want, j["tokens_per_second"].get<double>());
  EXPECT_EQ(j["tokens"].get<int64_t>(), 19706);
  EXPECT_LE(std::fabs(got - want) / want, c.tolerance);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, PerplexityCliCuda,
    ::testing::Values(PerplexityCase{"fp32", "--dtype f32", 0.001}, PerplexityCase{"bf16", "--dtype bf16", 0.002},
                      PerplexityCase{"int8", "--load-in-8bit", 0.0025},
                      PerplexityCase{"int8-thr0", "--load-in-8bit --llm-int8-threshold 0", 0.0025},
                      PerplexityCase{"nf4-dq-bf16",
                                     "--load-in-4bit --bnb-4bit-quant-type nf4 --bnb-4bit-use-double-quant --dtype bf16",
                                     0.0025},
                      PerplexityCase{"nf4-bf16", "--load-in-4bit --bnb-4bit-quant-type nf4 --dtype bf16", 0.0025},
                      PerplexityCase{"fp4-f16", "--load-in-4bit --bnb-4bit-quant-type fp4 --dtype f16", 0.0025}),
    [](const auto& info) {
      std::string name = info.param.variant;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

TEST(GenerateCliCuda, GreedyStreamsTheReferenceContinuation) {
  LOWBIT_REQUIRE_CUDA();
  const CliRun r =
      run_lowbit("generate " + model() + " --prompt 'ROMEO:' --max-new-tokens 12 --dtype f32 --quiet --device cuda");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::StartsWith("ROMEO: I am I am, I am not."));
}

TEST(GenerateCliCuda, BadDeviceIndexNamesTheOption) {
  LOWBIT_REQUIRE_CUDA();
  const CliRun r = run_lowbit("generate " + model() + " --prompt hi --device cuda:99");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, ::testing::HasSubstr("--device cuda:99: this machine has"));
}

}  // namespace
}  // namespace lowbit
