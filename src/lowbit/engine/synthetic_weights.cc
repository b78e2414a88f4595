#include "lowbit/engine/synthetic_weights.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "lowbit/core/half.h"
#include "lowbit/core/thread_pool.h"

namespace lowbit::engine {
namespace {

using nlohmann::json;

// The config.json files as their model repositories hold them (fields that do
// not change the shape or the numerics, such as transformers_version, left out).
std::vector<ShapePreset> make_presets() {
  const json llama2_7b = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"bos_token_id", 1}, {"eos_token_id", 2},
      {"hidden_act", "silu"}, {"hidden_size", 4096}, {"initializer_range", 0.02}, {"intermediate_size", 11008},
      {"max_position_embeddings", 4096}, {"num_attention_heads", 32}, {"num_hidden_layers", 32},
      {"num_key_value_heads", 32}, {"pretraining_tp", 1}, {"rms_norm_eps", 1e-05}, {"rope_scaling", nullptr},
      {"tie_word_embeddings", false}, {"torch_dtype", "float16"}, {"use_cache", true}, {"vocab_size", 32000}};
  json llama2_13b = llama2_7b;
  llama2_13b["hidden_size"] = 5120;
  llama2_13b["intermediate_size"] = 13824;
  llama2_13b["num_attention_heads"] = 40;
  llama2_13b["num_hidden_layers"] = 40;
  llama2_13b["num_key_value_heads"] = 40;
  const json llama3_8b = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"attention_bias", false},
      {"attention_dropout", 0.0}, {"bos_token_id", 128000}, {"eos_token_id", 128001}, {"hidden_act", "silu"},
      {"hidden_size", 4096}, {"initializer_range", 0.02}, {"intermediate_size", 14336},
      {"max_position_embeddings", 8192}, {"num_attention_heads", 32}, {"num_hidden_layers", 32},
      {"num_key_value_heads", 8}, {"pretraining_tp", 1}, {"rms_norm_eps", 1e-05}, {"rope_scaling", nullptr},
      {"rope_theta", 500000.0}, {"tie_word_embeddings", false}, {"torch_dtype", "bfloat16"}, {"use_cache", true},
      {"vocab_size", 128256}};
  const json mistral_7b = {
      {"architectures", {"MistralForCausalLM"}}, {"model_type", "mistral"}, {"bos_token_id", 1}, {"eos_token_id", 2},
      {"hidden_act", "silu"}, {"hidden_size", 4096}, {"initializer_range", 0.02}, {"intermediate_size", 14336},
      {"max_position_embeddings", 32768}, {"num_attention_heads", 32}, {"num_hidden_layers", 32},
      {"num_key_value_heads", 8}, {"rms_norm_eps", 1e-05}, {"rope_theta", 10000.0}, {"sliding_window", 4096},
      {"tie_word_embeddings", false}, {"torch_dtype", "bfloat16"}, {"use_cache", true}, {"vocab_size", 32000}};
  const json qwen2_7b = {
      {"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"attention_dropout", 0.0},
      {"bos_token_id", 151643}, {"eos_token_id", 151643}, {"hidden_act", "silu"}, {"hidden_size", 3584},
      {"initializer_range", 0.02}, {"intermediate_size", 18944}, {"max_position_embeddings", 131072},
      {"max_window_layers", 28}, {"num_attention_heads", 28}, {"num_hidden_layers", 28},
      {"num_key_value_heads", 4}, {"rms_norm_eps", 1e-06}, {"rope_theta", 1000000.0}, {"sliding_window", 131072},
      {"tie_word_embeddings", false}, {"torch_dtype", "bfloat16"}, {"use_cache", true},
      {"use_sliding_window", false}, {"vocab_size", 152064}};
  // The shape of ../shared/models/shakespeare-llama (4.2M parameters) with a
  // 4096-token context, so that the default prefill lengths fit.
  const json tiny = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"bos_token_id", 0}, {"eos_token_id", 1},
      {"head_dim", 64}, {"hidden_act", "silu"}, {"hidden_size", 256}, {"intermediate_size", 768},
      {"max_position_embeddings", 4096}, {"num_attention_heads", 4}, {"num_hidden_layers", 4},
      {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-05}, {"rope_theta", 10000.0}, {"tie_word_embeddings", false},
      {"torch_dtype", "bfloat16"}, {"vocab_size", 2048}};
  return {{"llama2-7b", "meta-llama/Llama-2-7b-hf", llama2_7b},
          {"llama2-13b", "meta-llama/Llama-2-13b-hf", llama2_13b},
          {"llama3-8b", "meta-llama/Meta-Llama-3-8B", llama3_8b},
          {"mistral-7b", "mistralai/Mistral-7B-v0.1", mistral_7b},
          {"qwen2-7b", "Qwen/Qwen2-7B", qwen2_7b},
          {"tiny", "the shape of shared/models/shakespeare-llama, 4096 positions", tiny}};
}

// splitmix64's finaliser: a bijection of 64-bit words whose output bits each
// depend on every input bit, so consecutive counters give independent words.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Sum of the 8 bytes of a word (0..2040): pairs into 16-bit lanes, then one
// multiply adds the four lanes into the top 16 bits.
inline uint32_t byte_sum(uint64_t w) {
  const uint64_t pairs = (w & 0x00ff00ff00ff00ffull) + ((w >> 8) & 0x00ff00ff00ff00ffull);
  return uint32_t((pairs * 0x0001000100010001ull) >> 48);
}

