#include "lowbit/ops/sampling.h"

#include "ops/cpu/cpu_ops.h"
#include "ops/cuda_body.h"
#include "ops/dispatch.h"

namespace lowbit::ops {

void argmax(const Tensor& x, Tensor& out) {
  constexpr std::string_view op = "argmax";
  LOWBIT_CHECK(x.ndim() == 2 && x.dim(1) > 0, "ops::argmax: x must be [rows, cols] with cols > 0, got {}",
               x.describe());
  detail::expect_shape(op, "out", out, {x.dim(0)});
  detail::expect_dtype(op, "out", out, DType::I32);
  detail::on_device(op, detail::common_device(op, {&x, &out}), [&] { cpu::argmax(x, out); },
                    LOWBIT_CUDA_BODY(cuda::argmax(x, out)));
}

}  // namespace lowbit::ops
