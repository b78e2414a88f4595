// `lowbit perplexity --device cuda` and `lowbit generate --device cuda`: every
// variant of shared/models/shakespeare-reference.json within the CPU test's
// tolerances (inference_cli_test.cc), and greedy text equal to the CPU's.
#include <cstdio>
#include <fstream>

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "cli/shakespeare_cli.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

using testing::CliRun;
using testing::run_lowbit;

using testing::PerplexityCase;

std::string model() { return testing::shakespeare_model(); }
std::string dev_text() { return testing::shakespeare_dev_text(); }

class PerplexityCliCuda : public ::testing::TestWithParam<PerplexityCase> {};

TEST_P(PerplexityCliCuda, MatchesTransformers) {
  LOWBIT_REQUIRE_CUDA();
  testing::expect_reference_perplexity(GetParam(), "--device cuda ");
}

INSTANTIATE_TEST_SUITE_P(Variants, PerplexityCliCuda, testing::perplexity_cases(), testing::perplexity_case_name);

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

// A KV cache larger than the GPU's free memory is refused before any layer's
// cache is allocated, with its size and the free memory named.
TEST(BenchCliCuda, KvCacheTooLargeForTheGpuIsNamed) {
  LOWBIT_REQUIRE_CUDA();
  const CliRun r = run_lowbit("bench --shape llama3-8b --device cuda --formats nf4 --batch 1024 --prompt 2048 "
                              "--decode 2048 --prefill none --repeats 0");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, ::testing::HasSubstr("the KV cache of 1024 sequence(s) x 4097 positions (32 layers, 17.18 GB "
                                             "each) needs 549.89 GB, but cuda:0 has "));
  EXPECT_THAT(r.output, ::testing::HasSubstr("use fewer sequences or a shorter context"));
}

}  // namespace
}  // namespace lowbit
