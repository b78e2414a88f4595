// A linear layer whose weight may be in any format lowbit runs, behind one
// interface: dense (f32/bf16/f16), LLM.int8 (int8 rows + SCB) or blockwise
// 4-bit (NF4/FP4). Callers see forward(); the format picks the kernel.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <variant>

#include "lowbit/core/tensor.h"
#include "lowbit/ops/linear.h"

namespace lowbit::nn {

enum class WeightFormat : uint8_t { Dense, Int8Rowwise, Blockwise4bit };
// "dense", "int8", "4bit" (describe() names the dtype or nf4/fp4).
std::string_view format_name(WeightFormat format);

class Linear {
 public:
  Linear() = default;
  // weight [out, in]; bias [out] or undefined.
  static Linear dense(Tensor weight, Tensor bias = {});
  // codes i8 [out, in], scb f32 [out]; threshold as in bitsandbytes (0: pure int8).
  static Linear int8(Tensor codes, Tensor scb, float threshold, Tensor bias = {});
  static Linear blockwise_4bit(ops::Blockwise4bitWeight weight, Tensor bias = {});
  // One layer whose outputs are the parts' outputs side by side (their weight
  // rows stacked), e.g. q/k/v or gate/up projections of the same input: one
  // kernel launch instead of several, the same value for every output. An
  // undefined Linear when the parts cannot be stacked (different formats,
  // dtypes or thresholds, biases on some only, or 4-bit parts whose blocks
  // would straddle two parts).
  static Linear stack(std::span<const Linear> parts);

  bool defined() const { return out_features_ > 0; }
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  WeightFormat format() const { return format_; }
  // Bytes the weight (and its scales) occupy.
  size_t weight_bytes() const;
  std::string describe() const;  // "nf4 [688, 256]"

  // x [tokens, in] in the compute dtype -> [tokens, out] in the same dtype.
  Tensor forward(const Tensor& x) const;
  void forward(const Tensor& x, Tensor& out) const;
  // With a decoding step's fusions (ops::LinearFusion): the input made from
  // src, the output stored or added to out. One kernel where fuses() says so
  // (4-bit weights, one row on the GPU); otherwise the ops in turn.
  void forward(const Tensor& src, const ops::LinearFusion& f, Tensor& out) const;
  bool fuses(const Tensor& src, const ops::LinearFusion& f, const Tensor& out) const;
  // Whether forward of `rows` rows of `dtype` on `device` dequantizes a 4-bit
  // weight and multiplies it densely (prompts on the GPU). Then
  // forward_dequantized(x, w, out), w from dequantize_weight, gives forward's
  // bits: a caller can dequantize the next layer's weight ahead.
  bool dequantizes(int64_t rows, DType dtype, Device device) const;
  void dequantize_weight(Tensor& out) const;  // out [out, in] in the compute dtype
  void forward_dequantized(const Tensor& x, const Tensor& weight, Tensor& out) const;

 private:
  struct Int8Weight {
    Tensor codes, scb;
    float threshold = 0.0f;
  };
  WeightFormat format_ = WeightFormat::Dense;
  int64_t in_features_ = 0, out_features_ = 0;
  std::variant<Tensor, Int8Weight, ops::Blockwise4bitWeight> weight_;
  Tensor bias_;
};

}  // namespace lowbit::nn
