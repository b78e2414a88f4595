// lowbit inspect MODEL [--dtype ...] [quantization flags] [--json]
// Per-weight format, shape, parameters and bytes, and the total memory
// footprint as transformers' get_memory_footprint() counts it.
#include <cstdio>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/quant_options.h"
#include "lowbit/io/checkpoint.h"

namespace lowbit::cli {
namespace {

struct InspectArgs {
  std::string model, dtype;
  bool json = false;
  QuantOptions quant;
};

int run_inspect(const InspectArgs& a) {
  const io::QuantizationConfig q = a.quant.resolve();
  const io::ModelWeights weights =
      io::ModelWeights::load(a.model, q.quantizes() ? std::optional(q) : std::nullopt, resolve_dtype(a.dtype));
  const io::Footprint f = weights.footprint();
  std::map<std::string, std::pair<int64_t, uint64_t>> by_format;
  for (const auto& e : f.entries) {
    by_format[e.format].first += e.parameters;
    by_format[e.format].second += e.bytes;
  }
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model;
    j["dtype"] = dtype_name(weights.dtype);
    j["quantization_config"] = weights.quantization ? weights.quantization->to_json() : nlohmann::json(nullptr);
    j["parameters"] = f.parameters;
    j["parameter_bytes"] = f.parameter_bytes;
    j["buffer_bytes"] = f.buffer_bytes;
    j["total_bytes"] = f.total_bytes;
    for (const auto& [format, pb] : by_format) j["formats"][format] = {{"parameters", pb.first}, {"bytes", pb.second}};
    nlohmann::json modules = nlohmann::json::array();
    for (const auto& e : f.entries)
      modules.push_back({{"name", e.name}, {"format", e.format}, {"shape", e.shape}, {"parameters", e.parameters}, {"bytes", e.bytes}});
    j["modules"] = modules;
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  size_t width = 6;
  for (const auto& e : f.entries) width = std::max(width, e.name.size());
  std::printf("%-*s  %-6s  %-14s  %12s  %12s\n", int(width), "tensor", "format", "shape", "parameters", "bytes");
  for (const auto& e : f.entries)
    std::printf("%-*s  %-6s  %-14s  %12lld  %12llu\n", int(width), e.name.c_str(), e.format.c_str(),
                shape_str(e.shape).c_str(), (long long)e.parameters, (unsigned long long)e.bytes);
  std::printf("\n");
  for (const auto& [format, pb] : by_format)
    std::printf("%-6s  %12lld parameters  %12llu bytes\n", format.c_str(), (long long)pb.first,
                (unsigned long long)pb.second);
  std::printf("buffers %llu bytes (rotary inv_freq)\n", (unsigned long long)f.buffer_bytes);
  std::printf("total   %lld parameters, %llu bytes (get_memory_footprint)\n", (long long)f.parameters,
              (unsigned long long)f.total_bytes);
  return 0;
}

const CommandRegistration registration{Command{
    "inspect", "per-weight formats and the memory footprint of a model directory",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<InspectArgs>();
      sub.add_option("MODEL", a->model, "model directory")->required();
      add_dtype_option(sub, a->dtype, "dtype the model is loaded in: auto (the checkpoint's), f32, f16, bf16");
      add_quantization_options(sub, a->quant);
      sub.add_flag("--json", a->json, "print JSON");
      return [a] { return run_inspect(*a); };
    }}};

}  // namespace
}  // namespace lowbit::cli
