// io::ModelWeights (a checkpoint read, or quantized on load, by the io layer)
// as the models::WeightSource a model is built from: dense tensors in the
// compute dtype, LLM.int8 and 4-bit linears in the kernels' form, each tensor
// copied to `device` as it is asked for (so a GPU never holds more than the
// model in its final formats).
#pragma once

#include <optional>

#include "lowbit/io/checkpoint.h"
#include "lowbit/models/causal_lm.h"

namespace lowbit::engine {

class ModelWeightsSource final : public models::WeightSource {
 public:
  // compute_4bit: the 4-bit compute dtype (unset: the activations' dtype).
  ModelWeightsSource(const io::ModelWeights& weights, DType dtype, float int8_threshold,
                     std::optional<DType> compute_4bit, Device device = Device::cpu());

  Device device() const override { return device_; }
  bool contains(const std::string& name) const override { return weights_.contains(name); }
  Tensor dense(const std::string& name, const Shape& shape) const override;
  nn::Linear linear(const std::string& prefix, int64_t out, int64_t in, bool bias) const override;

 private:
  // The weight in the kernels' form on device() (linear() has checked it).
  nn::Linear place_linear(const io::LoadedWeight& w, int64_t out, int64_t in, Tensor b) const;

  const io::ModelWeights& weights_;
  DType dtype_;
  float int8_threshold_;
  std::optional<DType> compute_4bit_;
  Device device_;
};

}  // namespace lowbit::engine
