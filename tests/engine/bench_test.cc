// Model shapes with random weights (synthetic_weights.h) and the benchmark
// behind `lowbit bench` (bench.h), on the CPU with the tiny shape.
#include <cmath>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include "lowbit/core/half.h"
#include "lowbit/core/thread_pool.h"
#include "lowbit/engine/bench.h"
#include "lowbit/engine/synthetic_weights.h"
#include "lowbit/models/registry.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

using ::testing::HasSubstr;

models::ModelConfig preset_config(const std::string& name) {
  const auto& json = engine::find_shape_preset(name).config;
  return models::find_architecture(json).parse_config(json);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Parameter counts of the real models (model.num_parameters() in transformers).
TEST(ShapePresets, ParameterCountsAreTheRealModels) {
  EXPECT_EQ(engine::parameter_count(preset_config("llama2-7b")), 6738415616);
  EXPECT_EQ(engine::parameter_count(preset_config("llama2-13b")), 13015864320);
  EXPECT_EQ(engine::parameter_count(preset_config("llama3-8b")), 8030261248);
  EXPECT_EQ(engine::parameter_count(preset_config("mistral-7b")), 7241732096);
  EXPECT_EQ(engine::parameter_count(preset_config("qwen2-7b")), 7615616512);
  EXPECT_EQ(engine::parameter_count(preset_config("tiny")), 4196608);  // shakespeare-llama's
}

TEST(ShapePresets, UnknownNameListsThePresets) {
  const std::string msg = error_of([] { engine::find_shape_preset("llama2-70b"); });
  EXPECT_THAT(msg, HasSubstr("llama2-70b"));
  for (const auto& p : engine::shape_presets()) EXPECT_THAT(msg, HasSubstr(p.name));
}

TEST(ShapePresets, TensorsHaveTheCheckpointNames) {
  const auto tensors = engine::checkpoint_tensors(preset_config("qwen2-7b"), DType::BF16);
  ASSERT_EQ(tensors.size(), 1 + 28 * 12 + 1 + 1);  // a layer: 7 linears, 3 q/k/v biases, 2 norms
  EXPECT_EQ(tensors.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(tensors.front().shape, (Shape{152064, 3584}));
  EXPECT_EQ(tensors[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(tensors[3].name, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(tensors[4].shape, (Shape{512, 3584}));  // k_proj: 4 kv heads of 128
  EXPECT_EQ(tensors.back().name, "lm_head.weight");
}

Tensor make(const io::TensorSource& source, const std::string& name) {
  for (const auto& e : source.entries)
    if (e.name == name) return source.make(e);
  ADD_FAILURE() << name << " is not in the source";
  return {};
}

std::vector<uint16_t> bits(const Tensor& t) {
  const auto* p = static_cast<const uint16_t*>(t.raw_data());
  return {p, p + t.numel()};
}

TEST(SyntheticWeights, SameSeedSameValuesAtAnyThreadCount) {
  const models::ModelConfig c = preset_config("tiny");
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  const int threads = num_threads();
  set_num_threads(1);
  const Tensor one = make(engine::synthetic_weights(c, DType::BF16, 7), name);
  set_num_threads(2);
  const Tensor two = make(engine::synthetic_weights(c, DType::BF16, 7), name);
  set_num_threads(threads);
  EXPECT_EQ(bits(one), bits(two));
  EXPECT_NE(bits(one), bits(make(engine::synthetic_weights(c, DType::BF16, 8), name)));
  EXPECT_NE(bits(one), bits(make(engine::synthetic_weights(c, DType::BF16, 7), "model.layers.1.mlp.gate_proj.weight")));
}

TEST(SyntheticWeights, NormalWithStddevNormsOneBiasesZero) {
  Tensor t = Tensor::empty({1 << 20}, DType::F32);
  engine::fill_normal(t, engine::tensor_key(0, "w"), 0.02f);
  double sum = 0, sum2 = 0, sum4 = 0;
  for (const float v : t.span<float>()) {
    sum += v;
    sum2 += double(v) * v;
    sum4 += double(v) * v * v * v;
  }
  const double n = double(t.numel()), mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 1e-4);
  EXPECT_NEAR(std::sqrt(var), 0.02, 0.0002);
  EXPECT_NEAR(sum4 / n / (var * var), 3.0, 0.2);  // a normal's kurtosis (Irwin-Hall of 8: 2.85)

  nlohmann::json qwen = engine::find_shape_preset("tiny").config;
  qwen["architectures"] = {"Qwen2ForCausalLM"};
  qwen["model_type"] = "qwen2";
  const auto source = engine::synthetic_weights(models::find_architecture(qwen).parse_config(qwen), DType::BF16);
  for (const float v : testing::to_floats(make(source, "model.layers.0.input_layernorm.weight"))) ASSERT_EQ(v, 1.0f);
  for (const float v : testing::to_floats(make(source, "model.norm.weight"))) ASSERT_EQ(v, 1.0f);
  for (const float v : testing::to_floats(make(source, "model.layers.3.self_attn.k_proj.bias"))) ASSERT_EQ(v, 0.0f);
}

// Through the loader's quantization on load, asking for each tensor once, in order.
TEST(SyntheticWeights, LoadsThroughQuantizationOnLoad) {
  const auto& preset = engine::find_shape_preset("tiny");
  const models::ModelConfig c = preset_config("tiny");
  io::TensorSource source = engine::synthetic_weights(c, DType::BF16);
  std::vector<std::string> asked;
  source.make = [inner = source.make, &asked](const io::TensorSource::Entry& e) {
    asked.push_back(e.name);
    return inner(e);
  };
  const auto model = engine::load_model_from_tensors(preset.config, source, engine::bench_format("nf4").load);
  ASSERT_EQ(asked.size(), source.entries.size());
  for (size_t i = 0; i < asked.size(); ++i) EXPECT_EQ(asked[i], source.entries[i].name);
  EXPECT_THAT(model->describe(), HasSubstr("nf4"));
  EXPECT_EQ(model->dtype(), DType::BF16);
  // 4-bit linears: half a byte a weight plus an f32 absmax per 64.
  const auto dense = engine::load_model_from_tensors(preset.config, engine::synthetic_weights(c, DType::BF16),
                                                     engine::bench_format("bf16").load);
  EXPECT_EQ(dense->weight_bytes(), 2 * uint64_t(engine::parameter_count(c)));
  EXPECT_LT(model->weight_bytes(), dense->weight_bytes() / 2);
}

TEST(Bench, FormatsAndOptionsAreChecked) {
  EXPECT_THAT(error_of([] { engine::bench_format("int4"); }), HasSubstr("bf16, f16, f32, int8, nf4, fp4"));
  const auto int8 = engine::bench_format("int8");
  ASSERT_TRUE(int8.load.quantize.has_value());
  EXPECT_EQ(int8.load.quantize->int8_threshold, 6.0f);
  const auto nf4 = engine::bench_format("nf4");
  EXPECT_EQ(nf4.load.quantize->blocksize, 64);
  EXPECT_EQ(nf4.load.quantize->compute_dtype, DType::BF16);
  EXPECT_FALSE(nf4.load.quantize->double_quant);
  const auto nf4_dq = engine::bench_format("nf4-dq");
  EXPECT_TRUE(nf4_dq.load.quantize->double_quant);
  EXPECT_EQ(nf4_dq.load.quantize->kind, engine::QuantizeOnLoad::Kind::NF4);
  EXPECT_EQ(engine::bench_format("fp4-dq").load.quantize->kind, engine::QuantizeOnLoad::Kind::FP4);

  engine::BenchOptions o;
  o.batches = {1, 0};
  EXPECT_THAT(error_of([&] { engine::run_bench({.shape = "tiny"}, o); }), HasSubstr("1 to 1024 sequences"));
  o.batches = {};
  EXPECT_THAT(error_of([&] { engine::run_bench({.shape = "tiny"}, o); }), HasSubstr("no batch size"));
  o.batches = {1};
  o.prefill = {8192};
  EXPECT_THAT(error_of([&] { engine::run_bench({.shape = "tiny"}, o); }), HasSubstr("max_position_embeddings"));
}

TEST(Bench, TinyShapeOnTheCpu) {
  engine::BenchOptions o;
  o.formats = {"bf16", "nf4"};
  o.prompt = 8;
  o.decode = 4;
  o.prefill = {16, 32, 100000};  // the last beyond the context: left out
  o.drop_long_prefill = true;
  o.repeats = 1;
  const engine::BenchReport report = engine::run_bench({.shape = "tiny"}, o);
  ASSERT_EQ(report.rows.size(), 2u);
  EXPECT_EQ(report.parameters, 4196608);
  for (const auto& r : report.rows) {
    EXPECT_GT(r.prefill_tokens_per_second, 0.0);
    EXPECT_GT(r.decode_tokens_per_second, 0.0);
    // CPU: weights plus a cache of prompt + decode + 1 positions (4 layers x K and V x 2 kv heads x 64, 16-bit).
    EXPECT_EQ(r.peak_memory_bytes, r.weight_bytes + 2 * 4 * 13 * 2 * 64 * 2);
    ASSERT_EQ(r.prefill.size(), 2u);
    EXPECT_EQ(r.prefill[1].tokens, 32);
    EXPECT_GT(r.prefill[1].tokens_per_second, 0.0);
  }
  const std::string table = engine::format_table(report);
  EXPECT_THAT(table, HasSubstr("prefill 32 tok/s"));
  EXPECT_THAT(table, HasSubstr("nf4"));
}

// Several sequences together: each has its own prompt and cache (the CPU's
// peak counts one cache a sequence), and the rates count every sequence's
// tokens.
TEST(Bench, BatchOfSequencesOnTheCpu) {
  const engine::BenchReport report = engine::run_bench(
      {.shape = "tiny"},
      {.formats = {"bf16", "nf4"}, .batches = {1, 3}, .prompt = 8, .decode = 4, .prefill = {16}, .repeats = 1});
  ASSERT_EQ(report.rows.size(), 4u);  // a row a format and batch, format by format
  EXPECT_EQ(report.rows[0].batch, 1);
  EXPECT_EQ(report.rows[3].format, "nf4");
  const auto& r = report.rows[3];
  EXPECT_EQ(r.batch, 3);
  EXPECT_GT(r.prefill_tokens_per_second, 0.0);
  EXPECT_GT(r.decode_tokens_per_second, 0.0);
  EXPECT_EQ(r.peak_memory_bytes, r.weight_bytes + 3 * (2 * 4 * 13 * 2 * 64 * 2));
  ASSERT_EQ(r.prefill.size(), 1u);
  EXPECT_EQ(r.prefill[0].peak_memory_bytes, r.weight_bytes + 3 * (2 * 4 * 16 * 2 * 64 * 2));
  // nf4's ratios are to bf16 of the same batch.
  const std::string table = engine::format_table(report);
  const double ratio = r.decode_tokens_per_second / report.rows[1].decode_tokens_per_second;
  EXPECT_THAT(table, HasSubstr(fmt::format("({:.2f}x)", ratio)));
}

}  // namespace
}  // namespace lowbit
