#include "cli/quant_options.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "lowbit/core/error.h"

namespace lowbit::cli {

void add_quantization_options(CLI::App& app, QuantOptions& o) {
  auto& f = o.fields;
  auto flag = [&](const char* name, bool& field, const char* help) {
    const std::string dashed = std::string("--") + name;
    std::string underscored = dashed;
    for (size_t i = 2; i < underscored.size(); ++i)
      if (underscored[i] == '-') underscored[i] = '_';
    o.given.emplace_back(name, app.add_flag(dashed + "," + underscored, field, help));
  };
  auto option = [&](const char* name, auto& field, const char* help) {
    const std::string dashed = std::string("--") + name;
    std::string underscored = dashed;
    for (size_t i = 2; i < underscored.size(); ++i)
      if (underscored[i] == '-') underscored[i] = '_';
    o.given.emplace_back(name, app.add_option(dashed + "," + underscored, field, help));
  };
  app.add_option("--config", o.config_file, "BitsAndBytesConfig fields as JSON (as in config.json's quantization_config)");
  flag("load-in-8bit", f.load_in_8bit, "quantize linear layers to LLM.int8 (int8 weight + SCB)");
  flag("load-in-4bit", f.load_in_4bit, "quantize linear layers to 4 bits (NF4 or FP4)");
  option("llm-int8-threshold", f.llm_int8_threshold, "LLM.int8 outlier threshold (default 6.0)");
  option("llm-int8-skip-modules", o.skip_modules, "modules kept in high precision (default: the output head)");
  flag("llm-int8-enable-fp32-cpu-offload", f.llm_int8_enable_fp32_cpu_offload, "kept in the config (offload is not used)");
  flag("llm-int8-has-fp16-weight", f.llm_int8_has_fp16_weight, "kept in the config");
  option("bnb-4bit-compute-dtype", o.compute_dtype, "4-bit compute dtype: float32 (default), float16, bfloat16");
  option("bnb-4bit-quant-type", f.bnb_4bit_quant_type, "4-bit data type: fp4 (default) or nf4");
  flag("bnb-4bit-use-double-quant", f.bnb_4bit_use_double_quant, "quantize the 4-bit absmax again (8-bit, 256-blocks)");
  option("bnb-4bit-quant-storage", f.bnb_4bit_quant_storage, "4-bit storage dtype: uint8");
}

io::QuantizationConfig QuantOptions::resolve() const {
  io::QuantizationConfig c;
  nlohmann::json j = nlohmann::json::object();
  if (!config_file.empty()) {
    // from_file validates the file alone; the flags may still change it.
    j = c.from_file(config_file).to_json();
  }
  for (const auto& [name, opt] : given) {
    if (opt->count() == 0) continue;
    std::string key = name;
    for (auto& ch : key)
      if (ch == '-') ch = '_';
    if (key == "llm_int8_skip_modules") j[key] = skip_modules;
    else if (key == "bnb_4bit_compute_dtype") j[key] = compute_dtype;
    else if (key == "llm_int8_threshold") j[key] = fields.llm_int8_threshold;
    else if (key == "bnb_4bit_quant_type") j[key] = fields.bnb_4bit_quant_type;
    else if (key == "bnb_4bit_quant_storage") j[key] = fields.bnb_4bit_quant_storage;
    else if (key == "load_in_8bit") j[key] = fields.load_in_8bit;
    else if (key == "load_in_4bit") j[key] = fields.load_in_4bit;
    else if (key == "llm_int8_enable_fp32_cpu_offload") j[key] = fields.llm_int8_enable_fp32_cpu_offload;
    else if (key == "llm_int8_has_fp16_weight") j[key] = fields.llm_int8_has_fp16_weight;
    else if (key == "bnb_4bit_use_double_quant") j[key] = fields.bnb_4bit_use_double_quant;
  }
  // The mirrors transformers adds would contradict a flag that changed the bits.
  j.erase("_load_in_8bit");
  j.erase("_load_in_4bit");
  try {
    return io::QuantizationConfig::from_json(j);
  } catch (const Error& e) {
    throw config_file.empty() ? e : e.with_file(config_file);
  }
}

void add_dtype_option(CLI::App& app, std::string& dtype, const std::string& help) {
  app.add_option("--dtype", dtype, help)->default_str("auto");
}

std::optional<DType> resolve_dtype(const std::string& dtype) {
  if (dtype.empty() || dtype == "auto") return std::nullopt;
  DType d;
  try {
    d = parse_dtype(dtype);
  } catch (const Error& e) {
    throw Error(fmt::format("--dtype {} is not one of auto, f32, f16, bf16", dtype)).with_option("--dtype");
  }
  if (d != DType::F32 && d != DType::F16 && d != DType::BF16)
    throw Error(fmt::format("--dtype {} is not one of auto, f32, f16, bf16", dtype)).with_option("--dtype");
  return d;
}

std::function<void(uint64_t, uint64_t, const std::string&)> terminal_progress(const std::string& what) {
  if (!isatty(STDERR_FILENO)) return {};
  const auto start = std::chrono::steady_clock::now();
  return [what, start](uint64_t done, uint64_t total, const std::string& name) {
    const double frac = total ? double(done) / double(total) : 1.0;
    const int width = 30, filled = int(frac * width);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string shown = name.size() > 40 ? "..." + name.substr(name.size() - 37) : name;
    std::fprintf(stderr, "\r%s [%s%s] %3d%% %6.1fs %-40s", what.c_str(), std::string(filled, '#').c_str(),
                 std::string(width - filled, ' ').c_str(), int(frac * 100), seconds, shown.c_str());
    if (done >= total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
}

}  // namespace lowbit::cli
