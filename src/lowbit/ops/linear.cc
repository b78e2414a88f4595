#include "lowbit/ops/linear.h"

#include "lowbit/ops/elementwise.h"
#include "lowbit/ops/norm.h"
#include "lowbit/quant/blockwise.h"

#include "ops/cpu/cpu_ops.h"
#include "ops/cuda_body.h"
#include "ops/dispatch.h"
#ifdef LOWBIT_WITH_CUDA
#include "ops/cuda/linear_cuda.h"
#endif

namespace lowbit::ops {
namespace {

void check_io(std::string_view op, const Tensor& x, int64_t in, int64_t out_features, const Tensor& bias,
              const Tensor& out) {
  LOWBIT_CHECK(x.ndim() == 2, "ops::{}: x must be [tokens, in_features], got {}", op, x.describe());
  LOWBIT_CHECK(x.dim(1) == in, "ops::{}: x has {} features, the weight expects {}", op, x.dim(1), in);
  if (bias.defined()) detail::expect_shape(op, "bias", bias, {out_features});
  detail::expect_shape(op, "out", out, {x.dim(0), out_features});
  detail::expect_dtype(op, "out", out, x.dtype());
}

// The nested scales of a double-quantized weight (they must share its device), or null.
const Tensor* nested_scales(const Blockwise4bitWeight& w) { return w.nested ? &w.nested->nested_absmax : nullptr; }

void check_4bit_weight(const Blockwise4bitWeight& w) {
  const int64_t n = w.out_features * w.in_features;
  LOWBIT_CHECK(w.out_features > 0 && w.in_features > 0, "ops::linear_4bit: empty weight shape [{}, {}]",
               w.out_features, w.in_features);
  LOWBIT_CHECK(w.blocksize > 0, "ops::linear_4bit: blocksize must be positive, got {}", w.blocksize);
  LOWBIT_CHECK(w.packed.dtype() == DType::U8 && w.packed.numel() == (n + 1) / 2,
               "ops::linear_4bit: packed must hold {} u8 values for a [{}, {}] weight, got {}", (n + 1) / 2,
               w.out_features, w.in_features, w.packed.describe());
  const int64_t blocks = (n + w.blocksize - 1) / w.blocksize;
  if (!w.nested) {
    LOWBIT_CHECK(w.absmax.dtype() == DType::F32 && w.absmax.numel() == blocks,
                 "ops::linear_4bit: absmax must be f32 [{}], got {}", blocks, w.absmax.describe());
  } else {
    const Blockwise4bitWeight::Nested& q = *w.nested;
    LOWBIT_CHECK(w.absmax.dtype() == DType::U8 && w.absmax.numel() == blocks,
                 "ops::linear_4bit: a double-quantized absmax must be u8 codes [{}], got {}", blocks,
                 w.absmax.describe());
    LOWBIT_CHECK(q.nested_blocksize > 0, "ops::linear_4bit: nested blocksize must be positive, got {}",
                 q.nested_blocksize);
    const int64_t outer = (blocks + q.nested_blocksize - 1) / q.nested_blocksize;
    LOWBIT_CHECK(q.nested_absmax.dtype() == DType::F32 && q.nested_absmax.numel() == outer,
                 "ops::linear_4bit: nested_absmax must be f32 [{}], got {}", outer, q.nested_absmax.describe());
    LOWBIT_CHECK(q.nested_code.dtype() == DType::F32 && q.nested_code.numel() == 256,
                 "ops::linear_4bit: nested_code must be f32 [256], got {}", q.nested_code.describe());
    LOWBIT_CHECK(!q.offsets.empty() && q.offsets.size() <= size_t(Blockwise4bitWeight::Nested::kMaxParts) &&
                     q.part_starts.size() + 1 == q.offsets.size(),
                 "ops::linear_4bit: a double-quantized weight needs one offset a part (at most {}) and a start "
                 "for each part after the first, got {} offsets and {} starts",
                 Blockwise4bitWeight::Nested::kMaxParts, q.offsets.size(), q.part_starts.size());
    int64_t previous = 0;
    for (int64_t start : q.part_starts) {
      LOWBIT_CHECK(start > previous && start < blocks && start % q.nested_blocksize == 0 &&
                       start * w.blocksize % w.in_features == 0,
                   "ops::linear_4bit: part starts must increase inside the {} absmax blocks, each on a row and a "
                   "multiple of the nested blocksize {}; got {}",
                   blocks, q.nested_blocksize, start);
      previous = start;
    }
  }
  LOWBIT_CHECK(w.code.dtype() == DType::F32 && w.code.numel() == 16, "ops::linear_4bit: code must be f32 [16], got {}",
               w.code.describe());
}

}  // namespace

Blockwise4bitWeight with_decoded_absmax(const Blockwise4bitWeight& w) {
  if (!w.nested) return w;
  check_4bit_weight(w);
  const Blockwise4bitWeight::Nested& q = *w.nested;
  const int64_t blocks = w.absmax.numel();
  Tensor absmax = Tensor::empty({blocks}, DType::F32, w.absmax.device());
  // Each part as its own quantization state (its offset, its nested scales).
  for (size_t part = 0; part < q.offsets.size(); ++part) {
    const int64_t first = part == 0 ? 0 : q.part_starts[part - 1];
    const int64_t last = part + 1 < q.offsets.size() ? q.part_starts[part] : blocks;
    quant::QuantState state;
    state.type = w.type;
    state.blocksize = w.blocksize;
    state.shape = {(last - first) * w.blocksize};
    state.absmax = w.absmax.reshape({blocks}).rows(first, last);
    state.code = w.code;
    quant::NestedAbsmax nested;
    nested.offset = q.offsets[part];
    nested.blocksize = q.nested_blocksize;
    const int64_t outer_first = first / q.nested_blocksize;
    nested.nested_absmax = q.nested_absmax.reshape({q.nested_absmax.numel()})
                               .rows(outer_first, (last + q.nested_blocksize - 1) / q.nested_blocksize);
    nested.nested_code = q.nested_code;
    state.nested = std::move(nested);
    const Tensor decoded = quant::dequantize_nested_absmax(state);
    copy_bytes(absmax.rows(first, last).raw_data(), absmax.device(), decoded.raw_data(), decoded.device(),
               decoded.nbytes());
  }
  Blockwise4bitWeight out = w;
  out.absmax = absmax;
  out.nested.reset();
  return out;
}

void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  constexpr std::string_view op = "linear";
  LOWBIT_CHECK(weight.ndim() == 2, "ops::linear: weight must be [out, in], got {}", weight.describe());
  check_io(op, x, weight.dim(1), weight.dim(0), bias, out);
  detail::on_device(op, detail::common_device(op, {&x, &weight, &bias, &out}),
                    [&] { cpu::linear(x, weight, bias, out); },
                    LOWBIT_CUDA_BODY(cuda::linear(x, weight, bias, out)));
}

