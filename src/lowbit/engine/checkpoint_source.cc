#include "engine/checkpoint_source.h"

#include <fmt/format.h>

#include "lowbit/core/half.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/int8.h"
#include "lowbit/quant/quant_state.h"

namespace lowbit::engine {

namespace fs = std::filesystem;

CheckpointSource::CheckpointSource(const fs::path& dir, const nlohmann::json& config, DType dtype,
                                   std::optional<QuantizeOnLoad> quantize)
    : dir_(dir), quantize_(std::move(quantize)), dtype_(dtype) {
  std::vector<fs::path> shards;
  if (fs::exists(dir / "model.safetensors")) {
    shards.push_back(dir / "model.safetensors");
  } else if (fs::exists(dir / "model.safetensors.index.json")) {
    const auto index = read_json_file(dir / "model.safetensors.index.json");
    std::map<std::string, bool> seen;
    for (const auto& [name, file] : index.at("weight_map").items()) {
      const std::string f = file.get<std::string>();
      if (!seen[f]) shards.push_back(dir / f);
      seen[f] = true;
    }
  } else {
    throw Error(fmt::format("no weights in {}: expected model.safetensors or model.safetensors.index.json",
                            dir.string()))
        .with_file(dir.string());
  }
  for (const auto& path : shards) {
    files_.push_back(std::make_shared<io::SafetensorsReader>(io::SafetensorsReader::open(path)));
    for (const auto& e : files_.back()->entries()) where_[e.name] = files_.back().get();
  }
  if (auto q = config.find("quantization_config"); q != config.end() && q->is_object())
  {
    int8_threshold_ = float(q->value("llm_int8_threshold", 6.0));
    if (q->contains("bnb_4bit_compute_dtype") && (*q)["bnb_4bit_compute_dtype"].is_string())
      compute_4bit_ = parse_dtype((*q)["bnb_4bit_compute_dtype"].get<std::string>());
  }
}

bool CheckpointSource::contains(const std::string& name) const { return where_.count(name) != 0; }

Tensor CheckpointSource::raw(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    throw Error(fmt::format("tensor {} is missing from the checkpoint", name)).with_file(dir_.string()).with_tensor(name);
  return it->second->tensor(name);
}

Tensor CheckpointSource::dense(const std::string& name, const Shape& shape) const {
  Tensor t = raw(name);
  if (t.shape() != shape)
    throw Error(fmt::format("tensor {} has shape {}, the config implies {}", name, shape_str(t.shape()),
                            shape_str(shape)))
        .with_tensor(name);
  LOWBIT_CHECK(is_floating(t.dtype()), "tensor {} is {}, expected a floating dtype", name, t.describe());
  return t.dtype() == dtype_ ? t : t.cast(dtype_);
}

nn::Linear CheckpointSource::linear(const std::string& prefix, int64_t out, int64_t in, bool bias) const {
  const std::string weight_name = prefix + ".weight";
  Tensor b = bias ? dense(prefix + ".bias", {out}) : Tensor{};
  for (const char* kind : {"nf4", "fp4"})
    if (contains(weight_name + ".quant_state.bitsandbytes__" + kind)) return load_4bit(prefix, out, in, b);
  const Tensor w = raw(weight_name);
  if (w.dtype() == DType::I8) {
    if (w.shape() != Shape{out, in})
      throw Error(fmt::format("tensor {} has shape {}, the config implies [{}, {}]", weight_name,
                              shape_str(w.shape()), out, in))
          .with_tensor(weight_name);
    const Tensor scb = raw(prefix + ".SCB");
    LOWBIT_CHECK(scb.numel() == out && scb.dtype() == DType::F32, "tensor {}.SCB must be f32 [{}], got {}", prefix, out,
                 scb.describe());
    return nn::Linear::int8(w, scb, int8_threshold_, b);
  }
  return quantize(prefix, dense(weight_name, {out, in}), b);
}

nn::Linear CheckpointSource::quantize(const std::string& prefix, Tensor weight, Tensor bias) const {
  if (!quantize_) return nn::Linear::dense(std::move(weight), std::move(bias));
  for (const auto& skip : quantize_->skip_modules)
    if (prefix.size() >= skip.size() && prefix.compare(prefix.size() - skip.size(), skip.size(), skip) == 0)
      return nn::Linear::dense(std::move(weight), std::move(bias));
  if (quantize_->kind == QuantizeOnLoad::Kind::Int8) {
    // bitsandbytes quantizes the f16 weight (Int8Params casts it first).
    const Tensor w16 = weight.dtype() == DType::F16 ? weight : weight.cast(DType::F16);
    quant::Int8RowwiseWeight q = quant::quantize_int8_rowwise(w16);
    return nn::Linear::int8(q.codes, q.scb, quantize_->int8_threshold, std::move(bias));
  }
  quant::QuantState state;
  const quant::QuantType type = quantize_->kind == QuantizeOnLoad::Kind::FP4 ? quant::QuantType::FP4
                                                                              : quant::QuantType::NF4;
  ops::Blockwise4bitWeight q;
  q.type = type;
  q.packed = quant::quantize_4bit(weight, type, quantize_->blocksize, quantize_->double_quant, state);
  q.absmax = quant::dequantize_nested_absmax(state);
  q.code = state.code;
  q.compute_dtype = quantize_->compute_dtype;
  q.blocksize = state.blocksize;
  q.dtype = weight.dtype();
  q.out_features = weight.dim(0);
  q.in_features = weight.dim(1);
  return nn::Linear::blockwise_4bit(std::move(q), std::move(bias));
}

nn::Linear CheckpointSource::load_4bit(const std::string& prefix, int64_t out, int64_t in, Tensor bias) const {
  const std::string w = prefix + ".weight";
  const quant::QuantState state = quant::QuantState::from_state_dict(
      w + ".", [&](const std::string& name) { return contains(name) ? raw(name) : Tensor{}; });
  if (state.shape != Shape{out, in})
    throw Error(fmt::format("tensor {} has shape {}, the config implies [{}, {}]", w, shape_str(state.shape), out, in))
        .with_tensor(w);
  ops::Blockwise4bitWeight q;
  q.type = state.type;
  q.blocksize = state.blocksize;
  q.dtype = state.dtype;
  q.out_features = out;
  q.in_features = in;
  q.packed = raw(w);
  q.code = state.code;
  q.compute_dtype = compute_4bit_;
  // Double quantization is undone once here, in f32, as bitsandbytes does
  // before each dequantization.
  q.absmax = quant::dequantize_nested_absmax(state);
  return nn::Linear::blockwise_4bit(std::move(q), std::move(bias));
}

}  // namespace lowbit::engine
