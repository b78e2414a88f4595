// Small layers of a decoder: RMSNorm and token embedding.
#pragma once

#include "lowbit/core/tensor.h"

namespace lowbit::nn {

struct RMSNorm {
  Tensor weight;  // [dim]
  float eps = 1e-6f;
  // x [rows, dim] -> same shape and dtype.
  Tensor forward(const Tensor& x) const;
};

struct Embedding {
  Tensor table;  // [vocab, dim]
  // ids i32 [n] -> [n, dim] in `dtype`.
  Tensor forward(const Tensor& ids, DType dtype) const;
};

}  // namespace lowbit::nn
