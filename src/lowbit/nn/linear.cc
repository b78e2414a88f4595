#include "lowbit/nn/linear.h"

#include <fmt/format.h>

#include "lowbit/quant/formats.h"

namespace lowbit::nn {

std::string_view format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::Dense: return "dense";
    case WeightFormat::Int8Rowwise: return "int8";
    case WeightFormat::Blockwise4bit: return "4bit";
  }
  return "?";
}

Linear Linear::dense(Tensor weight, Tensor bias) {
  LOWBIT_CHECK(weight.ndim() == 2, "Linear: a dense weight must be [out, in], got {}", weight.describe());
  Linear l;
  l.format_ = WeightFormat::Dense;
  l.out_features_ = weight.dim(0);
  l.in_features_ = weight.dim(1);
  l.weight_ = std::move(weight);
  l.bias_ = std::move(bias);
  return l;
}

Linear Linear::int8(Tensor codes, Tensor scb, float threshold, Tensor bias) {
  LOWBIT_CHECK(codes.ndim() == 2 && codes.dtype() == DType::I8, "Linear: int8 codes must be i8 [out, in], got {}",
               codes.describe());
  LOWBIT_CHECK(scb.numel() == codes.dim(0) && scb.dtype() == DType::F32, "Linear: SCB must be f32 [{}], got {}",
               codes.dim(0), scb.describe());
  Linear l;
  l.format_ = WeightFormat::Int8Rowwise;
  l.out_features_ = codes.dim(0);
  l.in_features_ = codes.dim(1);
  l.weight_ = Int8Weight{std::move(codes), scb.reshape({scb.numel()}), threshold};
  l.bias_ = std::move(bias);
  return l;
}

Linear Linear::blockwise_4bit(ops::Blockwise4bitWeight weight, Tensor bias) {
  Linear l;
  l.format_ = WeightFormat::Blockwise4bit;
  l.out_features_ = weight.out_features;
  l.in_features_ = weight.in_features;
  l.weight_ = std::move(weight);
  l.bias_ = std::move(bias);
  return l;
}

size_t Linear::weight_bytes() const {
  size_t bytes = bias_.defined() ? bias_.nbytes() : 0;
  if (auto* d = std::get_if<Tensor>(&weight_)) bytes += d->nbytes();
  if (auto* q = std::get_if<Int8Weight>(&weight_)) bytes += q->codes.nbytes() + q->scb.nbytes();
  if (auto* q = std::get_if<ops::Blockwise4bitWeight>(&weight_)) bytes += q->packed.nbytes() + q->absmax.nbytes();
  return bytes;
}

std::string Linear::describe() const {
  std::string kind(format_name(format_));
  if (auto* d = std::get_if<Tensor>(&weight_)) kind = std::string(dtype_name(d->dtype()));
  if (auto* q = std::get_if<ops::Blockwise4bitWeight>(&weight_))
    kind = q->type == quant::QuantType::FP4 ? "fp4" : "nf4";
  return fmt::format("{} [{}, {}]", kind, out_features_, in_features_);
}

Tensor Linear::forward(const Tensor& x) const {
  Tensor out = Tensor::empty({x.dim(0), out_features_}, x.dtype(), x.device());
  forward(x, out);
  return out;
}

void Linear::forward(const Tensor& x, Tensor& out) const {
  LOWBIT_CHECK(defined(), "Linear: forward on an empty layer");
  if (auto* d = std::get_if<Tensor>(&weight_)) return ops::linear(x, *d, bias_, out);
  if (auto* q = std::get_if<Int8Weight>(&weight_)) return ops::linear_int8(x, q->codes, q->scb, bias_, q->threshold, out);
  return ops::linear_4bit(x, std::get<ops::Blockwise4bitWeight>(weight_), bias_, out);
}

}  // namespace lowbit::nn
