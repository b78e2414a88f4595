// int8 x int8 dot product with int32 accumulation (exact).
#pragma once

#include <cstdint>

namespace lowbit::ops::cpu {

int32_t dot_i8(const int8_t* a, const int8_t* b, int64_t n);

}  // namespace lowbit::ops::cpu
