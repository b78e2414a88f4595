// Loading a transformers checkpoint directory (config.json + safetensors,
// single file or sharded) into a runnable model.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>

#include "lowbit/models/causal_lm.h"

namespace lowbit::engine {

struct LoadOptions {
  // Compute dtype of activations and of the dense weights (default: the
  // config's dtype; f32 when it has none).
  std::optional<DType> dtype;
};

// Throws an Error naming the file (or tensor) for a missing config, an
// unsupported architecture, a missing tensor or a shape that disagrees with
// the config.
std::unique_ptr<models::CausalLM> load_model(const std::filesystem::path& dir, const LoadOptions& options = {});

}  // namespace lowbit::engine
