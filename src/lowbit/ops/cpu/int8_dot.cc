#include "ops/cpu/int8_dot.h"

namespace lowbit::ops::cpu {

int32_t dot_i8(const int8_t* a, const int8_t* b, int64_t n) {
  int32_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += int32_t(a[i]) * int32_t(b[i]);
  return acc;
}

}  // namespace lowbit::ops::cpu
