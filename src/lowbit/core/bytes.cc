#include "lowbit/core/bytes.h"

#include <fmt/format.h>

namespace lowbit {

std::string bytes_text(uint64_t bytes) {
  const double b = double(bytes);
  if (bytes >= 1000000000000ull) return fmt::format("{:.2f} TB", b / 1e12);
  if (bytes >= 1000000000ull) return fmt::format("{:.2f} GB", b / 1e9);
  if (bytes >= 1000000ull) return fmt::format("{:.1f} MB", b / 1e6);
  if (bytes >= 1000ull) return fmt::format("{:.1f} KB", b / 1e3);
  return fmt::format("{} bytes", bytes);
}

}  // namespace lowbit
