// transformers' BitsAndBytesConfig: every field with its default, the same
// validation, and the exact `quantization_config` block transformers writes
// into config.json.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/core/dtype.h"
#include "lowbit/quant/formats.h"

namespace lowbit::io {

struct QuantizationConfig {
  bool load_in_8bit = false;
  bool load_in_4bit = false;
  double llm_int8_threshold = 6.0;
  // Modules kept in high precision; unset = the output head (transformers'
  // get_keys_to_not_convert). Written as null when unset.
  std::optional<std::vector<std::string>> llm_int8_skip_modules;
  bool llm_int8_enable_fp32_cpu_offload = false;
  bool llm_int8_has_fp16_weight = false;
  DType bnb_4bit_compute_dtype = DType::F32;
  std::string bnb_4bit_quant_type = "fp4";
  bool bnb_4bit_use_double_quant = false;
  std::string bnb_4bit_quant_storage = "uint8";

  bool quantizes() const { return load_in_8bit || load_in_4bit; }
  // NF4 or FP4 (4-bit), Int8Rowwise (8-bit).
  quant::QuantType quant_type() const;
  // Throws an Error naming the offending field: both 8 and 4 bits, an unknown
  // quant type, compute dtype or storage, a negative threshold.
  void validate() const;
  // The modules that stay in high precision (the skip list or its default).
  std::vector<std::string> skip_modules() const;

  // Exactly what transformers writes (sorted keys, "_load_in_*" mirrors,
  // "quant_method": "bitsandbytes", dtypes as torch names).
  nlohmann::json to_json() const;
  // Reads a config.json block or a user's JSON file: the same field names.
  // `strict`: unknown keys are an Error (a misspelled field of a user's file
  // must not be ignored); a saved config.json is read with strict = false,
  // since other transformers versions may add fields. Validates.
  static QuantizationConfig from_json(const nlohmann::json& j, bool strict = true);
  static QuantizationConfig from_file(const std::string& path);
};

// "float32"/"float16"/"bfloat16" for the dtypes a compute dtype may take.
std::string torch_dtype_name(DType dtype);

}  // namespace lowbit::io
