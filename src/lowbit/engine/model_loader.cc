#include "lowbit/engine/model_loader.h"

#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "engine/checkpoint_source.h"
#include "lowbit/models/registry.h"

namespace lowbit::engine {

namespace fs = std::filesystem;

nlohmann::json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open the file").with_file(path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("invalid JSON: {}", e.what())).with_file(path.string());
  }
}

std::unique_ptr<models::CausalLM> load_model(const fs::path& dir, const LoadOptions& options) {
  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path))
    throw Error(fmt::format("{} is not a model directory: config.json is missing", dir.string()))
        .with_file(config_path.string());
  const nlohmann::json config_json = read_json_file(config_path);
  const models::Architecture* arch = nullptr;
  models::ModelConfig config;
  try {
    arch = &models::find_architecture(config_json);
    config = arch->parse_config(config_json);
  } catch (const Error& e) {
    throw e.with_file(config_path.string());
  }
  DType dtype = DType::F32;
  if (options.dtype) dtype = *options.dtype;
  else if (!config.torch_dtype.empty()) dtype = parse_dtype(config.torch_dtype);
  LOWBIT_CHECK(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16,
               "--dtype must be f32, bf16 or f16, got {}", dtype_name(dtype));
  const CheckpointSource source(dir, config_json, dtype, options.quantize);
  return arch->build(config, source, dtype);
}

}  // namespace lowbit::engine
