// The weights of a safetensors checkpoint as a models::WeightSource: dense
// tensors cast to the compute dtype, and quantized linears in the layout
// bitsandbytes + transformers save (LLM.int8: weight i8 + SCB; 4-bit: packed
// weight + absmax [+ nested_absmax] + quant_map + quant_state JSON).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/engine/model_loader.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/models/causal_lm.h"

namespace lowbit::engine {

nlohmann::json read_json_file(const std::filesystem::path& path);

class CheckpointSource final : public models::WeightSource {
 public:
  CheckpointSource(const std::filesystem::path& dir, const nlohmann::json& config, DType dtype,
                   std::optional<QuantizeOnLoad> quantize = {});

  bool contains(const std::string& name) const override;
  Tensor dense(const std::string& name, const Shape& shape) const override;
  nn::Linear linear(const std::string& prefix, int64_t out, int64_t in, bool bias) const override;

 private:
  Tensor raw(const std::string& name) const;  // as stored; Error when missing
  nn::Linear load_4bit(const std::string& prefix, int64_t out, int64_t in, Tensor bias) const;

  nn::Linear quantize(const std::string& prefix, Tensor weight, Tensor bias) const;

  std::filesystem::path dir_;
  std::optional<QuantizeOnLoad> quantize_;
  DType dtype_;
  float int8_threshold_ = 6.0f;
  std::optional<DType> compute_4bit_;  // quantization_config.bnb_4bit_compute_dtype
  std::vector<std::shared_ptr<io::SafetensorsReader>> files_;
  std::map<std::string, const io::SafetensorsReader*> where_;
};

}  // namespace lowbit::engine
