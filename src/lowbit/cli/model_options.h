// The loading options `generate` and `perplexity` share: --dtype and the
// BitsAndBytesConfig fields as flags or --config FILE.json, exactly as
// `lowbit quantize` takes them (quant_options.h), mapped to
// engine::LoadOptions. An already quantized checkpoint runs as it is.
// --device cpu|cuda|cuda:N says where the model runs.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "cli/quant_options.h"
#include "lowbit/engine/model_loader.h"

namespace lowbit::cli {

struct ModelOptions {
  std::string dtype;  // "auto" / "" = the checkpoint's
  std::string device = "cpu";
  QuantOptions quantization;

  void add_to(CLI::App& app);
  engine::LoadOptions load_options() const;
};

// Reads a text file that must be UTF-8 (an Error names the file and the
// offset of the first invalid byte).
std::string read_utf8_file(const std::string& path);

}  // namespace lowbit::cli
