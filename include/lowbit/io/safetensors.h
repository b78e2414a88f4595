// safetensors files: a validated, zero-copy reader and an atomic writer.
//
// Format: 8-byte little-endian header length N, N bytes of JSON (tensor name ->
// {dtype, shape, data_offsets}, plus an optional "__metadata__" string map),
// then the data. The reader checks everything before handing out a view:
// sizes, offsets (in range, no overlap, no holes), dtypes, shapes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "lowbit/core/tensor.h"

namespace lowbit::io {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

using Metadata = std::map<std::string, std::string>;

class SafetensorsReader {
 public:
  // Maps and validates the file; throws Error naming the file (and tensor).
  static SafetensorsReader open(const std::filesystem::path& path);
  // Validates an in-memory image (used by tests and the fuzzer).
  static SafetensorsReader from_buffer(std::shared_ptr<Storage> buffer, std::string label);

  const std::filesystem::path& path() const { return path_; }
  // Tensors in data order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  // Zero-copy view into the mapped file.
  Tensor tensor(const std::string& name) const;
  const Metadata& metadata() const { return metadata_; }
  uint64_t file_size() const;

 private:
  std::filesystem::path path_;
  std::shared_ptr<Storage> file_;
  uint64_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  Metadata metadata_;
};

// Streaming writer: declare every tensor first, then write their bytes in the
// declared order; commit() renames the temporary file into place. Nothing is
// left at `path` unless commit() succeeds.
class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(std::filesystem::path path, Metadata metadata = {});
  ~SafetensorsWriter();  // removes the temporary file if not committed
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  void declare(const std::string& name, DType dtype, const Shape& shape);
  // Writes the next declared tensor's bytes (host memory, exact size).
  void write(const std::string& name, const void* data, size_t bytes);
  void write(const std::string& name, const Tensor& tensor);
  void commit();

  // Bytes the file will have once complete (valid after the declarations).
  uint64_t planned_size() const;

 private:
  void open_temp();
  std::filesystem::path path_, temp_path_;
  Metadata metadata_;
  std::vector<SafetensorsEntry> entries_;
  size_t next_ = 0;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes all tensors at once (host tensors; data order = given order).
void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const Metadata& metadata = {});

}  // namespace lowbit::io
