#include "lowbit/core/dtype.h"

#include <array>

#include "lowbit/core/error.h"

namespace lowbit {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::string_view safetensors;
  size_t size;  // bytes per element; 0 for packed 4-bit
  bool floating;
};

constexpr std::array<DTypeInfo, 11> kInfo{{
    {DType::F32, "f32", "F32", 4, true},
    {DType::F16, "f16", "F16", 2, true},
    {DType::BF16, "bf16", "BF16", 2, true},
    {DType::F64, "f64", "F64", 8, true},
    {DType::I8, "i8", "I8", 1, false},
    {DType::U8, "u8", "U8", 1, false},
    {DType::I16, "i16", "I16", 2, false},
    {DType::I32, "i32", "I32", 4, false},
    {DType::I64, "i64", "I64", 8, false},
    {DType::Bool, "bool", "BOOL", 1, false},
    {DType::U4, "u4", "", 0, false},
}};

const DTypeInfo& info(DType d) { return kInfo[size_t(d)]; }

}  // namespace

size_t storage_bytes(DType dtype, size_t count) {
  if (dtype == DType::U4) return (count + 1) / 2;
  return count * info(dtype).size;
}

size_t element_size(DType dtype) {
  LOWBIT_CHECK(dtype != DType::U4, "packed 4-bit data has no per-element byte size");
  return info(dtype).size;
}

bool is_floating(DType dtype) { return info(dtype).floating; }
std::string_view dtype_name(DType dtype) { return info(dtype).name; }

DType parse_dtype(std::string_view name) {
  for (const auto& i : kInfo)
    if (i.name == name) return i.dtype;
  if (name == "float32" || name == "float" || name == "fp32" || name == "torch.float32") return DType::F32;
  if (name == "float16" || name == "half" || name == "fp16" || name == "torch.float16") return DType::F16;
  if (name == "bfloat16" || name == "torch.bfloat16") return DType::BF16;
  if (name == "float64" || name == "double") return DType::F64;
  if (name == "int8") return DType::I8;
  if (name == "uint8") return DType::U8;
  if (name == "int32") return DType::I32;
  if (name == "int64") return DType::I64;
  fail("unknown dtype '{}': expected one of f32, f16, bf16 (or float32, float16, bfloat16)", name);
}

std::string_view safetensors_dtype_name(DType dtype) {
  LOWBIT_CHECK(dtype != DType::U4, "packed 4-bit tensors are stored as U8 in safetensors");
  return info(dtype).safetensors;
}

bool parse_safetensors_dtype(std::string_view name, DType& out) {
  for (const auto& i : kInfo)
    if (!i.safetensors.empty() && i.safetensors == name) {
      out = i.dtype;
      return true;
    }
  return false;
}

}  // namespace lowbit
