#include "lowbit/nn/layers.h"

#include "lowbit/ops/elementwise.h"
#include "lowbit/ops/norm.h"

namespace lowbit::nn {

Tensor RMSNorm::forward(const Tensor& x) const {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::rms_norm(x, weight, eps, out);
  return out;
}

Tensor Embedding::forward(const Tensor& ids, DType dtype) const {
  Tensor out = Tensor::empty({ids.dim(0), table.dim(1)}, dtype, ids.device());
  ops::embedding(ids, table, out);
  return out;
}

}  // namespace lowbit::nn
