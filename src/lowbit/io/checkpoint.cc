#include "lowbit/io/checkpoint.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "lowbit/core/error.h"
#include "lowbit/quant/blockwise.h"

namespace lowbit::io {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void refuse_pickles(const fs::path& dir, const fs::path& bin) {
  throw Error(fmt::format("{} holds PyTorch pickle weights ({}); lowbit reads safetensors only: convert the "
                          "model to model.safetensors (save_pretrained(..., safe_serialization=True))",
                          dir.string(), bin.filename().string()))
      .with_file(bin.string());
}

}  // namespace

CheckpointFiles CheckpointFiles::open(const fs::path& dir) {
  CheckpointFiles c;
  c.dir_ = dir;
  if (!fs::is_directory(dir)) throw Error(fmt::format("{} is not a model directory", dir.string())).with_file(dir.string());
  const fs::path single = dir / "model.safetensors";
  const fs::path index_path = dir / "model.safetensors.index.json";
  std::map<std::string, std::string> expected;  // tensor -> shard, from the index
  std::vector<fs::path> shard_paths;
  if (fs::exists(single)) {
    shard_paths.push_back(single);
  } else if (fs::exists(index_path)) {
    const nlohmann::json index = read_json(index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw Error("the index has no weight_map object").with_file(index_path.string());
    std::set<std::string> seen;
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string())
        throw Error(fmt::format("weight_map entry for {} is not a file name", name)).with_file(index_path.string()).with_tensor(name);
      const std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f == "..")
        throw Error(fmt::format("shard name {} must be a file in the model directory", f)).with_file(index_path.string());
      expected[name] = f;
      if (seen.insert(f).second) {
        if (!fs::exists(dir / f))
          throw Error(fmt::format("shard {} named in the index (for tensor {}) is missing", f, name))
              .with_file((dir / f).string())
              .with_tensor(name);
        shard_paths.push_back(dir / f);
      }
    }
    std::sort(shard_paths.begin(), shard_paths.end());
  } else {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".bin" || e.path().extension() == ".pt" || e.path().extension() == ".pth")
        refuse_pickles(dir, e.path());
    throw Error(fmt::format("no weights in {}: expected model.safetensors or model.safetensors.index.json",
                            dir.string()))
        .with_file(dir.string());
  }
  for (const auto& path : shard_paths) {
    c.shards_.push_back(std::make_shared<SafetensorsReader>(SafetensorsReader::open(path)));
    const SafetensorsReader* r = c.shards_.back().get();
    for (const auto& e : r->entries()) {
      if (c.where_.count(e.name))
        throw Error(fmt::format("tensor {} is in both {} and {}", e.name, c.where_[e.name]->path().filename().string(),
                                path.filename().string()))
            .with_file(path.string())
            .with_tensor(e.name);
      c.where_[e.name] = r;
      c.names_.push_back(e.name);
    }
  }
  for (const auto& [name, file] : expected) {
    auto it = c.where_.find(name);
    if (it == c.where_.end() || it->second->path().filename() != file)
      throw Error(fmt::format("the index puts tensor {} in {}, which does not hold it", name, file))
          .with_file((dir / file).string())
          .with_tensor(name);
  }
  return c;
}

const SafetensorsEntry& CheckpointFiles::entry(const std::string& name) const { return reader_of(name).entry(name); }

const SafetensorsReader& CheckpointFiles::reader_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    throw Error(fmt::format("tensor {} is missing from the checkpoint", name)).with_file(dir_.string()).with_tensor(name);
  return *it->second;
}

Tensor CheckpointFiles::tensor(const std::string& name) const { return reader_of(name).tensor(name); }

uint64_t CheckpointFiles::total_bytes() const {
  uint64_t total = 0;
  for (const auto& s : shards_)
    for (const auto& e : s->entries()) total += e.end - e.begin;
  return total;
}

// ---------------------------------------------------------------------------

Shape LoadedWeight::shape() const {
  switch (format) {
    case Int8Rowwise: return int8.codes.shape();
    case Blockwise4bit: return q4.shape;
    default: return dense.shape();
  }
}

uint64_t LoadedWeight::parameter_bytes() const {
  switch (format) {
    case Int8Rowwise: return int8.codes.nbytes();
    case Blockwise4bit: return packed.nbytes();
    default: return dense.nbytes();
  }
}

std::string LoadedWeight::format_name() const {
  switch (format) {
    case Int8Rowwise: return "int8";
    case Blockwise4bit: return std::string(quant::traits(q4.type).name);
    default: return std::string(dtype_name(dense.dtype()));
  }
}

