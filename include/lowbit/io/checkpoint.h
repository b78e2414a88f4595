// Model directories in the Hugging Face layout: config.json plus
// model.safetensors, or shards listed by model.safetensors.index.json.
// Dense, LLM.int8 and 4-bit checkpoints, as lowbit or transformers +
// bitsandbytes write them; dense linear weights quantized on load on request.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/core/tensor.h"
#include "lowbit/io/hf_config.h"
#include "lowbit/io/quant_config.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/quant/int8.h"
#include "lowbit/quant/quant_state.h"

namespace lowbit::io {

// The safetensors files of a model directory, opened and validated: every
// shard the index names exists and holds the tensors the index puts there;
// no tensor is in two shards. PyTorch .bin pickles are refused.
class CheckpointFiles {
 public:
  static CheckpointFiles open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  // Every tensor, shard by shard, each shard in data order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  const SafetensorsReader& reader_of(const std::string& name) const;
  // Zero-copy view into the mapped shard; Error naming the tensor when missing.
  Tensor tensor(const std::string& name) const;
  // The tensor or an undefined one.
  Tensor find(const std::string& name) const { return contains(name) ? tensor(name) : Tensor{}; }
  const std::vector<std::shared_ptr<SafetensorsReader>>& shards() const { return shards_; }
  uint64_t total_bytes() const;  // data bytes of all tensors

 private:
  std::filesystem::path dir_;
  std::vector<std::shared_ptr<SafetensorsReader>> shards_;
  std::vector<std::string> names_;
  std::map<std::string, const SafetensorsReader*> where_;
};

struct LoadedWeight {
  enum Format { Dense, Int8Rowwise, Blockwise4bit };
  std::string name;             // e.g. "model.layers.0.mlp.up_proj.weight"
  Format format = Dense;
  Tensor dense;                 // Dense: in the model dtype (a view of the file when it matches)
  quant::Int8RowwiseWeight int8;
  Tensor packed;                // Blockwise4bit: u8 [ceil(n/2), 1]
  quant::QuantState q4;

  Shape shape() const;          // the logical (unquantized) shape
  int64_t numel() const { return shape_numel(shape()); }
  // Bytes as transformers' get_memory_footprint counts them: the parameter
  // only (int8 codes, packed 4-bit bytes), not SCB or the quant state.
  uint64_t parameter_bytes() const;
  std::string format_name() const;  // "f32", "bf16", "int8", "nf4", "fp4"
  // The weight as a dense tensor of `dtype` (default: the model's).
  Tensor dequantize(DType dtype) const;
};

struct FootprintEntry {
  std::string name;
  std::string format;
  Shape shape;
  int64_t parameters = 0;
  uint64_t bytes = 0;
};

// transformers' get_memory_footprint(): parameters plus buffers (the rotary
// inv_freq and original_inv_freq, f32), each tensor once (tied weights too).
struct Footprint {
  std::vector<FootprintEntry> entries;  // one per weight, sorted by name
  int64_t parameters = 0;               // logical (unquantized) parameter count
  uint64_t parameter_bytes = 0;
  uint64_t buffer_bytes = 0;
  uint64_t total_bytes = 0;
};

// Whether `name` (a tensor of `shape`) is the weight of a linear layer that
// the quantization config converts: 2-D, ".weight", not an embedding, not the
// output head when tied, not matched by the skip list (default: lm_head).
bool is_quantized_linear(const std::string& name, const Shape& shape, const HFConfig& config,
                         const QuantizationConfig& quantization);

// Tensors made on request instead of read from files (random weights of a
// model's shape, engine/synthetic_weights.h). The loader asks for each entry
// once, in order, and keeps only what it converts it to, so a quantized model
// never holds more than one dense tensor at a time.
struct TensorSource {
  struct Entry {
    std::string name;
    Shape shape;
    DType dtype = DType::F32;
  };
  std::vector<Entry> entries;
  std::function<Tensor(const Entry&)> make;
};

class ModelWeights {
 public:
  HFConfig config;
  // The checkpoint's quantization_config, or the one applied on load.
  std::optional<QuantizationConfig> quantization;
  DType dtype = DType::F32;  // dtype of the high-precision tensors

  bool contains(const std::string& name) const { return weights_.count(name) != 0; }
  const LoadedWeight& get(const std::string& name) const;
  // Logical weight names (quantization side tensors such as SCB or absmax are
  // part of their weight), sorted.
  std::vector<std::string> names() const;

  // `dtype`: unset = the checkpoint's (config dtype, else the tensors').
  // A dense checkpoint is quantized on load when `quantize_on_load` asks for
  // it; an already quantized checkpoint is read as it is.
  static ModelWeights load(const std::filesystem::path& dir,
                           std::optional<QuantizationConfig> quantize_on_load = {},
                           std::optional<DType> dtype = {});

  // The same from tensors that are not in files (dense only); `config` is
  // what config.json would hold.
  static ModelWeights from_source(HFConfig config, const TensorSource& source,
                                  std::optional<QuantizationConfig> quantize_on_load = {},
                                  std::optional<DType> dtype = {});

  Footprint footprint() const;

 private:
  // A floating tensor as the model keeps it: in `dtype`, or quantized when it
  // is a linear weight the quantization config converts and `may_quantize`.
  LoadedWeight convert_dense(const std::string& name, const Tensor& t, bool may_quantize) const;

  std::map<std::string, LoadedWeight> weights_;
  std::shared_ptr<CheckpointFiles> files_;
};

// Buffers transformers registers besides the parameters (rotary inv_freq and
// original_inv_freq): bytes counted by get_memory_footprint.
uint64_t buffer_bytes(const HFConfig& config);

}  // namespace lowbit::io
