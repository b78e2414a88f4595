// Memory figures for `lowbit bench`: device memory in use (cudaMemGetInfo)
// and the process's resident high-water mark.
#pragma once

#include <cstdint>

#include "lowbit/core/device.h"

namespace lowbit::engine::detail {

// Bytes in use on a CUDA device (total - free, every process and the CUDA
// context included); 0 for the CPU or without CUDA.
uint64_t device_memory_used(Device device);

// VmHWM of /proc/self/status: the most resident memory the process has held.
uint64_t host_peak_rss();

}  // namespace lowbit::engine::detail
