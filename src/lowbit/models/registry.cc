#include "lowbit/models/registry.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "models/architectures.h"

namespace lowbit::models {
namespace {

std::vector<Architecture>& table() {
  static std::vector<Architecture> t = [] {
    // One line per architecture file.
    return std::vector<Architecture>{llama_architecture(), mistral_architecture(), qwen2_architecture()};
  }();
  return t;
}

}  // namespace

std::vector<std::string> supported_architectures() {
  std::vector<std::string> names;
  for (const auto& a : table()) names.insert(names.end(), a.class_names.begin(), a.class_names.end());
  std::sort(names.begin(), names.end());
  return names;
}

const Architecture& find_architecture(const nlohmann::json& config) {
  std::string wanted, type;
  if (auto it = config.find("architectures"); it != config.end() && it->is_array() && !it->empty() &&
                                              (*it)[0].is_string())
    wanted = (*it)[0].get<std::string>();
  if (auto it = config.find("model_type"); it != config.end() && it->is_string()) type = it->get<std::string>();
  for (const auto& a : table()) {
    if (!wanted.empty() && std::find(a.class_names.begin(), a.class_names.end(), wanted) != a.class_names.end())
      return a;
  }
  if (wanted.empty())
    for (const auto& a : table())
      if (a.model_type == type) return a;
  fail("unsupported architecture '{}' (model_type '{}'); supported: {}", wanted.empty() ? "?" : wanted,
       type.empty() ? "?" : type, fmt::join(supported_architectures(), ", "));
}

}  // namespace lowbit::models
