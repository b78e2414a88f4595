// Contiguous byte buffers with the allocator that made them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "lowbit/core/device.h"

namespace lowbit {

enum class MemoryKind : uint8_t {
  Host,        // 64-byte aligned heap memory
  PinnedHost,  // page-locked host memory (cudaMallocHost) for async copies
  Cuda,        // device memory (cudaMalloc)
  MappedFile,  // read-only view into an mmap'd file
  Borrowed,    // memory owned by someone else, kept alive by `owner`
};

class Storage {
 public:
  // Allocates `bytes` of the given kind (Host, PinnedHost or Cuda).
  static std::shared_ptr<Storage> allocate(size_t bytes, MemoryKind kind = MemoryKind::Host,
                                           Device device = Device::cpu());
  // Maps a whole file read-only; the mapping lives as long as the Storage.
  static std::shared_ptr<Storage> map_file(const std::filesystem::path& path);
  // Wraps external memory; `owner` (may be null) keeps it alive.
  static std::shared_ptr<Storage> borrow(void* data, size_t bytes, Device device,
                                         std::shared_ptr<void> owner);

  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  MemoryKind kind() const { return kind_; }
  bool writable() const { return kind_ != MemoryKind::MappedFile; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_{};
  MemoryKind kind_ = MemoryKind::Host;
  std::shared_ptr<void> owner_;
};

// GPU memory allocated through Storage (weights, caches, activations; not the
// CUDA context, library workspaces or stream-ordered scratch), over all GPUs:
// in use now and the most in use since the last reset, as PyTorch's
// memory_allocated / max_memory_allocated count it.
struct DeviceMemoryStats {
  uint64_t allocated = 0;
  uint64_t peak = 0;
};
DeviceMemoryStats device_memory_stats();
void reset_device_memory_peak();  // the peak becomes what is allocated now

// Device-aware copy of raw bytes (host<->host, host<->cuda, cuda<->cuda).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

}  // namespace lowbit
