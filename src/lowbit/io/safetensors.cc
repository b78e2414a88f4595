#include "lowbit/io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "lowbit/core/error.h"

namespace lowbit::io {
namespace {

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we, which
// also bounds the work a hostile file can cause.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

[[noreturn]] void bad_file(const std::string& label, const std::string& tensor, const std::string& what) {
  throw Error("invalid safetensors file: " + what, {label, tensor, ""});
}

uint64_t read_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

SafetensorsEntry parse_entry(const std::string& label, const std::string& name, const json& j) {
  if (!j.is_object()) bad_file(label, name, "entry is not an object");
  SafetensorsEntry e;
  e.name = name;
  auto dt = j.find("dtype");
  if (dt == j.end() || !dt->is_string()) bad_file(label, name, "missing string field 'dtype'");
  if (!parse_safetensors_dtype(dt->get_ref<const std::string&>(), e.dtype))
    bad_file(label, name,
             "unsupported dtype '" + dt->get<std::string>() + "' (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)");
  auto sh = j.find("shape");
  if (sh == j.end() || !sh->is_array()) bad_file(label, name, "missing array field 'shape'");
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
      bad_file(label, name, "shape has a dimension that is not a non-negative integer");
    const uint64_t v = d.get<uint64_t>();
    if (v != 0 && numel > std::numeric_limits<uint64_t>::max() / v) bad_file(label, name, "shape overflows");
    numel *= v;
    e.shape.push_back(int64_t(v));
    if (v > uint64_t(std::numeric_limits<int64_t>::max())) bad_file(label, name, "shape dimension too large");
  }
  auto off = j.find("data_offsets");
  if (off == j.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    bad_file(label, name, "data_offsets must be two non-negative integers");
  e.begin = (*off)[0].get<uint64_t>();
  e.end = (*off)[1].get<uint64_t>();
  if (e.begin > e.end) bad_file(label, name, "data_offsets begin after they end");
  const uint64_t elem = element_size(e.dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / elem) bad_file(label, name, "byte size overflows");
  if (e.end - e.begin != numel * elem)
    bad_file(label, name,
             fmt::format("data_offsets span {} bytes but {} {} needs {}", e.end - e.begin, dt->get<std::string>(),
                         shape_str(e.shape), numel * elem));
  return e;
}

}  // namespace

SafetensorsReader SafetensorsReader::open(const std::filesystem::path& path) {
  std::shared_ptr<Storage> file;
  try {
    file = Storage::map_file(path);
  } catch (const Error& e) {
    throw e.with_file(path.string());
  }
  SafetensorsReader r = from_buffer(std::move(file), path.string());
  r.path_ = path;
  return r;
}

SafetensorsReader SafetensorsReader::from_buffer(std::shared_ptr<Storage> buffer, std::string label) {
  SafetensorsReader r;
  r.path_ = label;
  r.file_ = std::move(buffer);
  const uint64_t size = r.file_->bytes();
  const auto* bytes = static_cast<const unsigned char*>(r.file_->data());
  if (size < 8) bad_file(label, "", fmt::format("file is {} bytes, shorter than the 8-byte header length", size));
  const uint64_t n = read_le64(bytes);
  if (n > kMaxHeaderBytes) bad_file(label, "", fmt::format("header length {} exceeds the 100 MB limit", n));
  if (n > size - 8)
    bad_file(label, "", fmt::format("header length {} runs past the end of the file ({} bytes)", n, size));
  r.data_start_ = 8 + n;
  const uint64_t data_size = size - r.data_start_;

  json header;
  try {
    header = json::parse(reinterpret_cast<const char*>(bytes + 8), reinterpret_cast<const char*>(bytes + 8 + n));
  } catch (const json::exception& e) {
    bad_file(label, "", std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) bad_file(label, "", "header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) bad_file(label, "__metadata__", "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) bad_file(label, "__metadata__", "metadata value for '" + m.key() + "' is not a string");
        r.metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    r.entries_.push_back(parse_entry(label, it.key(), *it));
  }

  std::sort(r.entries_.begin(), r.entries_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (const auto& e : r.entries_) {
    if (e.end > data_size)
      bad_file(label, e.name,
               fmt::format("data_offsets [{}, {}] run past the end of the data ({} bytes; file truncated?)", e.begin,
                           e.end, data_size));
    if (e.begin < expected) bad_file(label, e.name, fmt::format("data overlaps the previous tensor at byte {}", e.begin));
    if (e.begin > expected) bad_file(label, e.name, fmt::format("gap in the data before byte {}", e.begin));
    expected = e.end;
  }
  if (expected != data_size)
    bad_file(label, "", fmt::format("data section is {} bytes but the tensors cover {}", data_size, expected));
  for (size_t i = 0; i < r.entries_.size(); ++i) r.index_[r.entries_[i].name] = i;
  return r;
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.name);
  return out;
}

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error("tensor not found in checkpoint", {path_.string(), name, ""});
  return entries_[it->second];
}