template <typename T, typename Convert>
void fill_normal_as(T* out, size_t n, uint64_t key, float stddev, Convert convert) {
  // 8 bytes uniform on 0..255: mean 1020, variance 8 * (256^2 - 1) / 12.
  constexpr float mean = 1020.0f;
  const float scale = stddev / std::sqrt(8.0f * (256.0f * 256.0f - 1.0f) / 12.0f);
  parallel_for(0, n, size_t(1) << 16, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i)
      out[i] = convert((float(byte_sum(mix64(key + i * 0x9e3779b97f4a7c15ull))) - mean) * scale);
  });
}

void fill_constant(const Tensor& out, float value) {
  const size_t n = size_t(out.numel());
  switch (out.dtype()) {
    case DType::F32: std::fill_n(out.data<float>(), n, value); break;
    case DType::F16: std::fill_n(out.data<f16>(), n, f32_to_f16(value)); break;
    case DType::BF16: std::fill_n(out.data<bf16>(), n, f32_to_bf16(value)); break;
    default: fail("synthetic weights: dtype {} is not f32, f16 or bf16", dtype_name(out.dtype()));
  }
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

const std::vector<ShapePreset>& shape_presets() {
  static const std::vector<ShapePreset> presets = make_presets();
  return presets;
}

std::string shape_preset_names() {
  std::string names;
  for (const auto& p : shape_presets()) names += (names.empty() ? "" : ", ") + p.name;
  return names;
}

const ShapePreset& find_shape_preset(std::string_view name) {
  for (const auto& p : shape_presets())
    if (p.name == name) return p;
  fail("unknown model shape '{}'; the shapes are {}", name, shape_preset_names());
}

std::vector<io::TensorSource::Entry> checkpoint_tensors(const models::ModelConfig& c, DType dtype) {
  const int64_t hidden = c.hidden_size, q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  std::vector<io::TensorSource::Entry> out;
  auto add = [&](std::string name, Shape shape) { out.push_back({std::move(name), std::move(shape), dtype}); };
  auto linear = [&](const std::string& prefix, int64_t rows, int64_t cols, bool bias) {
    add(prefix + ".weight", {rows, cols});
    if (bias) add(prefix + ".bias", {rows});
  };
  add("model.embed_tokens.weight", {c.vocab_size, hidden});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    add(p + "input_layernorm.weight", {hidden});
    linear(p + "self_attn.q_proj", q_dim, hidden, c.qkv_bias);
    linear(p + "self_attn.k_proj", kv_dim, hidden, c.qkv_bias);
    linear(p + "self_attn.v_proj", kv_dim, hidden, c.qkv_bias);
    linear(p + "self_attn.o_proj", hidden, q_dim, c.o_bias);
    add(p + "post_attention_layernorm.weight", {hidden});
    linear(p + "mlp.gate_proj", c.intermediate_size, hidden, c.mlp_bias);
    linear(p + "mlp.up_proj", c.intermediate_size, hidden, c.mlp_bias);
    linear(p + "mlp.down_proj", hidden, c.intermediate_size, c.mlp_bias);
  }
  add("model.norm.weight", {hidden});
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, hidden});
  return out;
}

int64_t parameter_count(const models::ModelConfig& config) {
  int64_t n = 0;
  for (const auto& e : checkpoint_tensors(config, DType::F32)) n += shape_numel(e.shape);
  return n;
}

uint64_t tensor_key(uint64_t seed, std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (const char ch : name) h = (h ^ uint8_t(ch)) * 0x100000001b3ull;
  return mix64(h ^ mix64(seed));
}

void fill_normal(const Tensor& out, uint64_t key, float stddev) {
  LOWBIT_CHECK(out.device().is_cpu(), "fill_normal: the tensor must be on the host, got {}", out.describe());
  const size_t n = size_t(out.numel());
  switch (out.dtype()) {
    case DType::F32: fill_normal_as(out.data<float>(), n, key, stddev, [](float v) { return v; }); break;
    // Lambdas rather than function pointers, so that the conversion inlines.
    case DType::F16: fill_normal_as(out.data<f16>(), n, key, stddev, [](float v) { return f32_to_f16(v); }); break;
    case DType::BF16: fill_normal_as(out.data<bf16>(), n, key, stddev, [](float v) { return f32_to_bf16(v); }); break;
    default: fail("fill_normal: dtype {} is not f32, f16 or bf16", dtype_name(out.dtype()));
  }
}

io::TensorSource synthetic_weights(const models::ModelConfig& config, DType dtype, uint64_t seed, float stddev) {
  io::TensorSource source;
  source.entries = checkpoint_tensors(config, dtype);
  // A linear weight that is quantized on load lives only until the loader has
  // converted it; later tensors of about its size reuse its memory (faulting in
  // fresh pages costs as much as filling them). By the time the next tensor is
  // asked for, a buffer that someone else still holds has been kept by the
  // model and leaves the pool.
  auto pool = std::make_shared<std::vector<std::shared_ptr<Storage>>>();
  source.make = [seed, stddev, pool](const io::TensorSource::Entry& e) {
    std::erase_if(*pool, [](const auto& s) { return s.use_count() > 1; });
    const size_t bytes = storage_bytes(e.dtype, size_t(shape_numel(e.shape)));
    Tensor t;
    const auto fits = std::find_if(pool->begin(), pool->end(),
                                   [&](const auto& s) { return s->bytes() >= bytes && s->bytes() <= 2 * bytes; });
    if (fits != pool->end()) {
      t = Tensor::view(*fits, 0, e.shape, e.dtype);
    } else {
      t = Tensor::empty(e.shape, e.dtype);
      pool->push_back(t.storage());
    }
    if (ends_with(e.name, "norm.weight")) fill_constant(t, 1.0f);
    else if (ends_with(e.name, ".bias")) fill_constant(t, 0.0f);
    else fill_normal(t, tensor_key(seed, e.name), stddev);
    return t;
  };
  return source;
}

}  // namespace lowbit::engine
