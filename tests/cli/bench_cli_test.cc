// `lowbit bench` end to end on the CPU: the JSON rows of the tiny shape and
// the errors for bad option values.
#include <cstdio>

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace lowbit {
namespace {

using ::testing::HasSubstr;

using testing::CliRun;
using testing::run_lowbit;

// Short runs: the tiny shape, 8 + 4 tokens, no repeats (under a second on 2 cores).
const std::string quick = " --prompt 8 --decode 4 --prefill 16,32 --repeats 0";

TEST(BenchCli, TinyShapeJsonHasTheFields) {
  const CliRun r = run_lowbit("bench --shape tiny --device cpu --json" + quick);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto rows = nlohmann::json::parse(r.output);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), 3u);
  const std::vector<std::string> formats = {"bf16", "int8", "nf4"};
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    EXPECT_EQ(row["format"], formats[i]);
    EXPECT_EQ(row["device"], "cpu");
    EXPECT_EQ(row["batch"], 1);
    EXPECT_EQ(row["prompt"], 8);
    EXPECT_EQ(row["decode"], 4);
    EXPECT_GT(row["prefill_tokens_per_second"].get<double>(), 0.0);
    EXPECT_GT(row["decode_tokens_per_second"].get<double>(), 0.0);
    EXPECT_GT(row["peak_memory_bytes"].get<uint64_t>(), row["weight_bytes"].get<uint64_t>());
    EXPECT_EQ(row["parameters"], 4196608);
    ASSERT_EQ(row["prefill"].size(), 2u);
    EXPECT_EQ(row["prefill"][0]["tokens"], 16);
    EXPECT_GT(row["prefill"][1]["tokens_per_second"].get<double>(), 0.0);
  }
  // bf16 = 2 bytes a parameter; the quantized formats hold less.
  EXPECT_EQ(rows[0]["weight_bytes"], 2 * 4196608);
  EXPECT_LT(rows[2]["weight_bytes"].get<uint64_t>(), rows[1]["weight_bytes"].get<uint64_t>());
}

// --batch takes a list: a row a format and batch size.
TEST(BenchCli, BatchListGivesARowEach) {
  const CliRun r = run_lowbit("bench --shape tiny --device cpu --json --formats nf4 --batch 1,2 --prompt 4 --decode 2 "
                              "--prefill none --repeats 0");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto rows = nlohmann::json::parse(r.output);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["batch"], 1);
  EXPECT_EQ(rows[1]["batch"], 2);
  EXPECT_GT(rows[1]["decode_tokens_per_second"].get<double>(), 0.0);
}

TEST(BenchCli, TableHasOneRowPerFormat) {
  const CliRun r = run_lowbit("bench " + (testing::models_dir() / "shakespeare-llama").string() +
                              " --formats nf4,bf16" + quick);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("prefill tok/s"));
  EXPECT_THAT(r.output, HasSubstr("decode tok/s"));
  EXPECT_THAT(r.output, HasSubstr("prefill 32 tok/s"));
  EXPECT_THAT(r.output, HasSubstr("\nnf4 "));
  EXPECT_THAT(r.output, HasSubstr("\nbf16 "));
}

struct BadValue {
  std::string args;
  std::vector<std::string> expected;  // in the message
};

class BenchCliErrors : public ::testing::TestWithParam<BadValue> {};

TEST_P(BenchCliErrors, NameTheOptionAndTheValidValues) {
  const CliRun r = run_lowbit("bench " + GetParam().args + quick);
  EXPECT_NE(r.status, 0) << r.output;
  for (const auto& s : GetParam().expected) EXPECT_THAT(r.output, HasSubstr(s));
}

INSTANTIATE_TEST_SUITE_P(
    Values, BenchCliErrors,
    ::testing::Values(
        BadValue{"--shape llama9",
                 {"--shape", "llama9", "llama2-7b, llama2-13b, llama3-8b, mistral-7b, qwen2-7b, tiny"}},
        BadValue{"--shape tiny --formats bf16,int3", {"--formats", "int3", "bf16, f16, f32, int8, nf4, fp4"}},
        BadValue{"--shape tiny --batch 0", {"--batch", "1 to 1024 sequences"}},
        BadValue{"--shape tiny --device tpu", {"--device", "cpu, cuda or cuda:N"}}));

}  // namespace
}  // namespace lowbit
