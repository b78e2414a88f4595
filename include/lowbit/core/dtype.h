// Element types lowbit stores, with their sizes and safetensors names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lowbit {

// U4 is packed 4-bit data (two codes a byte, bitsandbytes' nibble order: the
// first element in the high nibble); its tensors count elements, not bytes.
enum class DType : uint8_t { F32, F16, BF16, F64, I8, U8, I16, I32, I64, Bool, U4 };

// Bytes for `count` elements of `dtype` (rounds U4 up to whole bytes).
size_t storage_bytes(DType dtype, size_t count);
// Bytes per element for byte-sized types; throws for U4.
size_t element_size(DType dtype);
bool is_floating(DType dtype);

// Lower-case short name used in messages and the CLI: "f32", "bf16", "u4" ...
std::string_view dtype_name(DType dtype);
// Parses the short names and the torch names ("float32", "bfloat16", "float16", ...).
DType parse_dtype(std::string_view name);

// safetensors' spelling ("F32", "BF16", "U8", ...). U4 has none.
std::string_view safetensors_dtype_name(DType dtype);
// Returns false for names lowbit does not read (F8_E4M3 and friends).
bool parse_safetensors_dtype(std::string_view name, DType& out);

// Maps a C++ type to its DType (float, uint16-based half types, integers).
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int8_t> { static constexpr DType value = DType::I8; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::U8; };
template <> struct dtype_of<int16_t> { static constexpr DType value = DType::I16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };

}  // namespace lowbit
