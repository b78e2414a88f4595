#include "lowbit/core/storage.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/cuda_runtime.h"
#include "lowbit/core/bytes.h"
#include "lowbit/core/error.h"

namespace lowbit {

#ifndef LOWBIT_WITH_CUDA
namespace detail {
[[noreturn]] static void no_cuda() { fail("this lowbit was built without CUDA (configure with nvcc present)"); }
int cuda_count() { return 0; }
CudaMemoryInfo cuda_memory_info(int) { no_cuda(); }
int cuda_multiprocessors() { no_cuda(); }
void cuda_use_device(int) { no_cuda(); }
void* cuda_malloc(size_t, int) { no_cuda(); }
void cuda_free(void*, int) {}
void* cuda_malloc_host(size_t) { no_cuda(); }
void cuda_free_host(void*) {}
void cuda_copy(void*, const void*, size_t, int) { no_cuda(); }
void cuda_memset(void*, int, size_t, int) { no_cuda(); }
}  // namespace detail
#endif

namespace {
constexpr size_t kHostAlignment = 64;

std::atomic<uint64_t> device_allocated{0}, device_peak{0};

void count_device_allocation(uint64_t bytes) {
  const uint64_t now = device_allocated.fetch_add(bytes) + bytes;
  uint64_t peak = device_peak.load();
  while (now > peak && !device_peak.compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

DeviceMemoryStats device_memory_stats() { return {device_allocated.load(), device_peak.load()}; }

void reset_device_memory_peak() { device_peak.store(device_allocated.load()); }

std::shared_ptr<Storage> Storage::allocate(size_t bytes, MemoryKind kind, Device device) {
  auto s = std::shared_ptr<Storage>(new Storage());
  s->bytes_ = bytes;
  s->kind_ = kind;
  s->device_ = device;
  const size_t alloc = bytes == 0 ? kHostAlignment : bytes;
  switch (kind) {
    case MemoryKind::Host: {
      const size_t rounded = (alloc + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
      s->data_ = std::aligned_alloc(kHostAlignment, rounded);
      if (!s->data_) fail("out of host memory: could not allocate {} ({} bytes)", bytes_text(bytes), bytes);
      s->owner_ = std::shared_ptr<void>(s->data_, [](void* p) { std::free(p); });
      s->device_ = Device::cpu();
      break;
    }
    case MemoryKind::PinnedHost:
      s->data_ = detail::cuda_malloc_host(alloc);
      s->owner_ = std::shared_ptr<void>(s->data_, [](void* p) { detail::cuda_free_host(p); });
      s->device_ = Device::cpu();
      break;
    case MemoryKind::Cuda: {
      LOWBIT_CHECK(device.is_cuda(), "CUDA memory needs a cuda device, got {}", device.str());
      const int idx = device.index;
      s->data_ = detail::cuda_malloc(alloc, idx);
      count_device_allocation(alloc);
      s->owner_ = std::shared_ptr<void>(s->data_, [idx, alloc](void* p) {
        device_allocated.fetch_sub(alloc);
        detail::cuda_free(p, idx);
      });
      break;
    }
    default:
      fail("Storage::allocate: memory kind must be Host, PinnedHost or Cuda");
  }
  return s;
}

std::shared_ptr<Storage> Storage::map_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(fmt::format("cannot open file: {}", std::strerror(errno)), {path.string(), "", ""});
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("not a regular file", {path.string(), "", ""});
  }
  const size_t size = size_t(st.st_size);
  void* data = nullptr;
  if (size > 0) {
    data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw Error(fmt::format("cannot map file: {}", std::strerror(e)), {path.string(), "", ""});
    }
  }
  ::close(fd);
  auto s = std::shared_ptr<Storage>(new Storage());
  s->data_ = data;
  s->bytes_ = size;
  s->kind_ = MemoryKind::MappedFile;
  s->device_ = Device::cpu();
  if (data) s->owner_ = std::shared_ptr<void>(data, [size](void* p) { ::munmap(p, size); });
  return s;
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t bytes, Device device, std::shared_ptr<void> owner) {
  auto s = std::shared_ptr<Storage>(new Storage());
  s->data_ = data;
  s->bytes_ = bytes;
  s->device_ = device;
  s->kind_ = MemoryKind::Borrowed;
  s->owner_ = std::move(owner);
  return s;
}

Storage::~Storage() = default;

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const int kind = dst_device.is_cpu() ? 2 : (src_device.is_cpu() ? 1 : 3);
  detail::cuda_copy(dst, src, bytes, kind);
}

}  // namespace lowbit
