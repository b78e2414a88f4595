#include "lowbit/core/bytes.h"

#include <string>

#include <gmock/gmock.h>

#include "lowbit/core/error.h"
#include "lowbit/core/tensor.h"

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

// An allocation the host cannot make is an Error with its size, not a crash
// (4 EiB: more than any address space holds).
TEST(HostStorage, OutOfMemoryIsAnError) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "AddressSanitizer stops the process on an impossible allocation";
#endif
  try {
    Tensor::empty({int64_t(1) << 62}, DType::U8, Device::cpu());
    ADD_FAILURE() << "a 4 EB tensor was allocated";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("out of host memory: could not allocate 4611686.02 TB"));
  }
}

}  // namespace
}  // namespace lowbit
