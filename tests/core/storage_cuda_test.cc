// GPU memory: an allocation the device cannot hold is an Error that names the
// device, the size asked for and what is free, and the device stays usable.
#include <string>
#include <vector>

#include <gmock/gmock.h>

#include "lowbit/core/tensor.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

using ::testing::HasSubstr;

TEST(CudaStorage, OutOfMemoryIsAnErrorAndTheDeviceStaysUsable) {
  LOWBIT_REQUIRE_CUDA();
  constexpr int64_t kPetabyte = int64_t(1) << 50;
  try {
    Tensor::empty({kPetabyte}, DType::U8, Device::cuda(0));
    ADD_FAILURE() << "a 1 PiB tensor was allocated";
  } catch (const Error& e) {
    const std::string text = e.what();
    EXPECT_THAT(text, HasSubstr("out of GPU memory on cuda:0: asked for 1125.90 TB (" + std::to_string(kPetabyte) +
                                " bytes), "));
    EXPECT_THAT(text, HasSubstr(" GB free"));
  }
  const std::vector<float> values{1.0f, -2.5f, 3.0f};
  const Tensor back = Tensor::from_vector(values, {3}).to(Device::cuda(0)).to(Device::cpu());
  EXPECT_EQ(testing::to_floats(back), values);
}

}  // namespace
}  // namespace lowbit
