// Linear layers y = x W^T + b for every weight format lowbit runs: dense
// (f32/bf16/f16), LLM.int8 (int8 rows + SCB) and blockwise 4-bit (NF4/FP4).
//
// x: [tokens, in] in the compute dtype (f32, bf16 or f16); out: [tokens, out]
// in the same dtype. Products accumulate in f32 and the output is rounded once
// to the compute dtype. One token takes a GEMV path, more take a tiled GEMM.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lowbit/core/tensor.h"
#include "lowbit/quant/formats.h"

namespace lowbit::ops {

// Dense: weight [out, in] f32/bf16/f16 (converted to the compute dtype first,
// as PyTorch does when the weight dtype differs); bias [out] or undefined.
void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out);

// A blockwise 4-bit weight [out_features, in_features], the form the fused
// kernels read: packed codes (two a byte, high nibble first), one f32 absmax per
// block (double quantization already undone), the 16-entry code table, and the
// dtype the weight dequantizes to (bitsandbytes' quant_state.dtype).
struct Blockwise4bitWeight {
  quant::QuantType type = quant::QuantType::NF4;  // NF4 or FP4 (the code table says the values)
  Tensor packed;  // u8 [ceil(out * in / 2)] (any shape with that many bytes)
  Tensor absmax;  // f32 [ceil(out * in / blocksize)]
  Tensor code;    // f32 [16]
  int blocksize = 64;
  int64_t out_features = 0;
  int64_t in_features = 0;
  DType dtype = DType::BF16;
  // bnb_4bit_compute_dtype; unset: x's dtype.
  std::optional<DType> compute_dtype;

  // Double quantization kept as bitsandbytes stores it (GPU kernels decode
  // each block's absmax as they read it; the CPU op decodes them all first):
  // absmax is then u8 [blocks], codes of (absmax - offset) in nested_code,
  // each nested_blocksize of them scaled by one nested_absmax value, giving
  // f32(f32(nested_code[q] * nested_absmax) + offset). A weight stacked from
  // several (nn::Linear::stack) keeps each part's offset: part i > 0 starts at
  // absmax block part_starts[i - 1], on a row and a multiple of nested_blocksize.
  struct Nested {
    static constexpr int kMaxParts = 4;
    Tensor nested_absmax;  // f32 [ceil(blocks / nested_blocksize)]
    Tensor nested_code;    // f32 [256]
    int nested_blocksize = 256;
    std::vector<float> offsets;        // one a part
    std::vector<int64_t> part_starts;  // offsets.size() - 1 absmax blocks, increasing
  };
  std::optional<Nested> nested;
};

// w with its absmax decoded to f32 (w itself when it is not double-quantized),
// on w's device.
Blockwise4bitWeight with_decoded_absmax(const Blockwise4bitWeight& w);

// As bitsandbytes' Linear4bit: x is cast to the compute dtype, each weight is
// code[q] * absmax rounded to w.dtype, then to the compute dtype; f32
// accumulation, the output rounded to the compute dtype and then to x's dtype.
void linear_4bit(const Tensor& x, const Blockwise4bitWeight& w, const Tensor& bias, Tensor& out);

// The weight as linear_4bit's dequantize path multiplies it: code * absmax
// rounded to w.dtype, then to out's dtype. out: [out_features, in_features]
// (f32, bf16 or f16) on the weight's device.
void dequantize_4bit_weight(const Blockwise4bitWeight& w, Tensor& out);
// Whether linear_4bit of `rows` rows of `dtype` on `device` dequantizes the
// weight and multiplies it densely (prompts on the GPU); then linear(x,
// dequantized weight, bias) gives its bits.
bool linear_4bit_dequantizes(int64_t rows, DType dtype, Device device, const Blockwise4bitWeight& w);

// The fusions of a decoding step around a linear layer: its input made from
// `src` as it is read, and what becomes of its output y.
struct LinearFusion {
  enum class Input {
    Plain,    // x = src
    RmsNorm,  // x = rms_norm(src, norm_weight, eps)
    SwiGLU,   // x = swiglu(src): src = [tokens, 2 * in] (gate | up)
  };
  enum class Output {
    Store,   // out = y
    Add,     // out = out + y (ops::add)
    SwiGLU,  // out = swiglu(y): y = [tokens, out_features] (gate | up), out [tokens, out_features / 2]
  };
  Input input = Input::Plain;
  Tensor norm_weight;  // RmsNorm: [in]
  float eps = 0.0f;
  Output output = Output::Store;
};

// The activation rows a fused linear reads: src, or the op of f.input on it
// (a new tensor).
Tensor fused_linear_input(const Tensor& src, const LinearFusion& f);
// What a fused linear leaves in out from its product y (f.output: out = y,
// out + y or swiglu(y)).
void fused_linear_output(const Tensor& y, const LinearFusion& f, Tensor& out);

// y = linear_4bit(x, w, bias) with x made from src as f says, then out = y,
// out + y or swiglu(y): the same bits as those ops in turn. On the GPU, where
// linear_4bit_fuses says so, one row runs as one kernel (the GEMV makes x in
// shared memory and adds into out), and a prompt's SwiGLU output runs in the
// epilogue of the wgmma GEMM (Hopper); otherwise the ops run in turn.
void linear_4bit_fused(const Tensor& src, const Blockwise4bitWeight& w, const Tensor& bias, const LinearFusion& f,
                       Tensor& out);
bool linear_4bit_fuses(const Tensor& src, const Blockwise4bitWeight& w, const Tensor& bias, const LinearFusion& f,
                       const Tensor& out);

// LLM.int8 (bitsandbytes' MatMul8bitLt, f16 compute): x is quantized row-wise
// to int8 ignoring |x| >= threshold; the int8 product accumulates in int32 and
// is scaled by row_stat * SCB / 127^2 (+ bias) and rounded to the output dtype;
// the outlier columns (threshold > 0) go through a 16-bit product with those
// weight columns dequantized, added in f32 and rounded once more.
// codes: i8 [out, in]; scb: f32 [out].
void linear_int8(const Tensor& x, const Tensor& codes, const Tensor& scb, const Tensor& bias, float threshold,
                 Tensor& out);

}  // namespace lowbit::ops
