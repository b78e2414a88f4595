// Entry points of the vectorized dynamic 8-bit kernels
// (dynamic8_highway.cc) and the search tables they use. Single-threaded:
// dynamic8_cpu.cc spreads runs of blocks over the thread pool.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "lowbit/core/half.h"

namespace lowbit::quant::cpu {

// Nearest-code search for one sorted 256-value map (see dynamic8_highway.cc).
struct DynamicSearch {
  const float* code = nullptr;       // the map (not owned)
  bool usable = false;               // false: a bucket holds two thresholds; use the reference
  // [65536] by the top 16 bits of x: (code at the bucket's low end) << 16 |
  // the one threshold inside the bucket as 16 ordered low bits (0xffff: none).
  std::vector<int32_t> bucket;
  std::array<float, 256> threshold;  // thr[k] as described; thr[255] = +Inf
};
// Builds the tables for `code` (about a millisecond); the signed dynamic map's
// are built once and kept.
const DynamicSearch& dynamic_search(const float* code, DynamicSearch& scratch);

void quantize_dynamic8_run(const float* x, int64_t n, const DynamicSearch& s, int bs, uint8_t* codes, float* absmax);
void quantize_dynamic8_run(const f16* x, int64_t n, const DynamicSearch& s, int bs, uint8_t* codes, float* absmax);
void quantize_dynamic8_run(const bf16* x, int64_t n, const DynamicSearch& s, int bs, uint8_t* codes, float* absmax);
void dequantize_dynamic8_run(const uint8_t* c, const float* a, const float* code, int64_t n, int bs, float* out);
void dequantize_dynamic8_run(const uint8_t* c, const float* a, const float* code, int64_t n, int bs, f16* out);
void dequantize_dynamic8_run(const uint8_t* c, const float* a, const float* code, int64_t n, int bs, bf16* out);

}  // namespace lowbit::quant::cpu
