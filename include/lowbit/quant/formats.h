// The quantization formats of lowbit, one row each in a traits table.
//
// Numerics follow bitsandbytes exactly (code tables, rounding, packing), so the
// bytes lowbit writes are the bytes bitsandbytes writes. A new format (AWQ,
// GPTQ...) is a new row plus its kernels; code that walks formats asks here.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace lowbit::quant {

enum class QuantType : uint8_t {
  Dynamic8,     // 8-bit blockwise with the signed dynamic map (optimizer state, quantize_blockwise)
  NF4,          // 4-bit NormalFloat, blockwise absmax
  FP4,          // 4-bit float (e2m1 as bitsandbytes defines it), blockwise absmax
  Int8Rowwise,  // LLM.int8: int8 rows with one absmax (SCB) per row
};

struct FormatTraits {
  QuantType type;
  std::string_view name;       // "nf4", "fp4", "dynamic8", "int8"
  int bits;                    // bits per code
  int default_blocksize;       // 64 for 4-bit, 4096 for dynamic 8-bit, 0 for row-wise
  int min_blocksize, max_blocksize;
  std::span<const float> code; // the code table (16 or 256 values; empty for int8)
};

const FormatTraits& traits(QuantType type);
// "nf4", "fp4" (also "dynamic8", "int8"); unknown names throw an Error that lists the valid ones.
QuantType parse_quant_type(std::string_view name);

// bitsandbytes' create_dynamic_map(signed, max_exponent_bits=7, total_bits=8),
// reproduced bit for bit.
std::array<float, 256> create_dynamic_map(bool is_signed = true, int max_exponent_bits = 7, int total_bits = 8);
const std::array<float, 256>& dynamic_map_signed();
const std::array<float, 256>& dynamic_map_unsigned();
const std::array<float, 16>& nf4_code();
const std::array<float, 16>& fp4_code();

// Block sizes: powers of two from min_blocksize to max_blocksize (4-bit
// 32..4096, dynamic 8-bit 64..4096). Throws an Error listing the valid sizes.
bool is_valid_blocksize(QuantType type, int blocksize);
void check_blocksize(QuantType type, int blocksize);

}  // namespace lowbit::quant