void linear_4bit(const Tensor& x, const Blockwise4bitWeight& w, const Tensor& bias, Tensor& out) {
  constexpr std::string_view op = "linear_4bit";
  check_4bit_weight(w);
  check_io(op, x, w.in_features, w.out_features, bias, out);
  detail::on_device(op, detail::common_device(op, {&x, &w.packed, &w.absmax, nested_scales(w), &bias, &out}),
                    [&] { cpu::linear_4bit(x, with_decoded_absmax(w), bias, out); },
                    LOWBIT_CUDA_BODY(cuda::linear_4bit(x, w, bias, out)));
}

void dequantize_4bit_weight(const Blockwise4bitWeight& w, Tensor& out) {
  constexpr std::string_view op = "dequantize_4bit_weight";
  check_4bit_weight(w);
  detail::expect_shape(op, "out", out, {w.out_features, w.in_features});
  detail::on_device(op, detail::common_device(op, {&w.packed, &w.absmax, nested_scales(w), &out}),
                    [&] { cpu::dequantize_4bit_weight(with_decoded_absmax(w), out); },
                    LOWBIT_CUDA_BODY(cuda::dequantize_4bit_weight(w, out)));
}

bool linear_4bit_dequantizes([[maybe_unused]] int64_t rows, [[maybe_unused]] DType dtype,
                             [[maybe_unused]] Device device, [[maybe_unused]] const Blockwise4bitWeight& w) {
#ifdef LOWBIT_WITH_CUDA
  return device.is_cuda() && w.packed.device() == device && cuda::linear_4bit_dequantizes(rows, dtype, w);
#else
  return false;
#endif
}

