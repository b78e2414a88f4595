// A value kept for each CUDA device (include from .cu only).
#pragma once

#include <cuda_runtime.h>

#include <mutex>

#include "lowbit/core/cuda_check.h"

namespace lowbit::detail {

// Made by the first get() with a device current and kept for that device: an
// SM count, a kernel's attributes and its occupancy belong to a device, so a
// process that uses several GPUs asks for them on each. A make() that throws
// is tried again by the next get(); devices past kMaxDevices are asked on
// every get().
template <typename T>
class PerDevice {
 public:
  template <typename Make>
  T get(Make&& make) {
    int device = 0;
    LOWBIT_CUDA_CHECK(cudaGetDevice(&device));
    return get(device, static_cast<Make&&>(make));
  }
  // The same for `device`, the current device, where the caller knows it.
  template <typename Make>
  T get(int device, Make&& make) {
    if (device < 0 || device >= kMaxDevices) return make();
    std::call_once(once_[device], [&] { values_[device] = make(); });
    return values_[device];
  }

 private:
  static constexpr int kMaxDevices = 64;
  std::once_flag once_[kMaxDevices];
  T values_[kMaxDevices]{};
};

}  // namespace lowbit::detail
