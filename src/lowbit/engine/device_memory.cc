#include "engine/device_memory.h"

#include <fstream>
#include <string>

namespace lowbit::engine::detail {

#ifdef LOWBIT_WITH_CUDA
uint64_t cuda_memory_used(int device);  // cuda/device_memory_cuda.cu
#endif

uint64_t device_memory_used(Device device) {
#ifdef LOWBIT_WITH_CUDA
  if (device.is_cuda()) return cuda_memory_used(device.index);
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
