// Random weights in the shape of real models, so that speed can be measured
// without downloading them: presets holding the config.json of Llama 2 7B/13B,
// Llama 3 8B, Mistral 7B and Qwen2 7B, and an io::TensorSource that makes each
// tensor of such a config when the loader asks for it (engine::load_model_from_tensors),
// so that quantization on load is the one a checkpoint directory goes through.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/core/tensor.h"
#include "lowbit/io/checkpoint.h"
#include "lowbit/models/model_config.h"

namespace lowbit::engine {

struct ShapePreset {
  std::string name;        // "llama2-7b"
  std::string source;      // where the config comes from: "meta-llama/Llama-2-7b-hf"
  nlohmann::json config;   // that model's config.json
};

// In the order `lowbit bench --help` lists them.
const std::vector<ShapePreset>& shape_presets();
std::string shape_preset_names();  // "llama2-7b, llama2-13b, ..."
// An unknown name is an Error listing the presets.
const ShapePreset& find_shape_preset(std::string_view name);

// The tensors of a Llama-family checkpoint of `config` (transformers' names and
// shapes, in `dtype`): embeddings, per layer the norms, q/k/v/o and the MLP
// (with the biases the config asks for), the final norm, and lm_head unless tied.
std::vector<io::TensorSource::Entry> checkpoint_tensors(const models::ModelConfig& config, DType dtype);
int64_t parameter_count(const models::ModelConfig& config);

// Those tensors with random values: weights ~N(0, stddev), norm weights 1,
// biases 0 (transformers' initialisation). Each tensor is made when asked for,
// in parallel; its values depend only on the seed, its name and the position,
// never on the thread count.
io::TensorSource synthetic_weights(const models::ModelConfig& config, DType dtype, uint64_t seed = 0,
                                   float stddev = 0.02f);

// Fills `out` (f32, f16 or bf16, on the host) with values ~N(0, stddev) drawn
// from a counter-based generator keyed by `key`: element i is a function of
// (key, i) alone. Each value is the standardised sum of 8 uniform bytes of one
// 64-bit hash (Irwin-Hall, within 0.15 of the normal's kurtosis, cut at
// +-4.9 stddev), which is several times faster than Box-Muller.
void fill_normal(const Tensor& out, uint64_t key, float stddev);
// The key of tensor `name` for a seed.
uint64_t tensor_key(uint64_t seed, std::string_view name);

}  // namespace lowbit::engine
