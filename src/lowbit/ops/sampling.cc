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

void sample_token(const Tensor& x, const Tensor& previous, const SamplingParams& params, double u, Tensor& out) {
  constexpr std::string_view op = "sample_token";
  LOWBIT_CHECK(x.ndim() == 2 && x.dim(0) == 1 && x.dim(1) > 0 && x.dim(1) < (int64_t(1) << 31),
               "ops::sample_token: x must be [1, vocab], got {}", x.describe());
  LOWBIT_CHECK(previous.ndim() == 1, "ops::sample_token: previous must be i32 [n], got {}", previous.describe());
  detail::expect_dtype(op, "previous", previous, DType::I32);
  detail::expect_shape(op, "out", out, {1});
  detail::expect_dtype(op, "out", out, DType::I32);
  LOWBIT_CHECK(params.temperature > 0.0f && std::isfinite(params.temperature),
               "ops::sample_token: temperature must be > 0 (greedy is ops::argmax), got {}", params.temperature);
  LOWBIT_CHECK(params.top_k >= 0, "ops::sample_token: top_k must be >= 0, got {}", params.top_k);
  LOWBIT_CHECK(params.top_p > 0.0f && params.top_p <= 1.0f, "ops::sample_token: top_p must be in (0, 1], got {}",
               params.top_p);
  LOWBIT_CHECK(params.repetition_penalty > 0.0f && std::isfinite(params.repetition_penalty),
               "ops::sample_token: repetition_penalty must be > 0, got {}", params.repetition_penalty);
  LOWBIT_CHECK(u >= 0.0 && u < 1.0, "ops::sample_token: u must be in [0, 1), got {}", u);
  detail::on_device(op, detail::common_device(op, {&x, &previous, &out}),
                    [&] { cpu::sample_token(x, previous, params, u, out); },
                    LOWBIT_CUDA_BODY(cuda::sample_token(x, previous, params, u, out)));
}

}  // namespace lowbit::ops
