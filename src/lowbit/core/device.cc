#include "lowbit/core/device.h"

#include <charconv>

#include "core/cuda_runtime.h"
#include "lowbit/core/error.h"

namespace lowbit {

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

Device Device::parse(std::string_view text) {
  if (text == "cpu") return cpu();
  if (text == "cuda" || text == "gpu") return cuda(0);
  if (text.starts_with("cuda:")) {
    int idx = -1;
    const auto rest = text.substr(5);
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), idx);
    if (ec == std::errc() && p == rest.data() + rest.size() && idx >= 0) return cuda(idx);
  }
  fail("unknown device '{}': expected cpu, cuda or cuda:N", text);
}

namespace detail {

std::string cuda_kernels_unavailable_message(int device, std::string_view name, int major, int minor,
                                             std::string_view arch_list, std::string_view cause) {
  // "900,1000" -> "9.0, 10.0"
  std::string built_for;
  for (size_t at = 0; at < arch_list.size();) {
    size_t end = arch_list.find(',', at);
    if (end == std::string_view::npos) end = arch_list.size();
    int arch = 0;
    const auto item = arch_list.substr(at, end - at);
    std::from_chars(item.data(), item.data() + item.size(), arch);
    if (!built_for.empty()) built_for += ", ";
    built_for += std::to_string(arch / 100) + "." + std::to_string(arch / 10 % 10);
    at = end + 1;
  }
  return fmt::format(
      "cuda:{} ({}, compute capability {}.{}) cannot run this build of lowbit: its CUDA kernels are built for "
      "compute capability {} (their PTX runs there and on newer GPUs) and use Hopper instructions (programmatic "
      "dependent launch; wgmma and TMA in the tensor-core GEMMs), and the CUDA runtime says: {}. Use a GPU of "
      "compute capability 9.0 or newer, or run on --device cpu.",
      device, name, major, minor, built_for.empty() ? "(unknown)" : built_for, cause);
}

}  // namespace detail

int cuda_device_count() {
#ifdef LOWBIT_WITH_CUDA
  static const int count = detail::cuda_count();
  return count;
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

std::string unavailable_reason(Device device) {
  if (device.is_cpu()) return {};
#ifndef LOWBIT_WITH_CUDA
  return "this build of lowbit has no CUDA support (rebuild with nvcc, or use --device cpu)";
#else
  const int count = cuda_device_count();
  if (count == 0) return "no CUDA GPU is available on this machine (use --device cpu)";
  if (device.index < 0 || device.index >= count)
    return fmt::format("this machine has {} CUDA GPU(s), cuda:0 to cuda:{}", count, count - 1);
  return {};
#endif
}

void require_available(Device device) {
  const std::string reason = unavailable_reason(device);
  if (!reason.empty()) fail("device {}: {}", device.str(), reason);
}

}  // namespace lowbit
