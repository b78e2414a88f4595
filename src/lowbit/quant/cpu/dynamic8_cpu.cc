// Dynamic 8-bit blockwise kernels and absmax double quantization on the CPU.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "lowbit/quant/formats.h"
#include "lowbit/quant/kernels.h"
#include "quant/cpu/block_parallel.h"
#include "quant/cpu/dynamic8_highway.h"
#include "quant/cpu/reference.h"
#include "quant/cpu/scalar.h"

namespace lowbit::quant::cpu {
namespace {

void build_search(const float* code, DynamicSearch& s) {
  s.code = code;
  s.usable = true;
  for (int k = 0; k < 255; ++k) {
    const float mid = (code[k] + code[k + 1]) * 0.5f;
    // A tie goes to the even code: for odd k the midpoint itself counts.
    s.threshold[size_t(k)] = (k & 1) ? std::nextafter(mid, -std::numeric_limits<float>::infinity()) : mid;
    if (!(code[k] < code[k + 1])) s.usable = false;  // the search assumes a strictly sorted map
  }
  s.threshold[255] = std::numeric_limits<float>::infinity();
  auto count = [&](float v) {
    return int32_t(std::lower_bound(s.threshold.begin(), s.threshold.begin() + 255, v) - s.threshold.begin());
  };
  // Inside a bucket (same sign, exponent and top 7 mantissa bits) values
  // order like their low 16 bits, reversed for negative numbers; the kernel
  // flips those bits for negatives so that a plain integer `>` decides.
  s.bucket.assign(65536, 0xffff);
  for (uint32_t key = 0; key < 65536; ++key) {
    const float first = std::bit_cast<float>(key << 16), last = std::bit_cast<float>(key << 16 | 0xffffu);
    if (std::isnan(first) || std::isnan(last)) continue;  // NaN is masked to code 0
    const float low = std::min(first, last), high = std::max(first, last);
    const int32_t base = count(low);
    if (count(high) - base > 1) s.usable = false;
    uint32_t inside = 0xffff;
    const float t = s.threshold[size_t(std::min(base, 255))];
    const uint32_t tb = std::bit_cast<uint32_t>(t);
    if (base < 255 && (tb >> 16) == key) inside = (tb & 0xffffu) ^ ((key & 0x8000u) ? 0xffffu : 0u);
    s.bucket[key] = int32_t(uint32_t(base) << 16 | inside);
  }
}

}  // namespace

const DynamicSearch& dynamic_search(const float* code, DynamicSearch& scratch) {
  static const DynamicSearch signed_map = [] {
    DynamicSearch s;
    build_search(dynamic_map_signed().data(), s);
    return s;
  }();
  if (code == signed_map.code || std::memcmp(code, signed_map.code, 256 * sizeof(float)) == 0) return signed_map;
  build_search(code, scratch);
  return scratch;
}

uint8_t quantize_dynamic_scaled(const float* code, float x) { return scalar::quantize_dynamic(code, x); }

template <typename T>
void quantize_dynamic8(const T* x, int64_t n, const float* code, int blocksize, uint8_t* codes, float* absmax) {
  DynamicSearch scratch;
  const DynamicSearch& search = dynamic_search(code, scratch);
  for_block_runs(n, blocksize, [&](int64_t lo, int64_t hi, int64_t b) {
    quantize_dynamic8_run(x + lo, hi - lo, search, blocksize, codes + lo, absmax + b);
  });
}

template <typename T>
void dequantize_dynamic8(const uint8_t* codes, const float* absmax, const float* code, int64_t n, int blocksize,
                         T* out) {
  for_block_runs(n, blocksize, [&](int64_t lo, int64_t hi, int64_t b) {
    dequantize_dynamic8_run(codes + lo, absmax + b, code, hi - lo, blocksize, out + lo);
  });
}

void dequantize_nested_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* code,
                              int64_t blocks, int nested_blocksize, float offset, float* out) {
  const int64_t grain = std::max<int64_t>(nested_blocksize, kElementsPerChunk);
  parallel_for(0, size_t(blocks), size_t(grain), [&](size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; ++i) out[i] = code[qabsmax[i]] * nested_absmax[i / size_t(nested_blocksize)] + offset;
  });
}

float quantize_nested_absmax(const float* absmax, int64_t blocks, const float* code, int nested_blocksize,
                             uint8_t* qabsmax, float* nested_absmax) {
  if (blocks == 0) return 0.0f;
  const float offset = scalar::torch_cuda_mean(absmax, blocks);
  std::vector<float> centered(static_cast<size_t>(blocks));
  for (int64_t i = 0; i < blocks; ++i) centered[size_t(i)] = absmax[i] - offset;
  quantize_dynamic8(centered.data(), blocks, code, nested_blocksize, qabsmax, nested_absmax);
  return offset;
}

#define INSTANTIATE(T)                                                                                   \
  template void quantize_dynamic8<T>(const T*, int64_t, const float*, int, uint8_t*, float*);          \
  template void dequantize_dynamic8<T>(const uint8_t*, const float*, const float*, int64_t, int, T*);
LOWBIT_QUANT_FOR_FLOAT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace lowbit::quant::cpu
