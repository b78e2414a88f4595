// Model directory to model directory: quantize a dense checkpoint into the
// layout transformers + bitsandbytes write, or dequantize one back.
//
// Streaming: tensors are read from the mapped input one at a time, converted
// and written; the pages of the input are released after each, so peak
// memory follows the largest tensor, not the model. Output goes to a
// temporary directory beside OUT that is renamed into place at the end:
// an error leaves no partial output.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "lowbit/core/dtype.h"
#include "lowbit/io/quant_config.h"

namespace lowbit::io {

// Called after each tensor: bytes of input done, total, the tensor's name.
using ProgressFn = std::function<void(uint64_t done, uint64_t total, const std::string& name)>;

constexpr uint64_t kDefaultMaxShardSize = 5'000'000'000ull;  // transformers' "5GB"

struct ConvertOptions {
  // dtype of the tensors kept in high precision (and of the 4-bit quant
  // state's dtype); unset = the checkpoint's.
  std::optional<DType> dtype;
  uint64_t max_shard_size = kDefaultMaxShardSize;
  ProgressFn progress;
};

struct ConvertResult {
  int shards = 0;
  int quantized = 0;        // linear weights converted
  uint64_t bytes_written = 0;
};

// Quantizes the linear weights that `config` selects (is_quantized_linear);
// writes config.json with the quantization_config block and dtype, and
// passes generation_config.json and tokenizer files through.
ConvertResult quantize_checkpoint(const std::filesystem::path& in, const std::filesystem::path& out,
                                  const QuantizationConfig& config, const ConvertOptions& options = {});

// Writes every weight dense in options.dtype (default: the checkpoint's
// dtype) and config.json without quantization_config.
ConvertResult dequantize_checkpoint(const std::filesystem::path& in, const std::filesystem::path& out,
                                    const ConvertOptions& options = {});

// "5GB", "500MB", "2GiB", "1000000" (bytes), as transformers parses max_shard_size.
uint64_t parse_size(const std::string& text);

}  // namespace lowbit::io
