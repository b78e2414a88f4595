// Per-value quantizers of bitsandbytes, written once and shared by the
// reference and the vectorized kernels (the vector code must agree with them
// bit for bit, and tests check that it does).
#pragma once

#include <cfloat>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "quant/dynamic_map_search.h"

namespace lowbit::quant::scalar {

// bitsandbytes' dQuantizeNF4: a decision tree on the midpoints between
// neighbouring NF4 values (as f32 literals), strict `>` comparisons; NaN
// fails every comparison and lands on code 0.
inline uint8_t quantize_nf4(float x) {
  if (x > 0.03979014977812767f) {
    if (x > 0.3893125355243683f) {
      if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 0b1111 : 0b1110;
      return x > 0.5016634166240692f ? 0b1101 : 0b1100;
    }
    if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 0b1011 : 0b1010;
    return x > 0.1202552504837513f ? 0b1001 : 0b1000;
  }
  if (x > -0.33967943489551544f) {
    if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 0b0111 : 0b0110;
    return x > -0.23460740596055984f ? 0b0101 : 0b0100;
  }
  if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 0b0011 : 0b0010;
  return x > -0.8480964004993439f ? 0b0001 : 0b0000;
}

// The NF4 thresholds in code order: code = number of thresholds below x.
// Equivalent to the tree above for every non-NaN x (the tree is a binary
// search over these with strict `>`), which is what vector code uses.
inline constexpr float kNF4Thresholds[15] = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
    0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f};

// bitsandbytes' dQuantizeFP4: sign bit (x < 0) plus a tree on |x|.
inline uint8_t quantize_fp4(float x) {
  const uint8_t sign = x < 0 ? 0b1000 : 0b0000;
  x = std::fabs(x);
  if (x > 0.29166667f) {
    if (x > 0.583333f) return uint8_t((x > 0.8333333f ? 0b0011 : 0b0010) + sign);
    return uint8_t((x > 0.4166667f ? 0b0101 : 0b0100) + sign);
  }
  if (x > 0.0859375f) return uint8_t((x > 0.20833333f ? 0b0111 : 0b0110) + sign);
  return uint8_t((x > 0.00260417f ? 0b0001 : 0b0000) + sign);
}

// The FP4 magnitude thresholds in increasing order and the 3-bit code for
// "number of thresholds below |x|" (FP4 codes are not monotonic in value).
inline constexpr float kFP4Thresholds[7] = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                            0.4166667f, 0.583333f, 0.8333333f};
inline constexpr uint8_t kFP4CodeByRank[8] = {0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011};

// bitsandbytes' dQuantize<0> on a sorted 256-entry map (quant/dynamic_map_search.h).
using quant::quantize_dynamic;

// Absmax of a block as bitsandbytes' CUDA kernel reduces it: fmaxf skips NaN;
// a full block starts from -FLT_MAX, a partial last block also sees the zeros
// the kernel pads it with.
inline float block_absmax_start(bool partial) { return partial ? 0.0f : -FLT_MAX; }

// __float2int_rn as used by the int8 kernel, stored into int8: nearest-even,
// NaN -> 0, saturating to int32, then truncated to 8 bits like the C cast.
inline int8_t float_to_int8_rn(float v) {
  if (std::isnan(v)) return 0;
  const float r = std::nearbyint(v);
  int32_t i;
  if (r >= 2147483648.0f) i = INT32_MAX;
  else if (r < -2147483648.0f) i = INT32_MIN;
  else i = int32_t(r);
  return int8_t(uint8_t(uint32_t(i) & 0xffu));
}

// torch.mean of a contiguous f32 vector as PyTorch's CUDA reduction computes
// it (bitsandbytes takes the double-quantization offset this way): threads
// stride over the input with four accumulators each, then a shared-memory and
// warp-shuffle tree, then sum * (1/n). The thread count was fitted to and
// checked against bitsandbytes' offsets for 4..2752 values; beyond one CUDA
// block's worth of work (about 128K values) the order may differ from torch's
// by the last bit.
inline float torch_cuda_mean(const float* x, int64_t n) {
  if (n <= 0) return 0.0f;
  int64_t width = 1;
  while (width * 2 <= n / 2 && width < 512) width *= 2;
  std::vector<float> lanes(static_cast<size_t>(width));
  for (int64_t lane = 0; lane < width; ++lane) {
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int64_t idx = lane;
    for (; idx + 3 * width < n; idx += 4 * width)
      for (int k = 0; k < 4; ++k) acc[k] += x[idx + k * width];
    for (int k = 0; k < 4 && idx < n; ++k, idx += width) acc[k] += x[idx];
    lanes[size_t(lane)] = ((acc[0] + acc[1]) + acc[2]) + acc[3];
  }
  int64_t dim = width;
  for (int64_t offset = dim / 2; dim > 32 && offset >= 32; offset /= 2)
    for (int64_t l = 0; l < offset; ++l) lanes[size_t(l)] += lanes[size_t(l + offset)];
  dim = std::min<int64_t>(dim, 32);
  // Shuffle-down tree: ascending order reads each partner before it changes.
  for (int64_t offset = 1; offset < dim; offset *= 2)
    for (int64_t l = 0; l + offset < dim; ++l) lanes[size_t(l)] += lanes[size_t(l + offset)];
  return lanes[0] * (1.0f / float(n));
}

}  // namespace lowbit::quant::scalar