Tensor SafetensorsReader::tensor(const std::string& name) const {
  const auto& e = entry(name);
  return Tensor::view(file_, size_t(data_start_ + e.begin), e.shape, e.dtype);
}

uint64_t SafetensorsReader::file_size() const { return file_->bytes(); }

// ---------------------------------------------------------------------------

namespace {

std::string header_json(const std::vector<SafetensorsEntry>& entries, const Metadata& metadata) {
  // Keys in data order after __metadata__, each entry as dtype, shape,
  // data_offsets: the reference writer's exact header.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  for (const auto& e : entries) {
    nlohmann::ordered_json s = nlohmann::ordered_json::array();
    for (auto d : e.shape) s.push_back(d);
    h[e.name] = {{"dtype", std::string(safetensors_dtype_name(e.dtype))}, {"shape", s}, {"data_offsets", {e.begin, e.end}}};
  }
  std::string text = h.dump();
  // Pad with spaces so that the data starts 8-byte aligned, as the reference writer does.
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');
  return text;
}

void write_all(int fd, const void* data, size_t bytes, const std::string& label) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(bytes, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(fmt::format("write failed: {}", std::strerror(errno)), {label, "", ""});
    }
    p += w;
    bytes -= size_t(w);
  }
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path, Metadata metadata)
    : path_(std::move(path)), metadata_(std::move(metadata)) {}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_path_.empty()) {
    std::error_code ec;
    std::filesystem::remove(temp_path_, ec);
  }
}

void SafetensorsWriter::declare(const std::string& name, DType dtype, const Shape& shape) {
  LOWBIT_CHECK(fd_ < 0, "safetensors writer: declare '{}' after writing began", name);
  LOWBIT_CHECK(name != "__metadata__", "safetensors writer: '__metadata__' is not a tensor name");
  for (const auto& e : entries_)
    if (e.name == name) throw Error("tensor declared twice", {path_.string(), name, ""});
  SafetensorsEntry e;
  e.name = name;
  if (dtype == DType::U4) throw Error("packed 4-bit data is stored as U8 with its own shape", {path_.string(), name, ""});
  e.dtype = dtype;
  e.shape = shape;
  e.begin = entries_.empty() ? 0 : entries_.back().end;
  e.end = e.begin + storage_bytes(dtype, size_t(shape_numel(shape)));
  entries_.push_back(std::move(e));
}

uint64_t SafetensorsWriter::planned_size() const {
  return 8 + header_json(entries_, metadata_).size() + (entries_.empty() ? 0 : entries_.back().end);
}

void SafetensorsWriter::open_temp() {
  temp_path_ = path_;
  temp_path_ += ".tmp-" + std::to_string(::getpid());
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int e = errno;
    temp_path_.clear();
    throw Error(fmt::format("cannot create output file: {}", std::strerror(e)), {path_.string(), "", ""});
  }
  const std::string header = header_json(entries_, metadata_);
  unsigned char len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = (unsigned char)((n >> (8 * i)) & 0xff);
  write_all(fd_, len, 8, path_.string());
  write_all(fd_, header.data(), header.size(), path_.string());
}

void SafetensorsWriter::write(const std::string& name, const void* data, size_t bytes) {
  LOWBIT_CHECK(!committed_, "safetensors writer: write after commit");
  if (fd_ < 0) open_temp();
  if (next_ >= entries_.size() || entries_[next_].name != name)
    throw Error(fmt::format("tensors must be written in declared order; expected '{}'",
                            next_ < entries_.size() ? entries_[next_].name : "<none>"),
                {path_.string(), name, ""});
  const auto& e = entries_[next_];
  if (bytes != e.end - e.begin)
    throw Error(fmt::format("wrote {} bytes, declared {}", bytes, e.end - e.begin), {path_.string(), name, ""});
  write_all(fd_, data, bytes, path_.string());
  ++next_;
}

void SafetensorsWriter::write(const std::string& name, const Tensor& tensor) {
  LOWBIT_CHECK(tensor.device().is_cpu(), "safetensors writer: tensor '{}' must be on the host", name);
  write(name, tensor.raw_data(), tensor.nbytes());
}

void SafetensorsWriter::commit() {
  if (fd_ < 0) open_temp();
  if (next_ != entries_.size())
    throw Error(fmt::format("commit with {} of {} tensors written", next_, entries_.size()), {path_.string(), "", ""});
  if (::fsync(fd_) != 0 && errno != EINVAL)
    throw Error(fmt::format("fsync failed: {}", std::strerror(errno)), {path_.string(), "", ""});
  ::close(fd_);
  fd_ = -1;
  std::error_code ec;
  std::filesystem::rename(temp_path_, path_, ec);
  if (ec) throw Error("cannot move the finished file into place: " + ec.message(), {path_.string(), "", ""});
  committed_ = true;
}

void save_safetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const Metadata& metadata) {
  SafetensorsWriter w(path, metadata);
  for (const auto& [name, t] : tensors) w.declare(name, t.dtype(), t.shape());
  for (const auto& [name, t] : tensors) w.write(name, t);
  w.commit();
}

}  // namespace lowbit::io