Tensor fused_linear_input(const Tensor& src, const LinearFusion& f) {
  LOWBIT_CHECK(src.ndim() == 2, "ops::linear (fused): the input must be [tokens, features], got {}", src.describe());
  switch (f.input) {
    case LinearFusion::Input::Plain: return src;
    case LinearFusion::Input::RmsNorm: {
      Tensor x = Tensor::empty(src.shape(), src.dtype(), src.device());
      rms_norm(src, f.norm_weight, f.eps, x);
      return x;
    }
    case LinearFusion::Input::SwiGLU: {
      LOWBIT_CHECK(src.dim(1) % 2 == 0, "ops::linear (fused): a SwiGLU input must hold gate and up, got {}",
                   src.describe());
      Tensor x = Tensor::empty({src.dim(0), src.dim(1) / 2}, src.dtype(), src.device());
      swiglu(src, x);
      return x;
    }
  }
  return src;
}

void fused_linear_output(const Tensor& y, const LinearFusion& f, Tensor& out) {
  switch (f.output) {
    case LinearFusion::Output::Store:
      detail::expect_shape("linear (fused)", "out", out, y.shape());
      detail::expect_dtype("linear (fused)", "out", out, y.dtype());
      copy_bytes(out.raw_data(), out.device(), y.raw_data(), y.device(), y.nbytes());
      return;
    case LinearFusion::Output::Add: add(out, y, out); return;
    case LinearFusion::Output::SwiGLU: swiglu(y, out); return;
  }
}

bool linear_4bit_fuses([[maybe_unused]] const Tensor& src, [[maybe_unused]] const Blockwise4bitWeight& w,
                       [[maybe_unused]] const Tensor& bias, [[maybe_unused]] const LinearFusion& f,
                       [[maybe_unused]] const Tensor& out) {
#ifdef LOWBIT_WITH_CUDA
  return src.device().is_cuda() && out.device() == src.device() && cuda::linear_4bit_fuses(src, w, bias, f, out);
#else
  return false;
#endif
}

void linear_4bit_fused(const Tensor& src, const Blockwise4bitWeight& w, const Tensor& bias, const LinearFusion& f,
                       Tensor& out) {
  const int64_t in = f.input == LinearFusion::Input::SwiGLU ? 2 * w.in_features : w.in_features;
  LOWBIT_CHECK(src.ndim() == 2 && src.dim(1) == in, "ops::linear_4bit (fused): the input must be [tokens, {}], got {}",
               in, src.describe());
  if (f.input == LinearFusion::Input::RmsNorm)
    detail::expect_shape("linear_4bit (fused)", "norm weight", f.norm_weight, {w.in_features});
  check_4bit_weight(w);
  const bool swiglu_out = f.output == LinearFusion::Output::SwiGLU;
  LOWBIT_CHECK(!swiglu_out || w.out_features % 2 == 0,
               "ops::linear_4bit (fused): a SwiGLU output needs gate and up rows, got {} rows", w.out_features);
  if (linear_4bit_fuses(src, w, bias, f, out)) {
    if (bias.defined()) detail::expect_shape("linear_4bit (fused)", "bias", bias, {w.out_features});
    detail::expect_shape("linear_4bit (fused)", "out", out,
                         {src.dim(0), swiglu_out ? w.out_features / 2 : w.out_features});
    detail::expect_dtype("linear_4bit (fused)", "out", out, src.dtype());
#ifdef LOWBIT_WITH_CUDA
    cuda::linear_4bit_fused(src, w, bias, f, out);
#endif
    return;
  }
  const Tensor x = fused_linear_input(src, f);
  if (f.output == LinearFusion::Output::Store) return linear_4bit(x, w, bias, out);
  Tensor y = Tensor::empty({x.dim(0), w.out_features}, x.dtype(), x.device());
  linear_4bit(x, w, bias, y);
  fused_linear_output(y, f, out);
}

void linear_int8(const Tensor& x, const Tensor& codes, const Tensor& scb, const Tensor& bias, float threshold,
                 Tensor& out) {
  constexpr std::string_view op = "linear_int8";
  LOWBIT_CHECK(codes.ndim() == 2 && codes.dtype() == DType::I8, "ops::linear_int8: codes must be i8 [out, in], got {}",
               codes.describe());
  detail::expect_shape(op, "SCB", scb, {codes.dim(0)});
  detail::expect_dtype(op, "SCB", scb, DType::F32);
  LOWBIT_CHECK(threshold >= 0.0f, "ops::linear_int8: threshold must be >= 0, got {}", threshold);
  check_io(op, x, codes.dim(1), codes.dim(0), bias, out);
  detail::on_device(op, detail::common_device(op, {&x, &codes, &scb, &bias, &out}),
                    [&] { cpu::linear_int8(x, codes, scb, bias, threshold, out); },
                    LOWBIT_CUDA_BODY(cuda::linear_int8(x, codes, scb, bias, threshold, out)));
}

}  // namespace lowbit::ops
