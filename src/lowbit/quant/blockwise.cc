// Blockwise ops: validate tensors and state, allocate outputs, dispatch by
// device and dtype. The kernels live in cpu/ and cuda/.
#include "lowbit/quant/blockwise.h"

#include <vector>

#include "lowbit/quant/kernels.h"
#include "quant/dispatch.h"

namespace lowbit::quant {
namespace {

void check_float_input(const Tensor& x, std::string_view op) {
  LOWBIT_CHECK(x.defined(), "{}: the input tensor is undefined", op);
  LOWBIT_CHECK(is_floating(x.dtype()) && x.dtype() != DType::F64,
               "{}: expected a f32, f16 or bf16 tensor, got {}", op, x.describe());
}

Tensor code_tensor(std::span<const float> code, Device device) {
  return Tensor::from_vector(std::vector<float>(code.begin(), code.end())).to(device);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Double quantization of an f32 absmax tensor (bitsandbytes: offset = mean,
// then quantize_blockwise(absmax - offset, nested_blocksize)).
NestedAbsmax quantize_nested(const Tensor& absmax, int nested_blocksize, Tensor& qabsmax) {
  const int64_t blocks = absmax.numel();
  const Device device = absmax.device();
  NestedAbsmax nested;
  nested.blocksize = nested_blocksize;
  nested.nested_code = code_tensor(dynamic_map_signed(), device);
  nested.nested_absmax = Tensor::empty({ceil_div(blocks, nested_blocksize)}, DType::F32, device);
  qabsmax = Tensor::empty({blocks}, DType::U8, device);
  on_device(
      "double quantization", device,
      [&] {
        nested.offset = cpu::quantize_nested_absmax(absmax.data<float>(), blocks, dynamic_map_signed().data(),
                                                    nested_blocksize, qabsmax.data<uint8_t>(),
                                                    nested.nested_absmax.data<float>());
      },
      LOWBIT_QUANT_CUDA(
        nested.offset = cuda::quantize_nested_absmax(absmax.data<float>(), blocks, nested.nested_code.data<float>(),
                                                     nested_blocksize, qabsmax.data<uint8_t>(),
                                                     nested.nested_absmax.data<float>());
      ));
  return nested;
}

void check_nested(const QuantState& state, std::string_view op) {
  const NestedAbsmax& nested = *state.nested;
  LOWBIT_CHECK(is_valid_blocksize(QuantType::Dynamic8, nested.blocksize),
               "{}: invalid nested block size {}", op, nested.blocksize);
  LOWBIT_CHECK(state.absmax.dtype() == DType::U8 && state.absmax.numel() == state.blocks(),
               "{}: nested absmax codes must be u8 [{}], got {}", op, state.blocks(), state.absmax.describe());
  LOWBIT_CHECK(nested.nested_absmax.defined() && nested.nested_absmax.dtype() == DType::F32 &&
                   nested.nested_absmax.numel() == ceil_div(state.blocks(), nested.blocksize),
               "{}: nested_absmax must be f32 [{}], got {}", op, ceil_div(state.blocks(), nested.blocksize),
               nested.nested_absmax.defined() ? nested.nested_absmax.describe() : "undefined");
  LOWBIT_CHECK(nested.nested_code.defined() && nested.nested_code.dtype() == DType::F32 &&
                   nested.nested_code.numel() == 256,
               "{}: nested_code must be f32 [256], got {}", op,
               nested.nested_code.defined() ? nested.nested_code.describe() : "undefined");
}

// The f32 absmax of a state: itself, or its double quantization undone.
Tensor resolve_absmax(const QuantState& state, Device device, std::string_view op) {
  if (!state.nested) {
    LOWBIT_CHECK(state.absmax.defined() && state.absmax.dtype() == DType::F32 &&
                     state.absmax.numel() == state.blocks(),
                 "{}: absmax must be f32 [{}] (one per block of {}), got {}", op, state.blocks(), state.blocksize,
                 state.absmax.defined() ? state.absmax.describe() : "undefined");
    return state.absmax.to(device);
  }
  check_nested(state, op);
  const NestedAbsmax& nested = *state.nested;
  const Tensor q = state.absmax.to(device), scales = nested.nested_absmax.to(device),
               code = nested.nested_code.to(device);
  Tensor out = Tensor::empty({state.blocks()}, DType::F32, device);
  on_device(
      op, device,
      [&] {
        cpu::dequantize_nested_absmax(q.data<uint8_t>(), scales.data<float>(), code.data<float>(), state.blocks(),
                                      nested.blocksize, nested.offset, out.data<float>());
      },
      LOWBIT_QUANT_CUDA(
        cuda::dequantize_nested_absmax(q.data<uint8_t>(), scales.data<float>(), code.data<float>(), state.blocks(),
                                       nested.blocksize, nested.offset, out.data<float>());
      ));
  return out;
}

}  // namespace

Tensor dequantize_nested_absmax(const QuantState& state) {
  return resolve_absmax(state, state.absmax.device(), "dequantize_nested_absmax");
}

Tensor quantize_4bit(const Tensor& x, QuantType type, int blocksize, bool double_quant, QuantState& state) {
  constexpr std::string_view op = "quantize_4bit";
  check_float_input(x, op);
  if (type != QuantType::NF4 && type != QuantType::FP4)
    throw Error(fmt::format("{}: expected quant type nf4 or fp4, got {}", op, traits(type).name)).with_option("quant_type");
  check_blocksize(type, blocksize);
  const int64_t n = x.numel();
  const Device device = x.device();
  Tensor packed = Tensor::empty({ceil_div(n, 2), 1}, DType::U8, device);
  Tensor absmax = Tensor::empty({ceil_div(n, blocksize)}, DType::F32, device);
  on_device(
      op, device,
      [&] {
        dispatch_float(x.dtype(), op, [&](auto tag) {
          using T = decltype(tag);
          cpu::quantize_4bit(x.data<T>(), n, type, blocksize, packed.data<uint8_t>(), absmax.data<float>());
        });
      },
      LOWBIT_QUANT_CUDA(
        cuda::quantize_4bit(x.dtype(), x.raw_data(), n, type, blocksize, packed.data<uint8_t>(), absmax.data<float>());
      ));
  state = QuantState{};
  state.type = type;
  state.blocksize = blocksize;
  state.shape = x.shape();
  state.dtype = x.dtype();
  state.code = code_tensor(traits(type).code, device);
  if (double_quant) {
    Tensor qabsmax;
    state.nested = quantize_nested(absmax, 256, qabsmax);
    state.absmax = qabsmax;
  } else {
    state.absmax = absmax;
  }
  return packed;
}

void dequantize_4bit_into(const Tensor& packed, const QuantState& state, Tensor& out) {
  constexpr std::string_view op = "dequantize_4bit";
  LOWBIT_CHECK(state.type == QuantType::NF4 || state.type == QuantType::FP4,
               "{}: the state's quant type must be nf4 or fp4, got {}", op, traits(state.type).name);
  check_blocksize(state.type, state.blocksize);
  const int64_t n = state.numel();
  LOWBIT_CHECK(packed.defined() && packed.dtype() == DType::U8 && packed.numel() == ceil_div(n, 2),
               "{}: expected packed u8 data of {} bytes for shape {}, got {}", op, ceil_div(n, 2),
               shape_str(state.shape), packed.defined() ? packed.describe() : "undefined");
  const Device device = packed.device();
  LOWBIT_CHECK(out.defined() && out.numel() == n && out.device() == device,
               "{}: the output must hold {} elements on {}, got {}", op, n, device.str(),
               out.defined() ? out.describe() : "undefined");
  const DType dtype = out.dtype();
  const Tensor absmax = resolve_absmax(state, device, op);
  on_device(
      op, device,
      [&] {
        dispatch_float(dtype, op, [&](auto tag) {
          using T = decltype(tag);
          cpu::dequantize_4bit(packed.data<uint8_t>(), absmax.data<float>(), n, state.type, state.blocksize,
                               out.data<T>());
        });
      },
      LOWBIT_QUANT_CUDA(
        dispatch_float(dtype, op, [](auto) {});
        cuda::dequantize_4bit(dtype, packed.data<uint8_t>(), absmax.data<float>(), n, state.type, state.blocksize,
                              out.raw_data());
      ));
}

Tensor dequantize_4bit(const Tensor& packed, const QuantState& state, std::optional<DType> out_dtype) {
  const DType dtype = out_dtype.value_or(state.dtype);
  dispatch_float(dtype, "dequantize_4bit", [](auto) {});
  Tensor out = Tensor::empty(state.shape, dtype, packed.defined() ? packed.device() : Device::cpu());
  dequantize_4bit_into(packed, state, out);
  return out;
}

Tensor quantize_blockwise(const Tensor& x, int blocksize, bool nested, QuantState& state) {
  constexpr std::string_view op = "quantize_blockwise";
  check_float_input(x, op);
  check_blocksize(QuantType::Dynamic8, blocksize);
  const int64_t n = x.numel();
  const Device device = x.device();
  Tensor codes = Tensor::empty(x.shape(), DType::U8, device);
  Tensor absmax = Tensor::empty({ceil_div(n, blocksize)}, DType::F32, device);
  Tensor code = code_tensor(dynamic_map_signed(), device);
  on_device(
      op, device,
      [&] {
        dispatch_float(x.dtype(), op, [&](auto tag) {
          using T = decltype(tag);
          cpu::quantize_dynamic8(x.data<T>(), n, dynamic_map_signed().data(), blocksize, codes.data<uint8_t>(),
                                 absmax.data<float>());
        });
      },
      LOWBIT_QUANT_CUDA(
        cuda::quantize_dynamic8(x.dtype(), x.raw_data(), n, code.data<float>(), blocksize, codes.data<uint8_t>(),
                                absmax.data<float>());
      ));
  state = QuantState{};
  state.type = QuantType::Dynamic8;
  state.blocksize = blocksize;
  state.shape = x.shape();
  state.dtype = x.dtype();
  state.code = code;
  if (nested) {
    // bitsandbytes nests 8-bit absmax with the same block size as the data.
    Tensor qabsmax;
    state.nested = quantize_nested(absmax, blocksize, qabsmax);
    state.absmax = qabsmax;
  } else {
    state.absmax = absmax;
  }
  return codes;
}

void dequantize_blockwise_into(const Tensor& codes, const QuantState& state, Tensor& out) {
  constexpr std::string_view op = "dequantize_blockwise";
  LOWBIT_CHECK(state.type == QuantType::Dynamic8, "{}: the state's quant type must be dynamic8, got {}", op,
               traits(state.type).name);
  check_blocksize(state.type, state.blocksize);
  const int64_t n = state.numel();
  LOWBIT_CHECK(codes.defined() && codes.dtype() == DType::U8 && codes.numel() == n,
               "{}: expected u8 codes with {} elements for shape {}, got {}", op, n, shape_str(state.shape),
               codes.defined() ? codes.describe() : "undefined");
  LOWBIT_CHECK(state.code.defined() && state.code.dtype() == DType::F32 && state.code.numel() == 256,
               "{}: the state's code must be f32 [256], got {}", op,
               state.code.defined() ? state.code.describe() : "undefined");
  const Device device = codes.device();
  LOWBIT_CHECK(out.defined() && out.numel() == n && out.device() == device,
               "{}: the output must hold {} elements on {}, got {}", op, n, device.str(),
               out.defined() ? out.describe() : "undefined");
  const DType dtype = out.dtype();
  const Tensor absmax = resolve_absmax(state, device, op);
  const Tensor code = state.code.to(device);
  on_device(
      op, device,
      [&] {
        dispatch_float(dtype, op, [&](auto tag) {
          using T = decltype(tag);
          cpu::dequantize_dynamic8(codes.data<uint8_t>(), absmax.data<float>(), code.data<float>(), n, state.blocksize,
                                   out.data<T>());
        });
      },
      LOWBIT_QUANT_CUDA(
        dispatch_float(dtype, op, [](auto) {});
        cuda::dequantize_dynamic8(dtype, codes.data<uint8_t>(), absmax.data<float>(), code.data<float>(), n,
                                  state.blocksize, out.raw_data());
      ));
}

Tensor dequantize_blockwise(const Tensor& codes, const QuantState& state, std::optional<DType> out_dtype) {
  const DType dtype = out_dtype.value_or(state.dtype);
  dispatch_float(dtype, "dequantize_blockwise", [](auto) {});
  Tensor out = Tensor::empty(state.shape, dtype, codes.defined() ? codes.device() : Device::cpu());
  dequantize_blockwise_into(codes, state, out);
  return out;
}

}  // namespace lowbit::quant
