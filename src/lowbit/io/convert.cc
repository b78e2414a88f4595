#include "lowbit/io/convert.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>

#include <fmt/format.h>

#include "lowbit/core/error.h"
#include "lowbit/io/checkpoint.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/int8.h"

namespace lowbit::io {

namespace fs = std::filesystem;

namespace {

// One tensor of the output; `produce` computes its bytes when it is written.
struct OutputTensor {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::function<Tensor()> produce;
  uint64_t bytes() const { return storage_bytes(dtype, size_t(shape_numel(shape))); }
};

// The outputs of one input weight stay in one shard.
struct OutputGroup {
  std::vector<OutputTensor> tensors;
  uint64_t bytes() const {
    uint64_t b = 0;
    for (const auto& t : tensors) b += t.bytes();
    return b;
  }
};

// The reference writer orders data by dtype (widest first, in its enum
// order), then by name; lowbit writes the same order so files match byte
// for byte.
int dtype_rank(DType d) {
  switch (d) {
    case DType::Bool: return 0;
    case DType::U8: return 4;
    case DType::I8: return 5;
    case DType::I16: return 9;
    case DType::F16: return 11;
    case DType::BF16: return 12;
    case DType::I32: return 13;
    case DType::F32: return 15;
    case DType::F64: return 16;
    case DType::I64: return 17;
    default: return 1;
  }
}

// Drops the mapped input pages of a tensor already converted: they are clean
// file pages, so the kernel reads them again if ever needed, and the
// process's resident size stays near one tensor.
void release_pages(const Tensor& view) {
  if (!view.defined() || view.nbytes() == 0) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(view.raw_data()) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(view.raw_data()) + view.nbytes()) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

class OutputDirectory {
 public:
  explicit OutputDirectory(fs::path out) : out_(std::move(out)) {
    if (out_.filename().empty()) out_ = out_.parent_path();
    std::error_code ec;
    if (fs::exists(out_, ec)) {
      if (!fs::is_directory(out_)) throw Error("the output exists and is not a directory").with_file(out_.string());
      if (!fs::is_empty(out_)) throw Error("the output directory exists and is not empty").with_file(out_.string());
    }
    temp_ = out_.parent_path() / fmt::format(".{}.lowbit-tmp-{}", out_.filename().string(), ::getpid());
    fs::remove_all(temp_, ec);
    fs::create_directories(temp_, ec);
    if (ec || ::access(temp_.c_str(), W_OK) != 0)
      throw Error(fmt::format("cannot write the output directory {}: {}", out_.string(),
                              ec ? ec.message() : std::string("permission denied")))
          .with_file(out_.string());
  }
  ~OutputDirectory() {
    std::error_code ec;
    if (!committed_) fs::remove_all(temp_, ec);
  }
  const fs::path& temp() const { return temp_; }
  void commit() {
    std::error_code ec;
    if (fs::exists(out_)) fs::remove(out_, ec);  // empty, checked above
    fs::rename(temp_, out_, ec);
    if (ec) throw Error(fmt::format("cannot move the output into place: {}", ec.message())).with_file(out_.string());
    committed_ = true;
  }

 private:
  fs::path out_, temp_;
  bool committed_ = false;
};

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) throw Error("cannot write the file").with_file(path.string());
}

