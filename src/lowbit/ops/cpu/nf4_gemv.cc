#include "ops/cpu/nf4_gemv.h"

namespace lowbit::ops::cpu {

void split_even_odd(const float* x, int64_t k, std::vector<float>& x_even, std::vector<float>& x_odd) {
  x_even.resize(size_t((k + 1) / 2));
  x_odd.resize(size_t(k / 2));
  for (int64_t i = 0; i < k; ++i) (i % 2 ? x_odd : x_even)[size_t(i / 2)] = x[i];
}

float dot_4bit_tables(const uint8_t* packed, const float* tables, int blocksize, int64_t k, const float* x_even,
                      const float* x_odd) {
  const int64_t bytes_per_block = blocksize / 2;
  float acc[4] = {};
  for (int64_t b = 0; b < k / blocksize; ++b) {
    const float* table = tables + b * 16;
    const uint8_t* p = packed + b * bytes_per_block;
    const float* xe = x_even + b * bytes_per_block;
    const float* xo = x_odd + b * bytes_per_block;
    for (int64_t j = 0; j < bytes_per_block; j += 2) {
      acc[0] += xe[j] * table[p[j] >> 4];
      acc[1] += xo[j] * table[p[j] & 15];
      acc[2] += xe[j + 1] * table[p[j + 1] >> 4];
      acc[3] += xo[j + 1] * table[p[j + 1] & 15];
    }
  }
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

}  // namespace lowbit::ops::cpu
