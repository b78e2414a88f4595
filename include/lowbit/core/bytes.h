// Byte counts as messages and tables show them.
#pragma once

#include <cstdint>
#include <string>

namespace lowbit {

// Decimal units, as memory targets are written: "8.59 GB", "512.0 MB",
// "4.1 KB", "12 bytes" (TB from 10^12 on).
std::string bytes_text(uint64_t bytes);

}  // namespace lowbit