// Writes the groups into shards of at most max_shard_size bytes (a group
// larger than that gets a shard of its own), with an index when there is
// more than one shard, as transformers' save_pretrained names them.
ConvertResult write_shards(const fs::path& dir, const std::vector<OutputGroup>& groups, uint64_t max_shard_size,
                           const ProgressFn& progress) {
  std::vector<std::vector<const OutputTensor*>> shards(1);
  uint64_t current = 0, total = 0;
  for (const auto& g : groups) {
    const uint64_t b = g.bytes();
    if (current > 0 && current + b > max_shard_size) {
      shards.emplace_back();
      current = 0;
    }
    for (const auto& t : g.tensors) shards.back().push_back(&t);
    current += b;
    total += b;
  }
  ConvertResult result;
  result.shards = int(shards.size());
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t done = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    auto& tensors = shards[s];
    std::sort(tensors.begin(), tensors.end(), [](const OutputTensor* a, const OutputTensor* b) {
      const int ra = dtype_rank(a->dtype), rb = dtype_rank(b->dtype);
      return ra != rb ? ra > rb : a->name < b->name;
    });
    const std::string file = shards.size() == 1 ? "model.safetensors"
                                                : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
    SafetensorsWriter writer(dir / file, {{"format", "pt"}});
    for (const auto* t : tensors) writer.declare(t->name, t->dtype, t->shape);
    for (const auto* t : tensors) {
      const Tensor data = t->produce();
      if (data.dtype() != t->dtype || data.shape() != t->shape)
        throw Error(fmt::format("internal: {} came out as {}, planned {} {}", t->name, data.describe(),
                                dtype_name(t->dtype), shape_str(t->shape)))
            .with_tensor(t->name);
      writer.write(t->name, data);
      if (data.storage() && data.storage()->kind() == MemoryKind::MappedFile) release_pages(data);
      weight_map[t->name] = file;
      done += t->bytes();
      if (progress) progress(done, total, t->name);
    }
    writer.commit();
    result.bytes_written += writer.planned_size();
  }
  if (shards.size() > 1) {
    nlohmann::json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = weight_map;
    write_text(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  return result;
}

// config.json as transformers writes it (sorted keys, two-space indent),
// with the dtype of the written tensors.
void write_config(const fs::path& in, const fs::path& dir, DType dtype, const QuantizationConfig* quantization) {
  nlohmann::json config = read_json(in / "config.json");
  const char* key = config.contains("torch_dtype") && !config.contains("dtype") ? "torch_dtype" : "dtype";
  config[key] = torch_dtype_name(dtype);
  if (quantization) config["quantization_config"] = quantization->to_json();
  else config.erase("quantization_config");
  write_text(dir / "config.json", config.dump(2) + "\n");
}

// generation_config.json, tokenizer files and the like pass through.
void copy_other_files(const fs::path& in, const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(in)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    const std::string ext = e.path().extension().string();
    if (name == "config.json" || name == "model.safetensors.index.json" || name.empty() || name[0] == '.' ||
        ext == ".safetensors" || ext == ".bin" || ext == ".pt" || ext == ".pth")
      continue;
    std::error_code ec;
    fs::copy_file(e.path(), dir / name, ec);
    if (ec) throw Error(fmt::format("cannot copy {}: {}", name, ec.message())).with_file(e.path().string());
  }
}

DType checkpoint_dtype(const HFConfig& config, const CheckpointFiles& files, const ConvertOptions& options) {
  if (options.dtype) return *options.dtype;
  if (config.dtype) return *config.dtype;
  for (const auto& n : files.names())
    if (is_floating(files.entry(n).dtype)) return files.entry(n).dtype;
  return DType::F32;
}

Tensor scalar_u8(uint8_t value) {
  Tensor t = Tensor::empty(Shape{}, DType::U8);
  *t.data<uint8_t>() = value;
  return t;
}

}  // namespace

