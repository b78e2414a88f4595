#include "lowbit/core/tensor.h"

#include <cstring>

#include "core/cuda_runtime.h"
#include "lowbit/core/half.h"
#include "lowbit/core/thread_pool.h"

namespace lowbit {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor Tensor::empty(Shape shape, DType dtype, Device device, MemoryKind kind) {
  for (int64_t d : shape) LOWBIT_CHECK(d >= 0, "tensor shape {} has a negative dimension", shape_str(shape));
  if (device.is_cuda()) kind = MemoryKind::Cuda;
  Tensor t;
  t.storage_ = Storage::allocate(storage_bytes(dtype, size_t(shape_numel(shape))), kind, device);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype, Device device) {
  Tensor t = empty(std::move(shape), dtype, device);
  if (device.is_cpu())
    std::memset(t.raw_data(), 0, t.nbytes());
  else
    detail::cuda_memset(t.raw_data(), 0, t.nbytes(), device.index);
  return t;
}

Tensor Tensor::view(std::shared_ptr<Storage> storage, size_t offset, Shape shape, DType dtype) {
  LOWBIT_CHECK(storage != nullptr, "Tensor::view of a null storage");
  const size_t need = storage_bytes(dtype, size_t(shape_numel(shape)));
  LOWBIT_CHECK(offset <= storage->bytes() && need <= storage->bytes() - offset,
               "view of {} {} at offset {} does not fit in a buffer of {} bytes", dtype_name(dtype),
               shape_str(shape), offset, storage->bytes());
  Tensor t;
  t.storage_ = std::move(storage);
  t.offset_ = offset;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  return t;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  if (i < 0) i += n;
  LOWBIT_CHECK(i >= 0 && i < n, "dimension {} out of range for a {}-d tensor", i, n);
  return shape_[size_t(i)];
}

Tensor Tensor::reshape(Shape shape) const {
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      LOWBIT_CHECK(infer < 0, "reshape to {}: only one dimension may be -1", shape_str(shape));
      infer = int(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    LOWBIT_CHECK(known > 0 && numel() % known == 0, "cannot reshape {} to {}", shape_str(shape_), shape_str(shape));
    shape[size_t(infer)] = numel() / known;
  }
  LOWBIT_CHECK(shape_numel(shape) == numel(), "cannot reshape {} to {}", shape_str(shape_), shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  LOWBIT_CHECK(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0],
               "rows({}, {}) out of range for {}", begin, end, describe());
  const int64_t row = ndim() == 1 ? 1 : numel() / std::max<int64_t>(shape_[0], 1);
  LOWBIT_CHECK(dtype_ != DType::U4 || (row * begin) % 2 == 0, "rows(): packed 4-bit slice must start on a byte");
  Tensor t = *this;
  t.offset_ = offset_ + storage_bytes(dtype_, size_t(row * begin));
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor t = empty(shape_, dtype_, device);
  copy_bytes(t.raw_data(), device, raw_data(), this->device(), nbytes());
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  copy_bytes(t.raw_data(), device(), raw_data(), device(), nbytes());
  return t;
}

namespace {

template <typename Src, typename Dst>
void convert(const Src* src, Dst* dst, size_t n) {
  parallel_for(0, n, 1 << 16, [&](size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; ++i) dst[i] = from_f32<Dst>(to_f32(src[i]));
  });
}

template <typename Src>
void convert_from(const Src* src, const Tensor& out, size_t n) {
  switch (out.dtype()) {
    case DType::F32: return convert(src, out.data<float>(), n);
    case DType::F16: return convert(src, out.data<f16>(), n);
    case DType::BF16: return convert(src, out.data<bf16>(), n);
    default: fail("cast to {} is not supported (f32, f16, bf16 only)", dtype_name(out.dtype()));
  }
}

}  // namespace

Tensor Tensor::cast(DType dtype) const {
  if (dtype == dtype_) return *this;
  LOWBIT_CHECK(device().is_cpu(), "Tensor::cast runs on host tensors; got {}", describe());
  Tensor out = empty(shape_, dtype);
  const size_t n = size_t(numel());
  switch (dtype_) {
    case DType::F32: convert_from(data<float>(), out, n); break;
    case DType::F16: convert_from(data<f16>(), out, n); break;
    case DType::BF16: convert_from(data<bf16>(), out, n); break;
    default: fail("cast from {} is not supported (f32, f16, bf16 only)", dtype_name(dtype_));
  }
  return out;
}

std::string Tensor::describe() const {
  return fmt::format("{}{} on {}", dtype_name(dtype_), shape_str(shape_), device().str());
}

void Tensor::check_type(DType expected) const {
  LOWBIT_CHECK(storage_ != nullptr, "access to an undefined tensor");
  LOWBIT_CHECK(expected == dtype_, "tensor is {}, accessed as {}", dtype_name(dtype_), dtype_name(expected));
}

}  // namespace lowbit
