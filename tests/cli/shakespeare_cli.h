// What the CPU and GPU CLI tests share: the reference model and text, and the
// perplexity check of every variant of shared/models/shakespeare-reference.json
// on the whole dev text (19706 scored tokens).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace lowbit::testing {

inline std::string shakespeare_model() { return (models_dir() / "shakespeare-llama").string(); }
inline std::string shakespeare_dev_text() { return (models_dir() / "shakespeare-dev.txt").string(); }

inline double reference_perplexity(const std::string& variant) {
  std::ifstream in(models_dir() / "shakespeare-reference.json");
  return nlohmann::json::parse(in)["dev"][variant].get<double>();
}

struct PerplexityCase {
  std::string variant, options;
  double tolerance;  // relative: fp32 0.1%, bf16 0.2%, quantized 0.25%
};

inline auto perplexity_cases() {
  return ::testing::Values(
      PerplexityCase{"fp32", "--dtype f32", 0.001}, PerplexityCase{"bf16", "--dtype bf16", 0.002},
      PerplexityCase{"int8", "--load-in-8bit", 0.0025},
      PerplexityCase{"int8-thr0", "--load-in-8bit --llm-int8-threshold 0", 0.0025},
      PerplexityCase{"nf4-dq-bf16", "--load-in-4bit --bnb-4bit-quant-type nf4 --bnb-4bit-use-double-quant --dtype bf16",
                     0.0025},
      PerplexityCase{"nf4-bf16", "--load-in-4bit --bnb-4bit-quant-type nf4 --dtype bf16", 0.0025},
      PerplexityCase{"fp4-f16", "--load-in-4bit --bnb-4bit-quant-type fp4 --dtype f16", 0.0025});
}

inline std::string perplexity_case_name(const ::testing::TestParamInfo<PerplexityCase>& info) {
  std::string name = info.param.variant;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

// `lowbit perplexity` of the case with `extra` options (e.g. --device cuda)
// against transformers' value.
inline void expect_reference_perplexity(const PerplexityCase& c, const std::string& extra) {
  const CliRun r = run_lowbit("perplexity " + shakespeare_model() + " --text " + shakespeare_dev_text() +
                              " --ctx 256 --stride 128 --json " + extra + c.options);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  const double want = reference_perplexity(c.variant), got = j["perplexity"].get<double>();
  const std::string label = extra.empty() ? c.variant : c.variant + " " + extra;
  std::printf("%s: reference %.6f, lowbit %.6f (%+.4f%%), %.0f tokens/s\n", label.c_str(), want, got,
              100.0 * (got - want) / want, j["tokens_per_second"].get<double>());
  EXPECT_EQ(j["tokens"].get<int64_t>(), 19706);
  EXPECT_LE(std::fabs(got - want) / want, c.tolerance);
}

}  // namespace lowbit::testing
