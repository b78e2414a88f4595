// `lowbit perplexity` and `lowbit generate` end to end: the perplexity table of
// shared/models/README.md against transformers' values, and the errors a user
// gets for bad input.
#include <cstdio>
#include <fstream>

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "cli/shakespeare_cli.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

using ::testing::HasSubstr;

using testing::CliRun;
using testing::run_lowbit;

using testing::PerplexityCase;

std::string model() { return testing::shakespeare_model(); }
std::string dev_text() { return testing::shakespeare_dev_text(); }

class PerplexityCli : public ::testing::TestWithParam<PerplexityCase> {};

// Every variant of shakespeare-reference.json on the whole dev text (19706
// scored tokens), 4 to 12 s each on 2 cores.
TEST_P(PerplexityCli, MatchesTransformers) {
  testing::expect_reference_perplexity(GetParam(), "");
}

INSTANTIATE_TEST_SUITE_P(Variants, PerplexityCli, testing::perplexity_cases(), testing::perplexity_case_name);

TEST(GenerateCli, GreedyStreamsTheReferenceContinuation) {
  const CliRun r = run_lowbit("generate " + model() + " --prompt 'ROMEO:' --max-new-tokens 12 --dtype f32 --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  // greedy.output_ids of shakespeare-llama-logits.safetensors, decoded.
  EXPECT_THAT(r.output, ::testing::StartsWith("ROMEO: I am I am, I am not."));
}

TEST(GenerateCli, SamplingIsSeededAndTopKOneIsGreedy) {
  // f32: bf16 logits tie often, and top-k keeps every token tied with the k-th.
  const std::string base = "generate " + model() + " --prompt 'JULIET:' --max-new-tokens 16 --quiet --dtype f32 ";
  const CliRun greedy = run_lowbit(base);
  const CliRun top1 = run_lowbit(base + "--temperature 0.7 --top-k 1 --seed 5");
  EXPECT_EQ(greedy.output, top1.output);
  const CliRun a = run_lowbit(base + "--temperature 1.0 --top-p 0.9 --seed 11");
  const CliRun b = run_lowbit(base + "--temperature 1.0 --top-p 0.9 --seed 11");
  EXPECT_EQ(a.output, b.output);
  const CliRun nf4 = run_lowbit(base + "--load-in-4bit --bnb-4bit-quant-type nf4 --repetition-penalty 1.2");
  EXPECT_EQ(nf4.status, 0) << nf4.output;
  EXPECT_THAT(nf4.output, ::testing::StartsWith("JULIET:"));
}

TEST(InferenceCliErrors, BadInputGetsAClearMessage) {
  const auto dir = testing::temp_dir("cli-errors");
  std::ofstream(dir / "latin1.txt") << "caf\xe9 au lait";
  CliRun r = run_lowbit("perplexity " + model() + " --text " + (dir / "latin1.txt").string());
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("is not UTF-8 text: invalid byte 0xe9 at offset 3"));

  // dev-llama has weights and a config but no tokenizer.
  r = run_lowbit("generate " + (testing::golden_dir() / "dev-llama/fp32").string() + " --prompt hi");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("expected tokenizer.json or tokenizer.model"));

  r = run_lowbit("generate " + model() + " --prompt 'ROMEO: what say you' --context 4");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("the context holds 4"));

  // Numeric options name the range they take.
  r = run_lowbit("generate " + model() + " --prompt hi --temperature -1");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("--temperature: expected a number >= 0, got -1"));
  r = run_lowbit("generate " + model() + " --prompt hi --top-p 1.5");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("--top-p: expected a number in (0, 1], got 1.5"));
  r = run_lowbit("perplexity " + model() + " --text " + dev_text() + " --ctx 0");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("--ctx: expected a number > 0, got 0"));

  r = run_lowbit("generate " + model() + " --prompt hi --device tpu");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("--device: unknown device 'tpu'"));
  if (!cuda_available()) {
    // No GPU here (or a build without CUDA): the option is named, not a crash.
    r = run_lowbit("perplexity " + model() + " --text " + dev_text() + " --device cuda");
    EXPECT_NE(r.status, 0);
    EXPECT_THAT(r.output, HasSubstr("--device cuda: "));
  }
}

}  // namespace
}  // namespace lowbit
