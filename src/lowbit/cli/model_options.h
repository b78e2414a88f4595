// The loading options `generate` and `perplexity` share: --dtype and the
// BitsAndBytesConfig fields as flags (or --config FILE.json), mapped to
// engine::LoadOptions. An already quantized checkpoint runs as it is.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "lowbit/engine/model_loader.h"

namespace lowbit::cli {

struct ModelOptions {
  std::string dtype;          // "" = the checkpoint's
  std::string config_file;    // BitsAndBytesConfig JSON
  bool load_in_8bit = false;
  bool load_in_4bit = false;
  float llm_int8_threshold = 6.0f;
  std::string bnb_4bit_quant_type = "nf4";
  bool bnb_4bit_use_double_quant = false;
  std::string bnb_4bit_compute_dtype;  // "" = --dtype
  int blocksize = 64;
  std::vector<std::string> skip_modules;

  void add_to(CLI::App& app);
  engine::LoadOptions load_options() const;
};

// Reads a text file that must be UTF-8 (an Error names the file and the
// offset of the first invalid byte).
std::string read_utf8_file(const std::string& path);

}  // namespace lowbit::cli
