// Loading a transformers checkpoint directory (config.json + safetensors,
// single file or sharded) into a runnable model.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/io/checkpoint.h"
#include "lowbit/models/causal_lm.h"

namespace lowbit::engine {

// Quantization applied while loading a dense checkpoint, as transformers'
// BitsAndBytesConfig does (load_in_8bit / load_in_4bit). Modules whose name
// ends with an entry of skip_modules stay in the compute dtype.
struct QuantizeOnLoad {
  enum class Kind : uint8_t { Int8, NF4, FP4 };
  Kind kind = Kind::NF4;
  float int8_threshold = 6.0f;
  int blocksize = 64;
  bool double_quant = false;
  std::optional<DType> compute_dtype;  // bnb_4bit_compute_dtype (unset: the model's dtype)
  std::vector<std::string> skip_modules = {"lm_head"};
};

struct LoadOptions {
  // Compute dtype of activations and of the dense weights (default: the
  // config's dtype; f32 when it has none).
  std::optional<DType> dtype;
  // Quantize the linear layers of a dense checkpoint (ignored for layers the
  // checkpoint already stores quantized).
  std::optional<QuantizeOnLoad> quantize;
  // Where the model runs. On a GPU, each tensor is converted (or quantized)
  // on the host and then copied over, so the GPU holds the model only in its
  // final formats; the KV cache and activations live there too, and
  // CausalLM::forward returns logits there. A build without CUDA or a machine
  // without that GPU is an Error naming the device.
  Device device = Device::cpu();
};

// Throws an Error naming the file (or tensor) for a missing config, an
// unsupported architecture, a missing tensor or a shape that disagrees with
// the config.
std::unique_ptr<models::CausalLM> load_model(const std::filesystem::path& dir, const LoadOptions& options = {});

// The same from a config.json object and tensors made on request (random
// weights of a model's shape, engine/synthetic_weights.h), through the same
// quantization on load.
std::unique_ptr<models::CausalLM> load_model_from_tensors(const nlohmann::json& config, const io::TensorSource& tensors,
                                                          const LoadOptions& options = {});

}  // namespace lowbit::engine
