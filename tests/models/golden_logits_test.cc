// Whole-model forward passes against the logits transformers computed.
#include <cmath>

#include "lowbit/engine/model_loader.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

using testing::golden_dir;
using testing::models_dir;

struct Diff {
  double max_abs = 0.0, mean_abs = 0.0;
  double argmax_agreement = 0.0;
};

// Runs each row of input_ids [batch, seq] through the model from a fresh cache
// and compares all logits with expected [batch, seq, vocab].
Diff compare_logits(const models::CausalLM& model, const Tensor& input_ids, const Tensor& expected) {
  const int64_t batch = input_ids.dim(0), seq = input_ids.dim(1), vocab = expected.dim(2);
  Diff d;
  int64_t agree = 0;
  double sum = 0.0;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int32_t> ids(static_cast<size_t>(seq));
    for (int64_t t = 0; t < seq; ++t) ids[size_t(t)] = int32_t(input_ids.data<int64_t>()[b * seq + t]);
    auto cache = model.make_cache(seq);
    const std::vector<float> got = testing::to_floats(model.forward(ids, cache, true));
    const float* want = expected.data<float>() + b * seq * vocab;
    for (int64_t t = 0; t < seq; ++t) {
      int64_t am_got = 0, am_want = 0;
      for (int64_t v = 0; v < vocab; ++v) {
        const double e = std::fabs(double(got[size_t(t * vocab + v)]) - want[t * vocab + v]);
        d.max_abs = std::max(d.max_abs, e);
        sum += e;
        if (got[size_t(t * vocab + v)] > got[size_t(t * vocab + am_got)]) am_got = v;
        if (want[t * vocab + v] > want[t * vocab + am_want]) am_want = v;
      }
      agree += am_got == am_want;
    }
  }
  d.mean_abs = sum / double(batch * seq * vocab);
  d.argmax_agreement = double(agree) / double(batch * seq);
  return d;
}

TEST(GoldenLogits, DevLlamaFp32) {
  const auto model = engine::load_model(golden_dir() / "dev-llama/fp32");
  const auto ref = io::SafetensorsReader::open(golden_dir() / "dev-llama/logits.safetensors");
  const Diff d = compare_logits(*model, ref.tensor("input_ids"), ref.tensor("logits.fp32"));
  EXPECT_LE(d.max_abs, 1e-4);
  EXPECT_EQ(d.argmax_agreement, 1.0);
}

class DevArch : public ::testing::TestWithParam<std::string> {};

TEST_P(DevArch, MatchesTransformersFp32) {
  const auto model = engine::load_model(golden_dir() / "dev-arch" / GetParam());
  const auto ref = io::SafetensorsReader::open(golden_dir() / "dev-arch/logits.safetensors");
  const Diff d = compare_logits(*model, ref.tensor("input_ids"), ref.tensor("logits." + GetParam()));
  EXPECT_LE(d.max_abs, 1e-4) << GetParam();
  EXPECT_EQ(d.argmax_agreement, 1.0);
}

INSTANTIATE_TEST_SUITE_P(Architectures, DevArch, ::testing::Values("qwen2", "mistral", "llama3-rope"));

TEST(GoldenLogits, ShakespeareLlamaFp32) {
  const auto model = engine::load_model(models_dir() / "shakespeare-llama", {.dtype = DType::F32});
  const auto ref = io::SafetensorsReader::open(models_dir() / "shakespeare-llama-logits.safetensors");
  const Diff d = compare_logits(*model, ref.tensor("input_ids"), ref.tensor("logits.fp32"));
  EXPECT_LE(d.max_abs, 1e-3);
  EXPECT_EQ(d.argmax_agreement, 1.0);
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

class DevLlamaQuantized : public ::testing::TestWithParam<std::string> {};

TEST_P(DevLlamaQuantized, CloseToBitsandbytes) {
  const auto model = engine::load_model(testing::golden_dir() / "dev-llama" / GetParam());
  const auto ref = io::SafetensorsReader::open(testing::golden_dir() / "dev-llama/logits.safetensors");
  const Diff d = compare_logits(*model, ref.tensor("input_ids"), ref.tensor("logits." + GetParam()));
  std::printf("%s: max abs %.3g, mean abs %.3g, argmax agreement %.3f\n", GetParam().c_str(), d.max_abs, d.mean_abs,
              d.argmax_agreement);
}

INSTANTIATE_TEST_SUITE_P(Formats, DevLlamaQuantized, ::testing::Values("int8", "nf4-dq-bf16", "fp4-f16"));

}  // namespace
}  // namespace lowbit