Tensor LoadedWeight::dequantize(DType dtype) const {
  switch (format) {
    case Int8Rowwise: return quant::int8_vectorwise_dequant(int8.codes, int8.scb, dtype);
    case Blockwise4bit: return quant::dequantize_4bit(packed, q4, dtype);
    default: return dense.dtype() == dtype ? dense : dense.cast(dtype);
  }
}

namespace {

bool module_matches(const std::string& module, const std::string& pattern) {
  if (pattern.empty()) return false;
  if (module == pattern) return true;
  if (module.size() > pattern.size() && module.compare(module.size() - pattern.size(), pattern.size(), pattern) == 0 &&
      module[module.size() - pattern.size() - 1] == '.')
    return true;
  if (module.rfind(pattern + ".", 0) == 0) return true;
  return module.find("." + pattern + ".") != std::string::npos;
}

bool is_embedding(const std::string& module) {
  const std::string last = module.substr(module.rfind('.') + 1);
  return last.find("embed") != std::string::npos || last == "wte" || last == "wpe";
}

}  // namespace

bool is_quantized_linear(const std::string& name, const Shape& shape, const HFConfig& config,
                         const QuantizationConfig& quantization) {
  static const std::string suffix = ".weight";
  if (!quantization.quantizes() || shape.size() != 2) return false;
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  const std::string module = name.substr(0, name.size() - suffix.size());
  if (is_embedding(module)) return false;
  // The output head tied to the embeddings is the embedding matrix.
  if (config.tie_word_embeddings && module_matches(module, "lm_head")) return false;
  for (const auto& skip : quantization.skip_modules())
    if (module_matches(module, skip)) return false;
  return true;
}

uint64_t buffer_bytes(const HFConfig& config) {
  // Rotary embeddings (Llama, Mistral, Qwen2, ...): inv_freq and
  // original_inv_freq, f32 [head_dim / 2] each.
  if (config.head_dim <= 0) return 0;
  double partial = 1.0;
  if (config.raw.contains("partial_rotary_factor") && config.raw["partial_rotary_factor"].is_number())
    partial = config.raw["partial_rotary_factor"].get<double>();
  const uint64_t dim = uint64_t(double(config.head_dim) * partial);
  return 2 * (dim / 2) * sizeof(float);
}

// ---------------------------------------------------------------------------

const LoadedWeight& ModelWeights::get(const std::string& name) const {
  auto it = weights_.find(name);
  if (it == weights_.end())
    throw Error(fmt::format("tensor {} is not in the model", name))
        .with_file(files_ ? files_->dir().string() : std::string())
        .with_tensor(name);
  return it->second;
}

std::vector<std::string> ModelWeights::names() const {
  std::vector<std::string> out;
  for (const auto& [name, w] : weights_) out.push_back(name);
  return out;
}

ModelWeights ModelWeights::load(const fs::path& dir, std::optional<QuantizationConfig> quantize_on_load,
                                std::optional<DType> dtype) {
  ModelWeights m;
  m.config = HFConfig::load(dir);
  m.files_ = std::make_shared<CheckpointFiles>(CheckpointFiles::open(dir));
  const CheckpointFiles& files = *m.files_;
  const bool prequantized = m.config.quantization_config.has_value();
  if (quantize_on_load) quantize_on_load->validate();
  if (prequantized) m.quantization = m.config.quantization_config;
  else if (quantize_on_load && quantize_on_load->quantizes()) m.quantization = quantize_on_load;

  // The dtype of high-precision tensors: asked, else the config's, else the
  // first floating tensor's.
  if (dtype) m.dtype = *dtype;
  else if (m.config.dtype) m.dtype = *m.config.dtype;
  else
    for (const auto& n : files.names())
      if (is_floating(files.entry(n).dtype)) {
        m.dtype = files.entry(n).dtype;
        break;
      }
  LOWBIT_CHECK(m.dtype == DType::F32 || m.dtype == DType::F16 || m.dtype == DType::BF16,
               "dtype must be f32, f16 or bf16, got {}", dtype_name(m.dtype));

  // Side tensors of quantized weights belong to their weight.
  std::set<std::string> side;
  for (const auto& name : files.names()) {
    for (const char* kind : {".quant_state.bitsandbytes__nf4", ".quant_state.bitsandbytes__fp4"}) {
      const auto pos = name.rfind(kind);
      if (pos == std::string::npos || pos + std::string(kind).size() != name.size()) continue;
      const std::string w = name.substr(0, pos);
      for (const char* s : {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"}) side.insert(w + s);
      side.insert(name);
    }
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".SCB") == 0) {
      const std::string module = name.substr(0, name.size() - 4);
      side.insert(name);
      side.insert(module + ".weight_format");
    }
  }
  for (const auto& name : files.names()) {
    if (side.count(name)) continue;
    LoadedWeight w;
    w.name = name;
    const SafetensorsEntry& e = files.entry(name);
    try {
      if (files.contains(name + ".quant_state.bitsandbytes__nf4") ||
          files.contains(name + ".quant_state.bitsandbytes__fp4")) {
        w.format = LoadedWeight::Blockwise4bit;
        w.q4 = quant::QuantState::from_state_dict(name + ".", [&](const std::string& n) { return files.find(n); });
        w.packed = files.tensor(name);
        LOWBIT_CHECK(w.packed.dtype() == DType::U8 && uint64_t(w.packed.numel()) == uint64_t(w.q4.numel() + 1) / 2,
                     "4-bit weight {} is {}, expected u8 with {} bytes for shape {}", name, w.packed.describe(),
                     (w.q4.numel() + 1) / 2, shape_str(w.q4.shape));
      } else if (e.dtype == DType::I8) {
        const std::string module = name.size() > 7 ? name.substr(0, name.size() - 7) : name;
        w.format = LoadedWeight::Int8Rowwise;
        w.int8.codes = files.tensor(name);
        LOWBIT_CHECK(w.int8.codes.ndim() == 2, "int8 weight {} must be 2-D, got {}", name, w.int8.codes.describe());
        if (!files.contains(module + ".SCB"))
          throw Error(fmt::format("int8 weight {} has no {}.SCB", name, module)).with_tensor(module + ".SCB");
        w.int8.scb = files.tensor(module + ".SCB");
        LOWBIT_CHECK(w.int8.scb.dtype() == DType::F32 && w.int8.scb.numel() == w.int8.codes.dim(0),
                     "{}.SCB must be f32 [{}], got {}", module, w.int8.codes.dim(0), w.int8.scb.describe());
      } else {
        w = m.convert_dense(name, files.tensor(name), !prequantized);
      }
    } catch (const Error& err) {
      throw err.with_file(files.reader_of(name).path().string()).with_tensor(name);
    }
    m.weights_.emplace(name, std::move(w));
  }
  return m;
}

