#include "lowbit/ops/elementwise.h"

#include "ops/cpu/cpu_ops.h"
#include "ops/cuda_body.h"
#include "ops/dispatch.h"

namespace lowbit::ops {

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  constexpr std::string_view op = "add";
  detail::expect_shape(op, "b", b, a.shape());
  detail::expect_shape(op, "out", out, a.shape());
  detail::expect_dtype(op, "b", b, a.dtype());
  detail::expect_dtype(op, "out", out, a.dtype());
  detail::on_device(op, detail::common_device(op, {&a, &b, &out}), [&] { cpu::add(a, b, out); },
                    LOWBIT_CUDA_BODY(cuda::add(a, b, out)));
}

void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  constexpr std::string_view op = "silu_mul";
  detail::expect_shape(op, "up", up, gate.shape());
  detail::expect_shape(op, "out", out, gate.shape());
  detail::expect_dtype(op, "up", up, gate.dtype());
  detail::expect_dtype(op, "out", out, gate.dtype());
  detail::on_device(op, detail::common_device(op, {&gate, &up, &out}), [&] { cpu::silu_mul(gate, up, out); },
                    LOWBIT_CUDA_BODY(cuda::silu_mul(gate, up, out)));
}

void swiglu(const Tensor& gate_up, Tensor& out) {
  constexpr std::string_view op = "swiglu";
  LOWBIT_CHECK(gate_up.ndim() == 2 && gate_up.dim(1) % 2 == 0,
               "ops::swiglu: gate_up must be [rows, 2 * n], got {}", gate_up.describe());
  detail::expect_shape(op, "out", out, {gate_up.dim(0), gate_up.dim(1) / 2});
  detail::expect_dtype(op, "out", out, gate_up.dtype());
  detail::on_device(op, detail::common_device(op, {&gate_up, &out}), [&] { cpu::swiglu(gate_up, out); },
                    LOWBIT_CUDA_BODY(cuda::swiglu(gate_up, out)));
}

void embedding(const Tensor& ids, const Tensor& table, Tensor& out) {
  constexpr std::string_view op = "embedding";
  LOWBIT_CHECK(ids.ndim() == 1 && (ids.dtype() == DType::I32 || ids.dtype() == DType::I64),
               "ops::embedding: ids must be i32 or i64 [n], got {}", ids.describe());
  LOWBIT_CHECK(table.ndim() == 2, "ops::embedding: table must be [vocab, dim], got {}", table.describe());
  detail::expect_shape(op, "out", out, {ids.dim(0), table.dim(1)});
  detail::on_device(op, detail::common_device(op, {&ids, &table, &out}), [&] { cpu::embedding(ids, table, out); },
                    LOWBIT_CUDA_BODY(cuda::embedding(ids, table, out)));
}

static void check_softmax(std::string_view op, const Tensor& x, const Tensor& out) {
  LOWBIT_CHECK(x.ndim() >= 1, "ops::{}: x must have at least one dimension", op);
  detail::expect_shape(op, "out", out, x.shape());
  detail::expect_dtype(op, "out", out, DType::F32);
}

void softmax(const Tensor& x, Tensor& out) {
  check_softmax("softmax", x, out);
  detail::on_device("softmax", detail::common_device("softmax", {&x, &out}), [&] { cpu::softmax(x, out, false); },
                    LOWBIT_CUDA_BODY(cuda::softmax(x, out, false)));
}

void log_softmax(const Tensor& x, Tensor& out) {
  check_softmax("log_softmax", x, out);
  detail::on_device("log_softmax", detail::common_device("log_softmax", {&x, &out}),
                    [&] { cpu::softmax(x, out, true); },
                    LOWBIT_CUDA_BODY(cuda::softmax(x, out, true)));
}

}  // namespace lowbit::ops
