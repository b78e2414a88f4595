#include <cmath>

#include "ops/cpu/cpu_ops.h"
#include "ops/dispatch.h"

namespace lowbit::ops::cpu {

void argmax(const Tensor& x, Tensor& out) {
  const int64_t rows = x.dim(0), cols = x.dim(1);
  detail::dispatch_float("argmax", x.dtype(), [&]<typename T>(T) {
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = x.data<T>() + r * cols;
      int32_t best = 0;
      float best_value = -INFINITY;
      for (int64_t i = 0; i < cols; ++i) {
        const float v = detail::load(row[i]);
        if (std::isnan(v)) {
          best = -1;
          break;
        }
        if (v > best_value || i == 0) {
          best_value = v;
          best = int32_t(i);
        }
      }
      out.data<int32_t>()[r] = best;
    }
  });
}

}  // namespace lowbit::ops::cpu
