// A contiguous n-dimensional array: shape, dtype, device and shared storage.
//
// Tensors are cheap handles; copies share storage. Views (reshape, rows) share
// storage too and keep it alive, which is how zero-copy checkpoint tensors work.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lowbit/core/device.h"
#include "lowbit/core/dtype.h"
#include "lowbit/core/error.h"
#include "lowbit/core/storage.h"

namespace lowbit {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[4096, 11008]"

class Tensor {
 public:
  Tensor() = default;
  // Uninitialized tensor in fresh memory.
  static Tensor empty(Shape shape, DType dtype, Device device = Device::cpu(),
                      MemoryKind kind = MemoryKind::Host);
  static Tensor zeros(Shape shape, DType dtype, Device device = Device::cpu());
  // View of existing storage at byte offset `offset`.
  static Tensor view(std::shared_ptr<Storage> storage, size_t offset, Shape shape, DType dtype);
  // Host tensor holding a copy of `values`.
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, Shape shape = {});

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const;  // negative counts from the end
  int ndim() const { return int(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  size_t nbytes() const { return storage_bytes(dtype_, size_t(numel())); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t offset() const { return offset_; }

  void* raw_data() const { return static_cast<char*>(storage_->data()) + offset_; }
  template <typename T> T* data() const {
    check_type(dtype_of<T>::value);
    return static_cast<T*>(raw_data());
  }
  template <typename T> std::span<T> span() const { return {data<T>(), size_t(numel())}; }

  Tensor reshape(Shape shape) const;  // same storage, one dim may be -1
  Tensor rows(int64_t begin, int64_t end) const;  // slice of the first dimension
  Tensor to(Device device) const;                 // copy (or self when already there)
  Tensor clone() const;
  // Element-wise conversion between floating types (f32/f16/bf16), on the host.
  Tensor cast(DType dtype) const;

  std::string describe() const;  // "bf16[4096, 11008] on cpu"

 private:
  void check_type(DType expected) const;
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::F32;
};

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, Shape shape) {
  if (shape.empty()) shape = {int64_t(values.size())};
  if (shape_numel(shape) != int64_t(values.size()))
    throw_error("from_vector: shape " + shape_str(shape) + " does not hold " + std::to_string(values.size()) + " values");
  Tensor t = empty(shape, dtype_of<T>::value);
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

}  // namespace lowbit
