#include "lowbit/nn/linear.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "lowbit/ops/elementwise.h"
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

namespace {

// Parts [n_i, ...] (same dtype, device and trailing shape) stacked along the
// first dimension, on their device.
Tensor stack_rows(const std::vector<Tensor>& parts) {
  Shape shape = parts.front().shape();
  shape[0] = 0;
  for (const Tensor& p : parts) shape[0] += p.dim(0);
  Tensor out = Tensor::empty(shape, parts.front().dtype(), parts.front().device());
  size_t at = 0;
  for (const Tensor& p : parts) {
    copy_bytes(static_cast<char*>(out.raw_data()) + at, out.device(), p.raw_data(), p.device(), p.nbytes());
    at += p.nbytes();
  }
  return out;
}

// Whether two small tensors (code tables) hold the same bytes, wherever they live.
bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.nbytes() != b.nbytes()) return false;
  const Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  return std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) == 0;
}

bool same_layout(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  return a.dtype() == b.dtype() && a.device() == b.device() && a.ndim() == b.ndim() &&
         std::equal(a.shape().begin() + 1, a.shape().end(), b.shape().begin() + 1);
}

}  // namespace

Linear Linear::stack(std::span<const Linear> parts) {
  if (parts.empty()) return {};
  const Linear& first = parts.front();
  std::vector<Tensor> biases;
  for (const Linear& p : parts) {
    if (!p.defined() || p.format_ != first.format_ || p.in_features_ != first.in_features_ ||
        !same_layout(p.bias_, first.bias_))
      return {};
    if (p.bias_.defined()) biases.push_back(p.bias_);
  }
  const Tensor bias = biases.empty() ? Tensor{} : stack_rows(biases);
  if (first.format_ == WeightFormat::Dense) {
    std::vector<Tensor> w;
    for (const Linear& p : parts) {
      if (!same_layout(std::get<Tensor>(p.weight_), std::get<Tensor>(first.weight_))) return {};
      w.push_back(std::get<Tensor>(p.weight_));
    }
    return dense(stack_rows(w), bias);
  }
  if (first.format_ == WeightFormat::Int8Rowwise) {
    const auto& f = std::get<Int8Weight>(first.weight_);
    std::vector<Tensor> codes, scb;
    for (const Linear& p : parts) {
      const auto& q = std::get<Int8Weight>(p.weight_);
      if (q.threshold != f.threshold || !same_layout(q.codes, f.codes) || !same_layout(q.scb, f.scb)) return {};
      codes.push_back(q.codes);
      scb.push_back(q.scb);
    }
    return int8(stack_rows(codes), stack_rows(scb), f.threshold, bias);
  }
  const auto& f = std::get<ops::Blockwise4bitWeight>(first.weight_);
  ops::Blockwise4bitWeight out = f;
  std::vector<Tensor> packed, absmax, nested_absmax;
  int64_t absmax_blocks = 0;
  if (out.nested) out.nested->part_starts.clear();
  for (const Linear& p : parts) {
    const auto& q = std::get<ops::Blockwise4bitWeight>(p.weight_);
    // Blocks run over the flattened weight: each part must end on a block
    // boundary (and a whole byte) for the stacked absmax to line up.
    const int64_t n = q.out_features * q.in_features;
    if (q.type != f.type || q.blocksize != f.blocksize || q.dtype != f.dtype || q.compute_dtype != f.compute_dtype ||
        n % q.blocksize != 0 || n % 2 != 0 || q.packed.device() != f.packed.device() ||
        q.absmax.device() != f.absmax.device())
      return {};
    if (!same_bytes(q.code, f.code) || q.nested.has_value() != f.nested.has_value()) return {};
    if (q.nested) {
      // Double-quantized parts keep their own offsets; each later part must
      // start on a nested block for the stacked nested scales to line up.
      const ops::Blockwise4bitWeight::Nested &qn = *q.nested, &fn = *f.nested;
      if (qn.nested_blocksize != fn.nested_blocksize || !same_bytes(qn.nested_code, fn.nested_code) ||
          (&p != &parts.back() && q.absmax.numel() % qn.nested_blocksize != 0) ||
          qn.nested_absmax.device() != fn.nested_absmax.device())
        return {};
      std::vector<int64_t>& starts = out.nested->part_starts;
      if (&p != &parts.front()) {
        starts.push_back(absmax_blocks);
        out.nested->offsets.insert(out.nested->offsets.end(), qn.offsets.begin(), qn.offsets.end());
      }
      for (int64_t start : qn.part_starts) starts.push_back(absmax_blocks + start);
      nested_absmax.push_back(qn.nested_absmax.reshape({qn.nested_absmax.numel()}));
    }
    absmax_blocks += q.absmax.numel();
    packed.push_back(q.packed.reshape({q.packed.numel()}));
    absmax.push_back(q.absmax.reshape({q.absmax.numel()}));
  }
  if (out.nested) {
    if (out.nested->offsets.size() > size_t(ops::Blockwise4bitWeight::Nested::kMaxParts)) return {};
    out.nested->nested_absmax = stack_rows(nested_absmax);
  }
  out.packed = stack_rows(packed);
  out.absmax = stack_rows(absmax);
  out.out_features = 0;
  for (const Linear& p : parts) out.out_features += p.out_features_;
  return blockwise_4bit(std::move(out), bias);
}

size_t Linear::weight_bytes() const {
  size_t bytes = bias_.defined() ? bias_.nbytes() : 0;
  if (auto* d = std::get_if<Tensor>(&weight_)) bytes += d->nbytes();
  if (auto* q = std::get_if<Int8Weight>(&weight_)) bytes += q->codes.nbytes() + q->scb.nbytes();
  if (auto* q = std::get_if<ops::Blockwise4bitWeight>(&weight_)) {
    bytes += q->packed.nbytes() + q->absmax.nbytes();
    if (q->nested) bytes += q->nested->nested_absmax.nbytes();  // (code tables are not counted)
  }
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

void Linear::forward(const Tensor& src, const ops::LinearFusion& f, Tensor& out) const {
  LOWBIT_CHECK(defined(), "Linear: forward on an empty layer");
  if (auto* q = std::get_if<ops::Blockwise4bitWeight>(&weight_)) return ops::linear_4bit_fused(src, *q, bias_, f, out);
  const Tensor x = ops::fused_linear_input(src, f);
  if (f.output == ops::LinearFusion::Output::Store) return forward(x, out);
  ops::fused_linear_output(forward(x), f, out);
}

bool Linear::fuses(const Tensor& src, const ops::LinearFusion& f, const Tensor& out) const {
  auto* q = std::get_if<ops::Blockwise4bitWeight>(&weight_);
  return q && ops::linear_4bit_fuses(src, *q, bias_, f, out);
}

bool Linear::dequantizes(int64_t rows, DType dtype, Device device) const {
  auto* q = std::get_if<ops::Blockwise4bitWeight>(&weight_);
  return q && ops::linear_4bit_dequantizes(rows, dtype, device, *q);
}

void Linear::dequantize_weight(Tensor& out) const {
  auto* q = std::get_if<ops::Blockwise4bitWeight>(&weight_);
  LOWBIT_CHECK(q, "Linear::dequantize_weight: a {} layer has no 4-bit weight", format_name(format_));
  ops::dequantize_4bit_weight(*q, out);
}

void Linear::forward_dequantized(const Tensor& x, const Tensor& weight, Tensor& out) const {
  ops::linear(x, weight, bias_, out);
}

}  // namespace lowbit::nn
