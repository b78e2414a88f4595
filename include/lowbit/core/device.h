// Where a tensor's bytes live.
#pragma once

#include <string>
#include <string_view>

namespace lowbit {

enum class DeviceKind : uint8_t { CPU, CUDA };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;

  static constexpr Device cpu() { return {DeviceKind::CPU, 0}; }
  static constexpr Device cuda(int index = 0) { return {DeviceKind::CUDA, index}; }
  bool is_cpu() const { return kind == DeviceKind::CPU; }
  bool is_cuda() const { return kind == DeviceKind::CUDA; }
  bool operator==(const Device&) const = default;

  std::string str() const;                     // "cpu", "cuda:0"
  static Device parse(std::string_view text);  // "cpu", "cuda", "cuda:1"
};

// True when lowbit was built with CUDA and at least one device is present.
bool cuda_available();
int cuda_device_count();
// Why this build or machine cannot use `device` (no CUDA support, no GPU, or
// an index past the GPUs present); empty when it can.
std::string unavailable_reason(Device device);
// Throws an Error "device cuda:N: <the reason>" when it cannot.
void require_available(Device device);

}  // namespace lowbit
