// What dequantizing a blockwise-quantized tensor needs, and its conversion to
// and from the state-dict keys that bitsandbytes + transformers write.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/core/tensor.h"
#include "lowbit/quant/formats.h"

namespace lowbit::quant {

// Double quantization of the absmax values: (absmax - offset) in 256-value
// blocks, coded with the signed dynamic map.
struct NestedAbsmax {
  float offset = 0.0f;        // mean of the absmax values that was subtracted
  int blocksize = 256;
  Tensor nested_absmax;       // f32 [ceil(blocks / 256)]
  Tensor nested_code;         // f32 [256], the signed dynamic map
};

struct QuantState {
  QuantType type = QuantType::NF4;
  int blocksize = 64;
  Shape shape;                      // shape of the original tensor
  DType dtype = DType::F32;         // dtype of the original tensor (what dequantize returns by default)
  Tensor absmax;                    // f32 [blocks], or u8 codes [blocks] when `nested` is set
  Tensor code;                      // f32 code table (16 for 4-bit, 256 for dynamic 8-bit)
  std::optional<NestedAbsmax> nested;

  int64_t numel() const { return shape_numel(shape); }
  int64_t blocks() const { return (numel() + blocksize - 1) / blocksize; }

  // The 4-bit keys under `prefix` (e.g. "model.layers.0.mlp.up_proj.weight."):
  // absmax, quant_map, nested_absmax, nested_quant_map, and
  // quant_state.bitsandbytes__nf4 / __fp4 (a U8 tensor holding JSON with
  // quant_type, blocksize, dtype, shape, nested_blocksize, nested_offset).
  std::vector<std::pair<std::string, Tensor>> to_state_dict(const std::string& prefix) const;
  // Reads those keys back; `lookup(name)` returns the tensor or an undefined
  // one. Missing or inconsistent keys throw an Error naming the tensor.
  static QuantState from_state_dict(const std::string& prefix,
                                    const std::function<Tensor(const std::string&)>& lookup);
};

}  // namespace lowbit::quant
