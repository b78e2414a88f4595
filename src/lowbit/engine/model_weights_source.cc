#include "engine/model_weights_source.h"

#include <fmt/format.h>

#include "lowbit/quant/blockwise.h"

namespace lowbit::engine {
namespace {

Error shape_error(const std::string& name, const Shape& got, const Shape& want) {
  return Error(fmt::format("tensor {} has shape {}, the config implies {}", name, shape_str(got), shape_str(want)))
      .with_tensor(name);
}

// A tensor that could not be placed on the device (out of GPU memory,
// mostly): the error names it, since the allocator does not know it.
[[noreturn]] void placement_failed(const std::string& name, Device device, const Error& e) {
  throw Error(fmt::format("loading {} onto {}: {}", name, device.str(), e.message())).with_tensor(name);
}

}  // namespace

ModelWeightsSource::ModelWeightsSource(const io::ModelWeights& weights, DType dtype, float int8_threshold,
                                       std::optional<DType> compute_4bit, Device device)
    : weights_(weights), dtype_(dtype), int8_threshold_(int8_threshold), compute_4bit_(compute_4bit),
      device_(device) {}

Tensor ModelWeightsSource::dense(const std::string& name, const Shape& shape) const {
  if (!weights_.contains(name))
    throw Error(fmt::format("tensor {} is missing from the checkpoint", name)).with_tensor(name);
  const io::LoadedWeight& w = weights_.get(name);
  if (w.shape() != shape) throw shape_error(name, w.shape(), shape);
  const Tensor t = w.format == io::LoadedWeight::Dense ? w.dense : w.dequantize(dtype_);
  try {
    return (t.dtype() == dtype_ ? t : t.cast(dtype_)).to(device_);
  } catch (const Error& e) {
    placement_failed(name, device_, e);
  }
}

nn::Linear ModelWeightsSource::linear(const std::string& prefix, int64_t out, int64_t in, bool bias) const {
  const std::string name = prefix + ".weight";
  Tensor b = bias ? dense(prefix + ".bias", {out}) : Tensor{};
  if (!weights_.contains(name))
    throw Error(fmt::format("tensor {} is missing from the checkpoint", name)).with_tensor(name);
  const io::LoadedWeight& w = weights_.get(name);
  if (w.shape() != Shape{out, in}) throw shape_error(name, w.shape(), {out, in});
  try {
    return place_linear(w, out, in, std::move(b));
  } catch (const Error& e) {
    placement_failed(name, device_, e);
  }
}

nn::Linear ModelWeightsSource::place_linear(const io::LoadedWeight& w, int64_t out, int64_t in, Tensor b) const {
  switch (w.format) {
    case io::LoadedWeight::Int8Rowwise:
      return nn::Linear::int8(w.int8.codes.to(device_), w.int8.scb.to(device_), int8_threshold_, std::move(b));
    case io::LoadedWeight::Blockwise4bit: {
      ops::Blockwise4bitWeight q;
      q.type = w.q4.type;
      q.packed = w.packed.to(device_);
      // Double quantization stays on the GPU, whose kernels decode each
      // block's absmax as they read it (0.13 bits a weight instead of 0.5); on
      // the CPU it is undone once here, in f32, as bitsandbytes does before
      // each dequantization.
      if (w.q4.nested && device_.is_cuda()) {
        q.absmax = w.q4.absmax.to(device_);
        q.nested = ops::Blockwise4bitWeight::Nested{w.q4.nested->nested_absmax.to(device_),
                                                    w.q4.nested->nested_code.to(device_),
                                                    w.q4.nested->blocksize,
                                                    {w.q4.nested->offset},
                                                    {}};
      } else {
        q.absmax = quant::dequantize_nested_absmax(w.q4).to(device_);
      }
      q.code = w.q4.code.to(device_);
      q.blocksize = w.q4.blocksize;
      q.dtype = w.q4.dtype;
      q.compute_dtype = compute_4bit_;
      q.out_features = out;
      q.in_features = in;
      return nn::Linear::blockwise_4bit(std::move(q), std::move(b));
    }
    case io::LoadedWeight::Dense:
      break;
  }
  return nn::Linear::dense((w.dense.dtype() == dtype_ ? w.dense : w.dense.cast(dtype_)).to(device_), std::move(b));
}

}  // namespace lowbit::engine
