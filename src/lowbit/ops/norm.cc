#include "lowbit/ops/norm.h"

#include "ops/cpu/cpu_ops.h"
#include "ops/cuda_body.h"
#include "ops/dispatch.h"

namespace lowbit::ops {

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  constexpr std::string_view op = "rms_norm";
  LOWBIT_CHECK(x.ndim() == 2, "ops::rms_norm: x must be [rows, dim], got {}", x.describe());
  detail::expect_shape(op, "weight", weight, {x.dim(1)});
  detail::expect_shape(op, "out", out, x.shape());
  detail::expect_dtype(op, "out", out, x.dtype());
  detail::on_device(op, detail::common_device(op, {&x, &weight, &out}), [&] { cpu::rms_norm(x, weight, eps, out); },
                    LOWBIT_CUDA_BODY(cuda::rms_norm(x, weight, eps, out)));
}

void add_rms_norm(Tensor& x, const Tensor& residual, const Tensor& weight, float eps, Tensor& out) {
  constexpr std::string_view op = "add_rms_norm";
  LOWBIT_CHECK(x.ndim() == 2, "ops::add_rms_norm: x must be [rows, dim], got {}", x.describe());
  detail::expect_shape(op, "residual", residual, x.shape());
  detail::expect_dtype(op, "residual", residual, x.dtype());
  detail::expect_shape(op, "weight", weight, {x.dim(1)});
  detail::expect_shape(op, "out", out, x.shape());
  detail::expect_dtype(op, "out", out, x.dtype());
  detail::on_device(op, detail::common_device(op, {&x, &residual, &weight, &out}),
                    [&] { cpu::add_rms_norm(x, residual, weight, eps, out); },
                    LOWBIT_CUDA_BODY(cuda::add_rms_norm(x, residual, weight, eps, out)));
}

}  // namespace lowbit::ops
