// The inner loop of the 4-bit GEMV: one weight row against x, with x split
// into its even and odd elements so that byte j's high nibble pairs with
// x_even[j] and its low nibble with x_odd[j] (no shuffles in the loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lowbit::ops::cpu {

void split_even_odd(const float* x, int64_t k, std::vector<float>& x_even, std::vector<float>& x_odd);

// Sum over one row of k weights (k a multiple of blocksize, blocksize a multiple of 4).
// make_table(code, absmax, table[16]) builds a block's 16 weight values.
template <typename MakeTable>
float gemv_row_4bit(const uint8_t* packed, const float* absmax, const float* code, int blocksize, int64_t k,
                    const float* x_even, const float* x_odd, MakeTable&& make_table);

// Vector kernel for the common case: tables already built per block.
float dot_4bit_tables(const uint8_t* packed, const float* tables, int blocksize, int64_t k, const float* x_even,
                      const float* x_odd);

template <typename MakeTable>
float gemv_row_4bit(const uint8_t* packed, const float* absmax, const float* code, int blocksize, int64_t k,
                    const float* x_even, const float* x_odd, MakeTable&& make_table) {
  const int64_t blocks = k / blocksize;
  thread_local std::vector<float> tables;
  tables.resize(size_t(blocks * 16));
  for (int64_t b = 0; b < blocks; ++b) make_table(code, absmax[b], tables.data() + b * 16);
  return dot_4bit_tables(packed, tables.data(), blocksize, k, x_even, x_odd);
}

}  // namespace lowbit::ops::cpu
