// Device and dtype dispatch shared by the op front ends (op.cc files).
//
// An op front end validates its tensors, then calls `on_device` with the CPU
// body; until a device has its implementation, a tensor there gets an Error
// naming the op. `dispatch_float` turns a runtime float dtype into one
// template instantiation, so kernels are written once, generic in T.
#pragma once

#include <bit>
#include <cmath>
#include <initializer_list>
#include <string_view>

#include "core/cuda_runtime.h"
#include "lowbit/core/error.h"
#include "lowbit/core/half.h"
#include "lowbit/core/tensor.h"

namespace lowbit::ops::detail {

// All tensors on one device; returns it.
inline Device common_device(std::string_view op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (!t || !t->defined()) continue;
    if (!first) first = t;
    else if (!(t->device() == first->device()))
      fail("ops::{}: tensors on different devices ({} and {})", op, first->describe(), t->describe());
  }
  return first ? first->device() : Device::cpu();
}

// Runs `cpu` for host tensors; a CUDA tensor throws until the op's CUDA
// implementation (op_cuda.cu) is added here.
template <typename CpuFn>
void on_device(std::string_view op, Device device, CpuFn&& cpu) {
  if (device.is_cpu()) return cpu();
  fail("ops::{}: no CUDA implementation yet (got a tensor on {}); move the tensors to the CPU", op, device.str());
}

// Runs `cpu` for host tensors and `cuda` for device tensors (the op's
// _cuda.cu body) with their device made current; in a build without CUDA a
// device tensor gets an Error.
template <typename CpuFn, typename CudaFn>
void on_device(std::string_view op, Device device, CpuFn&& cpu, [[maybe_unused]] CudaFn&& cuda) {
  if (device.is_cpu()) return cpu();
#ifdef LOWBIT_WITH_CUDA
  lowbit::detail::cuda_use_device(device.index);
  return cuda();
#else
  fail("ops::{}: this build of lowbit has no CUDA support (got a tensor on {})", op, device.str());
#endif
}

template <typename Fn>
decltype(auto) dispatch_float(std::string_view op, DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::F32: return fn(float{});
    case DType::BF16: return fn(bf16{});
    case DType::F16: return fn(f16{});
    default: fail("ops::{}: expected an f32, bf16 or f16 tensor, got {}", op, dtype_name(dtype));
  }
}

inline void expect_shape(std::string_view op, const char* what, const Tensor& t, const Shape& shape) {
  if (t.shape() != shape) fail("ops::{}: {} must be {}, got {}", op, what, shape_str(shape), t.describe());
}

// Sequence b's [capacity, kv_heads, head_dim] cache of a batch's [batch,
// capacity, kv_heads, head_dim] one (a view), or the cache itself when it is
// one sequence's.
inline Tensor sequence_cache(const Tensor& cache, int64_t b) {
  return cache.ndim() == 4 ? cache.rows(b, b + 1).reshape({cache.dim(1), cache.dim(2), cache.dim(3)}) : cache;
}

inline void expect_dtype(std::string_view op, const char* what, const Tensor& t, DType dtype) {
  if (t.dtype() != dtype)
    fail("ops::{}: {} must be {}, got {}", op, what, dtype_name(dtype), t.describe());
}

// Rounds an f32 value to T's precision and back (the identity for float):
// what storing an intermediate result in a T tensor does.
template <typename T> inline float round_to(float v) { return to_f32(from_f32<T>(v)); }
template <> inline float round_to<float>(float v) { return v; }
// bf16 and f16 in f32 arithmetic: round the mantissa to 7 or 10 bits, nearest
// even. Exact for f16's normal range; subnormals, overflow and NaN take the
// bit-exact conversion of core/half.h.
template <> inline float round_to<bf16>(float v) {
  uint32_t u = std::bit_cast<uint32_t>(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return v;
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::bit_cast<float>(u & 0xffff0000u);
}
template <> inline float round_to<f16>(float v) {
  uint32_t u = std::bit_cast<uint32_t>(v);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs < 0x38800000u || abs >= 0x477ff000u) return f16_to_f32(f32_to_f16(v));
  u += 0xfffu + ((u >> 13) & 1u);
  return std::bit_cast<float>(u & 0xffffe000u);
}

// to_f32 with a branch-light path for f16's normal numbers (bit-identical).
template <typename T> inline float load(T v) { return to_f32(v); }
template <> inline float load<f16>(f16 v) {
  const uint32_t exp = (v.bits >> 10) & 0x1fu;
  if (exp == 0 || exp == 31) return f16_to_f32(v);
  return std::bit_cast<float>((uint32_t(v.bits & 0x8000u) << 16) | ((uint32_t(v.bits & 0x7fffu) << 13) + (112u << 23)));
}

// from_f32<T> with the fast rounding above (bit-identical results).
template <typename T> inline T store(float v) { return from_f32<T>(v); }
template <> inline bf16 store<bf16>(float v) {
  if (std::isnan(v)) return f32_to_bf16(v);
  return bf16::from_bits(uint16_t(std::bit_cast<uint32_t>(round_to<bf16>(v)) >> 16));
}
template <> inline f16 store<f16>(float v) {
  const uint32_t u = std::bit_cast<uint32_t>(v), abs = u & 0x7fffffffu;
  if (abs < 0x38800000u || abs >= 0x477ff000u) return f32_to_f16(v);
  const uint32_t r = std::bit_cast<uint32_t>(round_to<f16>(v)) & 0x7fffffffu;
  return f16::from_bits(uint16_t(((u >> 16) & 0x8000u) | (((r >> 23) - 112u) << 10) | ((r >> 13) & 0x3ffu)));
}

}  // namespace lowbit::ops::detail
