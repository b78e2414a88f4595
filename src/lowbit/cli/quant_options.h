// The BitsAndBytesConfig fields as command-line flags (--load-in-4bit,
// --bnb-4bit-quant-type nf4, ...; the field names with underscores work too)
// or as a JSON file (--config FILE.json, the fields as transformers writes
// them). Flags given on the command line override the file. Shared by every
// verb that quantizes: quantize, generate, perplexity.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "lowbit/core/dtype.h"
#include "lowbit/io/quant_config.h"

namespace lowbit::cli {

struct QuantOptions {
  std::string config_file;
  io::QuantizationConfig fields;       // values of the flags
  std::vector<std::string> skip_modules;
  std::string compute_dtype;
  // Which flags were given (they override --config).
  std::vector<std::pair<std::string, CLI::Option*>> given;

  // The config (file, then flags), validated; Errors name the option.
  io::QuantizationConfig resolve() const;
};

void add_quantization_options(CLI::App& app, QuantOptions& options);

// --dtype auto|f32|f16|bf16: unset for auto (the checkpoint's dtype).
void add_dtype_option(CLI::App& app, std::string& dtype, const std::string& help);
std::optional<DType> resolve_dtype(const std::string& dtype);

// A progress bar on stderr when it is a terminal; a no-op otherwise.
std::function<void(uint64_t, uint64_t, const std::string&)> terminal_progress(const std::string& what);

}  // namespace lowbit::cli
