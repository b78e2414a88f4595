// QuantState <-> the state-dict keys that bitsandbytes' QuantState.as_dict
// (packed=True) writes and transformers saves beside a 4-bit weight.
#include "lowbit/quant/quant_state.h"

#include <cmath>
#include <string_view>

#include <nlohmann/json.hpp>

#include "lowbit/core/error.h"

namespace lowbit::quant {
namespace {

// str(torch.dtype).strip("torch.") as bitsandbytes writes it.
std::string_view torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: fail("quant state: dtype {} cannot be a quantized tensor's dtype", dtype_name(dtype));
  }
}

// Python's repr of a float, as json.dumps writes it: shortest round-trip
// digits, always with a fraction or exponent ("1.0", "0.05", "1e-05").
std::string python_float(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

// json.dumps(dict) with the default separators, keys in insertion order.
std::string state_json(const QuantState& s) {
  std::string out = fmt::format(R"({{"quant_type": "{}", "blocksize": {}, "dtype": "{}", "shape": [)",
                                traits(s.type).name, s.blocksize, torch_dtype_name(s.dtype));
  for (size_t i = 0; i < s.shape.size(); ++i) out += fmt::format("{}{}", i ? ", " : "", s.shape[i]);
  out += "]";
  if (s.nested) {
    out += fmt::format(R"(, "nested_blocksize": {}, "nested_dtype": "float32", "nested_offset": {})",
                       s.nested->blocksize, python_float(double(s.nested->offset)));
  }
  out += "}";
  return out;
}

Tensor json_tensor(const std::string& text) {
  return Tensor::from_vector(std::vector<uint8_t>(text.begin(), text.end()), {int64_t(text.size())});
}

Error state_error(const std::string& tensor, const std::string& message) {
  return Error(message).with_tensor(tensor);
}

Tensor require(const std::function<Tensor(const std::string&)>& lookup, const std::string& name, DType dtype,
               int64_t numel) {
  Tensor t = lookup(name);
  if (!t.defined()) throw state_error(name, fmt::format("quant state: missing tensor {}", name));
  if (t.dtype() != dtype || t.numel() != numel)
    throw state_error(name, fmt::format("quant state: {} must be {} with {} elements, got {}", name,
                                        dtype_name(dtype), numel, t.describe()));
  return t;
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> QuantState::to_state_dict(const std::string& prefix) const {
  LOWBIT_CHECK(type == QuantType::NF4 || type == QuantType::FP4,
               "quant state: only 4-bit (nf4, fp4) states have a checkpoint layout, got {}", traits(type).name);
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back(prefix + "absmax", absmax);
  out.emplace_back(prefix + "quant_map", code);
  if (nested) {
    out.emplace_back(prefix + "nested_absmax", nested->nested_absmax);
    out.emplace_back(prefix + "nested_quant_map", nested->nested_code);
  }
  out.emplace_back(prefix + "quant_state.bitsandbytes__" + std::string(traits(type).name),
                   json_tensor(state_json(*this)));
  return out;
}

QuantState QuantState::from_state_dict(const std::string& prefix,
                                       const std::function<Tensor(const std::string&)>& lookup) {
  std::string key;
  Tensor blob;
  for (const char* name : {"nf4", "fp4"}) {
    key = prefix + "quant_state.bitsandbytes__" + name;
    blob = lookup(key);
    if (blob.defined()) break;
  }
  if (!blob.defined())
    throw state_error(prefix + "quant_state.bitsandbytes__nf4",
                      fmt::format("quant state: missing {0}quant_state.bitsandbytes__nf4 (or __fp4)", prefix));
  if (blob.dtype() != DType::U8)
    throw state_error(key, fmt::format("quant state: {} must be u8 JSON text, got {}", key, blob.describe()));
  const Tensor host = blob.to(Device::cpu());
  const std::string text(reinterpret_cast<const char*>(host.raw_data()), size_t(host.numel()));

  QuantState s;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    const std::string qt = j.at("quant_type").get<std::string>();
    if (key.substr(key.size() - 3) != qt)
      throw state_error(key, fmt::format("quant state: {} says quant_type \"{}\"", key, qt));
    s.type = parse_quant_type(qt);
    s.blocksize = j.at("blocksize").get<int>();
    s.dtype = parse_dtype(j.at("dtype").get<std::string>());
    s.shape = j.at("shape").get<std::vector<int64_t>>();
    if (j.contains("nested_offset")) {
      NestedAbsmax nested;
      nested.blocksize = j.value("nested_blocksize", 256);
      nested.offset = j.at("nested_offset").get<float>();
      if (j.contains("nested_dtype") && j.at("nested_dtype").get<std::string>() != "float32")
        throw state_error(key, fmt::format("quant state: {}: nested_dtype must be float32", key));
      s.nested = nested;
    }
  } catch (const nlohmann::json::exception& e) {
    throw state_error(key, fmt::format("quant state: {} is not valid bitsandbytes JSON: {}", key, e.what()));
  }
  if (s.type != QuantType::NF4 && s.type != QuantType::FP4)
    throw state_error(key, fmt::format("quant state: {}: quant_type must be nf4 or fp4", key));
  if (!is_valid_blocksize(s.type, s.blocksize))
    throw state_error(key, fmt::format("quant state: {}: unsupported blocksize {}", key, s.blocksize));
  for (int64_t d : s.shape)
    if (d < 0) throw state_error(key, fmt::format("quant state: {}: negative dimension in shape", key));
  if (s.dtype != DType::F32 && s.dtype != DType::F16 && s.dtype != DType::BF16)
    throw state_error(key, fmt::format("quant state: {}: dtype must be float32, float16 or bfloat16", key));

  s.absmax = require(lookup, prefix + "absmax", s.nested ? DType::U8 : DType::F32, s.blocks());
  s.code = require(lookup, prefix + "quant_map", DType::F32, 16);
  if (s.nested) {
    if (!is_valid_blocksize(QuantType::Dynamic8, s.nested->blocksize))
      throw state_error(key, fmt::format("quant state: {}: unsupported nested_blocksize {}", key, s.nested->blocksize));
    const int64_t nested_blocks = (s.blocks() + s.nested->blocksize - 1) / s.nested->blocksize;
    s.nested->nested_absmax = require(lookup, prefix + "nested_absmax", DType::F32, nested_blocks);
    s.nested->nested_code = require(lookup, prefix + "nested_quant_map", DType::F32, 256);
  } else if (lookup(prefix + "nested_absmax").defined()) {
    throw state_error(prefix + "nested_absmax",
                      fmt::format("quant state: {}nested_absmax is present but {} has no nested_offset", prefix, key));
  }
  return s;
}

}  // namespace lowbit::quant
