#include "cli/model_options.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "lowbit/core/error.h"

namespace lowbit::cli {

// Each BitsAndBytesConfig field is a flag under its own name too
// (--load_in_4bit as well as --load-in-4bit).
void ModelOptions::add_to(CLI::App& app) {
  app.add_option("--dtype", dtype, "compute dtype: f32, bf16 or f16 (default: the checkpoint's)");
  app.add_option("--config", config_file, "BitsAndBytesConfig as JSON (quantize on load)")->check(CLI::ExistingFile);
  app.add_flag("--load-in-8bit,--load_in_8bit", load_in_8bit, "quantize linear layers to LLM.int8 on load");
  app.add_flag("--load-in-4bit,--load_in_4bit", load_in_4bit, "quantize linear layers to 4 bits on load");
  app.add_option("--llm-int8-threshold,--llm_int8_threshold", llm_int8_threshold, "LLM.int8 outlier threshold (0: pure int8)");
  app.add_option("--bnb-4bit-quant-type,--bnb_4bit_quant_type", bnb_4bit_quant_type, "nf4 or fp4")->check(CLI::IsMember({"nf4", "fp4"}));
  app.add_flag("--bnb-4bit-use-double-quant,--bnb_4bit_use_double_quant", bnb_4bit_use_double_quant, "quantize the 4-bit absmax again");
  app.add_option("--bnb-4bit-compute-dtype,--bnb_4bit_compute_dtype", bnb_4bit_compute_dtype, "4-bit compute dtype (default: --dtype)");
  app.add_option("--blocksize", blocksize, "4-bit block size");
  app.add_option("--llm-int8-skip-modules,--llm_int8_skip_modules", skip_modules, "modules kept in high precision (default: lm_head)");
}

engine::LoadOptions ModelOptions::load_options() const {
  ModelOptions o = *this;
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("invalid JSON: {}", e.what())).with_file(config_file);
    }
    o.load_in_8bit = j.value("load_in_8bit", o.load_in_8bit);
    o.load_in_4bit = j.value("load_in_4bit", o.load_in_4bit);
    o.llm_int8_threshold = j.value("llm_int8_threshold", o.llm_int8_threshold);
    o.bnb_4bit_quant_type = j.value("bnb_4bit_quant_type", o.bnb_4bit_quant_type);
    o.bnb_4bit_use_double_quant = j.value("bnb_4bit_use_double_quant", o.bnb_4bit_use_double_quant);
    if (j.contains("bnb_4bit_compute_dtype") && j["bnb_4bit_compute_dtype"].is_string())
      o.bnb_4bit_compute_dtype = j["bnb_4bit_compute_dtype"].get<std::string>();
    if (j.contains("llm_int8_skip_modules") && j["llm_int8_skip_modules"].is_array())
      o.skip_modules = j["llm_int8_skip_modules"].get<std::vector<std::string>>();
  }
  LOWBIT_CHECK(!(o.load_in_8bit && o.load_in_4bit), "--load-in-8bit and --load-in-4bit exclude each other");
  engine::LoadOptions options;
  if (!o.dtype.empty()) options.dtype = parse_dtype(o.dtype);
  if (!o.load_in_8bit && !o.load_in_4bit) return options;
  engine::QuantizeOnLoad q;
  if (!o.skip_modules.empty()) q.skip_modules = o.skip_modules;
  if (o.load_in_8bit) {
    q.kind = engine::QuantizeOnLoad::Kind::Int8;
    q.int8_threshold = o.llm_int8_threshold;
    // bitsandbytes' LLM.int8 computes in f16.
    if (!options.dtype) options.dtype = DType::F16;
  } else {
    q.kind = o.bnb_4bit_quant_type == "fp4" ? engine::QuantizeOnLoad::Kind::FP4 : engine::QuantizeOnLoad::Kind::NF4;
    q.double_quant = o.bnb_4bit_use_double_quant;
    q.blocksize = o.blocksize;
    if (!o.bnb_4bit_compute_dtype.empty()) q.compute_dtype = parse_dtype(o.bnb_4bit_compute_dtype);
  }
  options.quantize = q;
  return options;
}

std::string read_utf8_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open the text file").with_file(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  // Validate UTF-8: lead byte, continuation bytes, no overlong forms or surrogates.
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len != 0 && i + len <= n;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (s[i + k] & 0xc0) == 0x80;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (ok) {
      static constexpr uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= min_cp[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    }
    if (!ok)
      throw Error(fmt::format("{} is not UTF-8 text: invalid byte 0x{:02x} at offset {}", path, c, i)).with_file(path);
    i += len;
  }
  return text;
}

}  // namespace lowbit::cli
