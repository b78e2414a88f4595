#include <string>

#include "core/cuda_runtime.h"
#include "lowbit/core/device.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

TEST(Device, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(Device::parse("cpu").str(), "cpu");
  EXPECT_EQ(Device::parse("cuda").str(), "cuda:0");
  EXPECT_EQ(Device::parse("cuda:3").str(), "cuda:3");
  for (const char* bad : {"cuda:", "cuda:-1", "cuda:1x", "tpu"}) {
    try {
      Device::parse(bad);
      ADD_FAILURE() << bad << " parsed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

// What the first allocation on a GPU that this build cannot run says (the
// check itself runs on every GPU test's first allocation).
TEST(Device, UnsupportedGpuNamesTheBuildAndTheFix) {
  const std::string text = detail::cuda_kernels_unavailable_message(1, "NVIDIA A100-SXM4-80GB", 8, 0, "900",
                                                                     "no kernel image is available");
  for (const char* part : {"cuda:1", "NVIDIA A100-SXM4-80GB", "compute capability 8.0", "built for compute capability 9.0",
                           "no kernel image is available", "compute capability 9.0 or newer", "--device cpu"})
    EXPECT_NE(text.find(part), std::string::npos) << part << " not in: " << text;
  EXPECT_NE(detail::cuda_kernels_unavailable_message(0, "GPU", 7, 5, "800,900", "x").find("8.0, 9.0"),
            std::string::npos);
}

}  // namespace
}  // namespace lowbit