LoadedWeight ModelWeights::convert_dense(const std::string& name, const Tensor& t, bool may_quantize) const {
  LoadedWeight w;
  w.name = name;
  const bool cast = is_floating(t.dtype()) && t.dtype() != dtype;
  if (may_quantize && quantization && is_quantized_linear(name, t.shape(), config, *quantization)) {
    if (quantization->load_in_8bit) {
      w.format = LoadedWeight::Int8Rowwise;
      // bitsandbytes' Int8Params quantizes the f16 weight.
      w.int8 = quant::quantize_int8_rowwise(t.dtype() == DType::F16 ? t : t.cast(DType::F16));
    } else {
      w.format = LoadedWeight::Blockwise4bit;
      w.packed = quant::quantize_4bit(cast ? t.cast(dtype) : t, quantization->quant_type(), 64,
                                      quantization->bnb_4bit_use_double_quant, w.q4);
    }
  } else {
    w.dense = cast ? t.cast(dtype) : t;
  }
  return w;
}

ModelWeights ModelWeights::from_source(HFConfig config, const TensorSource& source,
                                       std::optional<QuantizationConfig> quantize_on_load, std::optional<DType> dtype) {
  ModelWeights m;
  m.config = std::move(config);
  if (quantize_on_load) quantize_on_load->validate();
  if (quantize_on_load && quantize_on_load->quantizes()) m.quantization = quantize_on_load;
  if (dtype) m.dtype = *dtype;
  else if (m.config.dtype) m.dtype = *m.config.dtype;
  else if (!source.entries.empty()) m.dtype = source.entries.front().dtype;
  LOWBIT_CHECK(m.dtype == DType::F32 || m.dtype == DType::F16 || m.dtype == DType::BF16,
               "dtype must be f32, f16 or bf16, got {}", dtype_name(m.dtype));
  for (const auto& e : source.entries) {
    const Tensor t = source.make(e);
    LOWBIT_CHECK(t.shape() == e.shape, "tensor source: {} is {}, expected shape {}", e.name, t.describe(),
                 shape_str(e.shape));
    m.weights_.emplace(e.name, m.convert_dense(e.name, t, true));
  }
  return m;
}

Footprint ModelWeights::footprint() const {
  Footprint f;
  for (const auto& [name, w] : weights_) {
    FootprintEntry e;
    e.name = name;
    e.format = w.format_name();
    e.shape = w.shape();
    e.parameters = w.numel();
    e.bytes = w.parameter_bytes();
    f.parameters += e.parameters;
    f.parameter_bytes += e.bytes;
    f.entries.push_back(std::move(e));
  }
  f.buffer_bytes = buffer_bytes(config);
  f.total_bytes = f.parameter_bytes + f.buffer_bytes;
  return f;
}

}  // namespace lowbit::io
