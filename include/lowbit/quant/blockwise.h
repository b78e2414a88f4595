// Blockwise quantization ops: 4-bit NF4/FP4 and dynamic 8-bit, with optional
// double quantization of the absmax. Inputs f32/f16/bf16 of any length;
// computed on the tensor's device (CPU or CUDA).
//
// NaN/Inf: see docs/quantization.md for the defined behaviour.
#pragma once

#include <optional>

#include "lowbit/core/tensor.h"
#include "lowbit/quant/quant_state.h"

namespace lowbit::quant {

// Packs two codes a byte (first element in the high nibble); returns u8
// [ceil(n/2), 1] as bitsandbytes stores it. `type` is NF4 or FP4; block sizes
// 32..4096 (powers of two); `double_quant` codes absmax in 256-value blocks.
Tensor quantize_4bit(const Tensor& x, QuantType type, int blocksize, bool double_quant, QuantState& state);
// Returns `out_dtype` (default: the state's dtype) with the state's shape.
Tensor dequantize_4bit(const Tensor& packed, const QuantState& state, std::optional<DType> out_dtype = {});
// The same into an existing f32/f16/bf16 tensor of numel() elements on the
// packed data's device (callers that reuse buffers skip fresh pages).
void dequantize_4bit_into(const Tensor& packed, const QuantState& state, Tensor& out);

// Dynamic 8-bit blockwise (bitsandbytes' quantize_blockwise): u8 codes with
// the input's shape; `nested` double-quantizes absmax in blocks of `blocksize`.
Tensor quantize_blockwise(const Tensor& x, int blocksize, bool nested, QuantState& state);
Tensor dequantize_blockwise(const Tensor& codes, const QuantState& state, std::optional<DType> out_dtype = {});
void dequantize_blockwise_into(const Tensor& codes, const QuantState& state, Tensor& out);

// The f32 absmax [blocks] of a state, on the state's device: undoes the
// double quantization (code[q] * nested_absmax + offset) or returns absmax.
Tensor dequantize_nested_absmax(const QuantState& state);

}  // namespace lowbit::quant
