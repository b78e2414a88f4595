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

int cuda_device_count() {
#ifdef LOWBIT_WITH_CUDA
  static const int count = detail::cuda_count();
  return count;
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

}  // namespace lowbit
