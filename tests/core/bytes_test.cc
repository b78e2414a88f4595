#include "lowbit/core/bytes.h"

#include <gtest/gtest.h>

namespace lowbit {
namespace {

TEST(BytesText, DecimalUnitsAsMemoryTargetsAreWritten) {
  EXPECT_EQ(bytes_text(0), "0 bytes");
  EXPECT_EQ(bytes_text(999), "999 bytes");
  EXPECT_EQ(bytes_text(4096), "4.1 KB");
  EXPECT_EQ(bytes_text(512000000), "512.0 MB");
  EXPECT_EQ(bytes_text(4260000000ull), "4.26 GB");
  EXPECT_EQ(bytes_text(uint64_t(1) << 50), "1125.90 TB");
}

}  // namespace
}  // namespace lowbit
