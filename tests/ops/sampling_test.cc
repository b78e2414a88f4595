// ops::argmax on the CPU: the host's greedy choice (first index of the
// largest value), NaN reported as -1, shapes checked.
#include <cmath>

#include <gmock/gmock.h>

#include "lowbit/ops/sampling.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

TEST(Argmax, FirstLargestPerRowAndNanMarked) {
  Tensor x = Tensor::from_vector<float>({1, 5, 5, 2,                                   //
                                         -INFINITY, -INFINITY, -INFINITY, -INFINITY,  //
                                         0, NAN, 9, 1},
                                        {3, 4});
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    Tensor out = Tensor::empty({3}, DType::I32);
    ops::argmax(x.cast(dtype), out);
    EXPECT_EQ(out.data<int32_t>()[0], 1) << dtype_name(dtype);
    EXPECT_EQ(out.data<int32_t>()[1], 0) << dtype_name(dtype);
    EXPECT_EQ(out.data<int32_t>()[2], -1) << dtype_name(dtype);
  }
}

TEST(Argmax, RejectsBadShapes) {
  Tensor out = Tensor::empty({2}, DType::I32);
  EXPECT_THROW(ops::argmax(Tensor::zeros({2, 3, 4}, DType::F32), out), Error);
  EXPECT_THROW(ops::argmax(Tensor::zeros({3, 4}, DType::F32), out), Error);
  Tensor wrong = Tensor::empty({2}, DType::I64);
  EXPECT_THROW(ops::argmax(Tensor::zeros({2, 4}, DType::F32), wrong), Error);
}

}  // namespace
}  // namespace lowbit
