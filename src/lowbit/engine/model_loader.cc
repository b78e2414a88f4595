#include "lowbit/engine/model_loader.h"

#include <nlohmann/json.hpp>

#include "engine/model_weights_source.h"
#include "lowbit/io/checkpoint.h"
#include "lowbit/io/hf_config.h"
#include "lowbit/models/registry.h"

namespace lowbit::engine {

namespace fs = std::filesystem;

namespace {

// transformers' BitsAndBytesConfig for quantization on load.
std::optional<io::QuantizationConfig> on_load_config(const LoadOptions& options) {
  if (!options.quantize) return std::nullopt;
  const QuantizeOnLoad& q = *options.quantize;
  io::QuantizationConfig c;
  c.load_in_8bit = q.kind == QuantizeOnLoad::Kind::Int8;
  c.load_in_4bit = !c.load_in_8bit;
  c.llm_int8_threshold = q.int8_threshold;
  c.llm_int8_skip_modules = q.skip_modules;
  c.bnb_4bit_quant_type = q.kind == QuantizeOnLoad::Kind::FP4 ? "fp4" : "nf4";
  c.bnb_4bit_use_double_quant = q.double_quant;
  if (q.compute_dtype) c.bnb_4bit_compute_dtype = *q.compute_dtype;
  LOWBIT_CHECK(q.blocksize == 64, "quantize on load: bitsandbytes' 4-bit block size is 64, got {}", q.blocksize);
  return c;
}

std::unique_ptr<models::CausalLM> build_model(const models::Architecture& arch, const models::ModelConfig& config,
                                              const io::ModelWeights& weights, const LoadOptions& options) {
  const DType dtype = weights.dtype;
  float threshold = 6.0f;
  std::optional<DType> compute_4bit;
  if (options.quantize) {
    threshold = options.quantize->int8_threshold;
    compute_4bit = options.quantize->compute_dtype;
  } else if (weights.quantization) {
    threshold = float(weights.quantization->llm_int8_threshold);
    compute_4bit = weights.quantization->bnb_4bit_compute_dtype;
  }
  const ModelWeightsSource source(weights, dtype, threshold, compute_4bit, options.device);
  return arch.build(config, source, dtype);
}

}  // namespace

std::unique_ptr<models::CausalLM> load_model(const fs::path& dir, const LoadOptions& options) {
  require_available(options.device);
  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path))
    throw Error(fmt::format("{} is not a model directory: config.json is missing", dir.string()))
        .with_file(config_path.string());
  const nlohmann::json config_json = io::read_json(config_path);
  const models::Architecture* arch = nullptr;
  models::ModelConfig config;
  try {
    arch = &models::find_architecture(config_json);
    config = arch->parse_config(config_json);
  } catch (const Error& e) {
    throw e.with_file(config_path.string());
  }
  // The checkpoint through the io layer: dense, saved int8 / 4-bit, or
  // quantized on load when asked.
  const io::ModelWeights weights = io::ModelWeights::load(dir, on_load_config(options), options.dtype);
  return build_model(*arch, config, weights, options);
}

std::unique_ptr<models::CausalLM> load_model_from_tensors(const nlohmann::json& config_json,
                                                          const io::TensorSource& tensors, const LoadOptions& options) {
  require_available(options.device);
  const models::Architecture& arch = models::find_architecture(config_json);
  const models::ModelConfig config = arch.parse_config(config_json);
  const io::ModelWeights weights =
      io::ModelWeights::from_source(io::HFConfig::parse(config_json), tensors, on_load_config(options), options.dtype);
  return build_model(arch, config, weights, options);
}

}  // namespace lowbit::engine
