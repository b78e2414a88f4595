#include "engine/device_memory.h"

#include <fstream>
#include <string>

#include "core/cuda_runtime.h"

namespace lowbit::engine::detail {

uint64_t device_memory_used(Device device) {
#ifdef LOWBIT_WITH_CUDA
  if (device.is_cuda()) {
    const lowbit::detail::CudaMemoryInfo info = lowbit::detail::cuda_memory_info(device.index);
    return uint64_t(info.total - info.free);
  }
#endif
  return 0;
}

uint64_t host_peak_rss() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // the file says kB
  return 0;
}

}  // namespace lowbit::engine::detail
