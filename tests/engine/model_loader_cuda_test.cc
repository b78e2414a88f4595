// A model that does not fit the GPU: the error names the tensor that could not
// be placed, and the GPU stays usable once the memory is back.
#include <vector>

#include <gmock/gmock.h>

#include "core/cuda_runtime.h"
#include "lowbit/engine/model_loader.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

using ::testing::HasSubstr;

TEST(ModelLoaderCuda, OutOfMemoryNamesTheTensor) {
  LOWBIT_REQUIRE_CUDA();
  const auto dir = testing::models_dir() / "shakespeare-llama";
  const engine::LoadOptions options{.dtype = DType::F32, .device = Device::cuda(0)};
  {
    // Take all but a few MB of the GPU, then the rest 1 MB at a time.
    std::vector<Tensor> ballast;
    const size_t free = detail::cuda_memory_info(0).free;
    constexpr size_t kMB = size_t(1) << 20;
    for (size_t keep = 64 * kMB; ballast.empty() && keep < free; keep *= 2) {
      try {
        ballast.push_back(Tensor::empty({int64_t(free - keep)}, DType::U8, Device::cuda(0)));
      } catch (const Error&) {
      }
    }
    ASSERT_FALSE(ballast.empty());
    for (int i = 0; i < 4096; ++i) {
      try {
        ballast.push_back(Tensor::empty({int64_t(kMB)}, DType::U8, Device::cuda(0)));
      } catch (const Error&) {
        break;
      }
    }
    try {
      engine::load_model(dir, options);
      ADD_FAILURE() << "the model loaded into a full GPU";
    } catch (const Error& e) {
      const std::string text = e.what();
      EXPECT_THAT(text, HasSubstr("loading model."));
      EXPECT_THAT(text, HasSubstr(" onto cuda:0: out of GPU memory on cuda:0: asked for "));
      EXPECT_THAT(text, HasSubstr("(tensor: model."));
    }
  }
  // The ballast is gone: the same load works.
  EXPECT_NO_THROW(engine::load_model(dir, options));
}

}  // namespace
}  // namespace lowbit
