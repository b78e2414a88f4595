// The decoder reuses its activation and logits buffers from call to call;
// logits a caller still holds are never overwritten by a later forward.
#include "lowbit/engine/model_loader.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

TEST(DecoderBuffers, HeldLogitsSurviveTheNextForward) {
  const auto model = engine::load_model(testing::golden_dir() / "dev-llama/fp32");
  const std::vector<int32_t> a = {1, 17, 300, 42}, b = {7, 99};
  auto cache = model->make_cache(8);
  const Tensor first = model->forward(a, cache, true);
  const auto before = testing::to_floats(first);
  auto other = model->make_cache(8);
  const Tensor second = model->forward(b, other, true);
  EXPECT_EQ(testing::to_floats(first), before);
  EXPECT_NE(first.raw_data(), second.raw_data());
  // Once let go, the buffer is taken again, and the results do not change.
  const auto second_values = testing::to_floats(second);
  { const Tensor dropped = model->forward(b, other = model->make_cache(8), true); }
  auto again = model->make_cache(8);
  EXPECT_EQ(testing::to_floats(model->forward(b, again, true)), second_values);
}

}  // namespace
}  // namespace lowbit