ConvertResult quantize_checkpoint(const fs::path& in, const fs::path& out, const QuantizationConfig& config,
                                  const ConvertOptions& options) {
  config.validate();
  const HFConfig hf = HFConfig::load(in);
  if (hf.quantization_config)
    throw Error(fmt::format("{} is already quantized (config.json has a quantization_config); dequantize it first",
                            in.string()))
        .with_file((in / "config.json").string());
  const auto files = std::make_shared<CheckpointFiles>(CheckpointFiles::open(in));
  const DType dtype = checkpoint_dtype(hf, *files, options);
  LOWBIT_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16,
               "--dtype must be f32, f16 or bf16, got {}", dtype_name(dtype));
  OutputDirectory dir(out);

  std::vector<OutputGroup> groups;
  int quantized = 0;
  for (const auto& name : files->names()) {
    const SafetensorsEntry& e = files->entry(name);
    const std::string file = files->reader_of(name).path().string();
    OutputGroup g;
    auto source = [files, name] { return files->tensor(name); };
    try {
      if (!is_floating(e.dtype)) {
        g.tensors.push_back({name, e.dtype, e.shape, source});
      } else if (!is_quantized_linear(name, e.shape, hf, config)) {
        // Same dtype: written straight from the mapped file (pages released
        // after the write).
        g.tensors.push_back({name, dtype, e.shape, [source, dtype] {
                               const Tensor t = source();
                               if (t.dtype() == dtype) return t;
                               Tensor r = t.cast(dtype);
                               release_pages(t);
                               return r;
                             }});
      } else if (config.load_in_8bit) {
        // bitsandbytes' Int8Params quantizes the f16 weight. The SCB is
        // written before the codes (dtype order), so the codes are computed
        // again when their turn comes: memory stays at one tensor.
        auto codes = [source] {
          const Tensor t = source();
          quant::Int8RowwiseWeight q = quant::quantize_int8_rowwise(t.dtype() == DType::F16 ? t : t.cast(DType::F16));
          release_pages(t);
          return q;
        };
        const Tensor scb = codes().scb;
        const std::string module = name.substr(0, name.size() - 7);
        g.tensors.push_back({name, DType::I8, e.shape, [codes] { return codes().codes; }});
        g.tensors.push_back({module + ".SCB", DType::F32, scb.shape(), [scb] { return scb; }});
        g.tensors.push_back({module + ".weight_format", DType::U8, Shape{}, [] { return scalar_u8(0); }});
        ++quantized;
      } else {
        const quant::QuantType type = config.quant_type();
        const bool nested = config.bnb_4bit_use_double_quant;
        auto run = [source, dtype, type, nested](quant::QuantState& state) {
          const Tensor t = source();
          Tensor packed = quant::quantize_4bit(t.dtype() == dtype ? t : t.cast(dtype), type, 64, nested, state);
          release_pages(t);
          return packed;
        };
        quant::QuantState state;
        const Tensor packed = run(state);
        g.tensors.push_back({name, DType::U8, packed.shape(), [run] {
                               quant::QuantState s;
                               return run(s);
                             }});
        for (auto& [key, t] : state.to_state_dict(name + "."))
          g.tensors.push_back({key, t.dtype(), t.shape(), [t = t] { return t; }});
        ++quantized;
      }
    } catch (const Error& err) {
      throw err.with_file(file).with_tensor(name);
    }
    groups.push_back(std::move(g));
  }
  ConvertResult result = write_shards(dir.temp(), groups, options.max_shard_size, options.progress);
  result.quantized = quantized;
  write_config(in, dir.temp(), dtype, &config);
  copy_other_files(in, dir.temp());
  dir.commit();
  return result;
}

ConvertResult dequantize_checkpoint(const fs::path& in, const fs::path& out, const ConvertOptions& options) {
  const auto weights = std::make_shared<ModelWeights>(ModelWeights::load(in));
  const DType dtype = options.dtype.value_or(weights->dtype);
  LOWBIT_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16,
               "--dtype must be f32, f16 or bf16, got {}", dtype_name(dtype));
  OutputDirectory dir(out);
  std::vector<OutputGroup> groups;
  for (const auto& name : weights->names()) {
    const LoadedWeight& w = weights->get(name);
    const bool floating = w.format != LoadedWeight::Dense || is_floating(w.dense.dtype());
    OutputGroup g;
    g.tensors.push_back({name, floating ? dtype : w.dense.dtype(), w.shape(), [weights, name, dtype, floating] {
                           const LoadedWeight& lw = weights->get(name);
                           return floating ? lw.dequantize(dtype) : lw.dense;
                         }});
    groups.push_back(std::move(g));
  }
  ConvertResult result = write_shards(dir.temp(), groups, options.max_shard_size, options.progress);
  write_config(in, dir.temp(), dtype, nullptr);
  copy_other_files(in, dir.temp());
  dir.commit();
  return result;
}

uint64_t parse_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  std::string unit = text.substr(i);
  for (auto& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  double value = 0;
  try {
    value = i > 0 ? std::stod(text.substr(0, i)) : -1;
  } catch (...) {
    value = -1;
  }
  static const std::pair<const char*, double> units[] = {
      {"", 1.0},     {"B", 1.0},           {"KB", 1e3},          {"MB", 1e6},           {"GB", 1e9},
      {"TB", 1e12},  {"KIB", 1024.0},      {"MIB", 1048576.0},   {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}};
  for (const auto& [name, scale] : units)
    if (unit == name && value > 0) return uint64_t(value * scale);
  throw Error(fmt::format("size \"{}\" is not understood: expected a number of bytes or e.g. 5GB, 500MB, 2GiB", text))
      .with_option("--max-shard-size");
}

}  // namespace lowbit::io
