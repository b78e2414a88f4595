#include "lowbit/io/quant_config.h"

#include <fstream>
#include <set>

#include <fmt/format.h>

#include "lowbit/core/error.h"

namespace lowbit::io {

namespace {

Error field_error(const std::string& field, const std::string& message) {
  return Error(fmt::format("quantization config: {}", message)).with_option(field);
}

}  // namespace

std::string torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::F64: return "float64";
    default: return std::string(dtype_name(dtype));
  }
}

quant::QuantType QuantizationConfig::quant_type() const {
  if (load_in_8bit) return quant::QuantType::Int8Rowwise;
  return bnb_4bit_quant_type == "nf4" ? quant::QuantType::NF4 : quant::QuantType::FP4;
}

void QuantizationConfig::validate() const {
  if (load_in_8bit && load_in_4bit)
    throw field_error("load_in_4bit", "load_in_4bit and load_in_8bit are both true; choose one");
  if (bnb_4bit_quant_type != "nf4" && bnb_4bit_quant_type != "fp4")
    throw field_error("bnb_4bit_quant_type",
                      fmt::format("unknown bnb_4bit_quant_type \"{}\": expected \"nf4\" or \"fp4\"", bnb_4bit_quant_type));
  if (bnb_4bit_compute_dtype != DType::F32 && bnb_4bit_compute_dtype != DType::F16 &&
      bnb_4bit_compute_dtype != DType::BF16)
    throw field_error("bnb_4bit_compute_dtype",
                      fmt::format("bnb_4bit_compute_dtype {} is not float32, float16 or bfloat16",
                                  dtype_name(bnb_4bit_compute_dtype)));
  if (bnb_4bit_quant_storage != "uint8")
    throw field_error("bnb_4bit_quant_storage",
                      fmt::format("bnb_4bit_quant_storage \"{}\" is not supported: expected \"uint8\"",
                                  bnb_4bit_quant_storage));
  if (!(llm_int8_threshold >= 0.0))
    throw field_error("llm_int8_threshold",
                      fmt::format("llm_int8_threshold must be a non-negative number, got {}", llm_int8_threshold));
}

std::vector<std::string> QuantizationConfig::skip_modules() const {
  if (llm_int8_skip_modules) return *llm_int8_skip_modules;
  return {"lm_head"};
}

nlohmann::json QuantizationConfig::to_json() const {
  nlohmann::json j;  // std::map underneath: keys sorted, as json.dumps(sort_keys=True)
  j["_load_in_4bit"] = load_in_4bit;
  j["_load_in_8bit"] = load_in_8bit;
  j["bnb_4bit_compute_dtype"] = torch_dtype_name(bnb_4bit_compute_dtype);
  j["bnb_4bit_quant_storage"] = bnb_4bit_quant_storage;
  j["bnb_4bit_quant_type"] = bnb_4bit_quant_type;
  j["bnb_4bit_use_double_quant"] = bnb_4bit_use_double_quant;
  j["llm_int8_enable_fp32_cpu_offload"] = llm_int8_enable_fp32_cpu_offload;
  j["llm_int8_has_fp16_weight"] = llm_int8_has_fp16_weight;
  j["llm_int8_skip_modules"] = llm_int8_skip_modules ? nlohmann::json(*llm_int8_skip_modules) : nlohmann::json(nullptr);
  j["llm_int8_threshold"] = llm_int8_threshold;
  j["load_in_4bit"] = load_in_4bit;
  j["load_in_8bit"] = load_in_8bit;
  j["quant_method"] = "bitsandbytes";
  return j;
}

QuantizationConfig QuantizationConfig::from_json(const nlohmann::json& j, bool strict) {
  if (!j.is_object()) throw Error("quantization config: expected a JSON object");
  QuantizationConfig c;
  auto get_bool = [&](const char* key, bool& field) {
    if (!j.contains(key)) return;
    if (!j[key].is_boolean()) throw field_error(key, fmt::format("{} must be true or false, got {}", key, j[key].dump()));
    field = j[key].get<bool>();
  };
  auto get_string = [&](const char* key, std::string& field) {
    if (!j.contains(key)) return;
    if (!j[key].is_string()) throw field_error(key, fmt::format("{} must be a string, got {}", key, j[key].dump()));
    field = j[key].get<std::string>();
  };
  get_bool("load_in_8bit", c.load_in_8bit);
  get_bool("load_in_4bit", c.load_in_4bit);
  get_bool("llm_int8_enable_fp32_cpu_offload", c.llm_int8_enable_fp32_cpu_offload);
  get_bool("llm_int8_has_fp16_weight", c.llm_int8_has_fp16_weight);
  get_bool("bnb_4bit_use_double_quant", c.bnb_4bit_use_double_quant);
  get_string("bnb_4bit_quant_type", c.bnb_4bit_quant_type);
  get_string("bnb_4bit_quant_storage", c.bnb_4bit_quant_storage);
  if (j.contains("llm_int8_threshold")) {
    if (!j["llm_int8_threshold"].is_number())
      throw field_error("llm_int8_threshold", fmt::format("llm_int8_threshold must be a number, got {}", j["llm_int8_threshold"].dump()));
    c.llm_int8_threshold = j["llm_int8_threshold"].get<double>();
  }
  if (j.contains("bnb_4bit_compute_dtype") && !j["bnb_4bit_compute_dtype"].is_null()) {
    if (!j["bnb_4bit_compute_dtype"].is_string())
      throw field_error("bnb_4bit_compute_dtype", "bnb_4bit_compute_dtype must be a string such as \"bfloat16\"");
    try {
      c.bnb_4bit_compute_dtype = parse_dtype(j["bnb_4bit_compute_dtype"].get<std::string>());
    } catch (const Error& e) {
      throw field_error("bnb_4bit_compute_dtype", e.message());
    }
  }
  if (j.contains("llm_int8_skip_modules") && !j["llm_int8_skip_modules"].is_null()) {
    const auto& s = j["llm_int8_skip_modules"];
    if (!s.is_array()) throw field_error("llm_int8_skip_modules", "llm_int8_skip_modules must be a list of module names or null");
    std::vector<std::string> names;
    for (const auto& e : s) {
      if (!e.is_string()) throw field_error("llm_int8_skip_modules", "llm_int8_skip_modules must hold strings");
      names.push_back(e.get<std::string>());
    }
    c.llm_int8_skip_modules = names;
  }
  static const std::set<std::string> known = {
      "load_in_8bit", "load_in_4bit", "llm_int8_threshold", "llm_int8_skip_modules",
      "llm_int8_enable_fp32_cpu_offload", "llm_int8_has_fp16_weight", "bnb_4bit_compute_dtype",
      "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_quant_storage",
      "_load_in_8bit", "_load_in_4bit", "quant_method"};
  for (const auto& [key, value] : j.items())
    if (strict && !known.count(key)) throw field_error(key, fmt::format("unknown BitsAndBytesConfig field \"{}\"", key));
  if (j.contains("quant_method") && j["quant_method"] != "bitsandbytes")
    throw field_error("quant_method", fmt::format("quant_method {} is not supported: expected \"bitsandbytes\"",
                                                  j["quant_method"].dump()));
  c.validate();
  return c;
}

QuantizationConfig QuantizationConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open the quantization config").with_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("invalid JSON: {}", e.what())).with_file(path);
  }
  // A whole config.json is accepted too: its quantization_config block.
  if (j.is_object() && j.contains("quantization_config")) j = j["quantization_config"];
  try {
    return from_json(j);
  } catch (const Error& e) {
    throw e.with_file(path);
  }
}

}  // namespace lowbit::io
