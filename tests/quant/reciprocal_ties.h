// bitsandbytes' CUDA build computes 1/absmax with the GPU's approximate
// reciprocal (faithful: the correctly rounded value or its neighbour on the
// other side of 1/absmax). lowbit uses the correctly rounded reciprocal. Where
// x * (1/absmax) lands exactly on a decision threshold the two may pick
// neighbouring codes; tests accept a differing code only when a reciprocal
// one ulp up or down reproduces bitsandbytes' code.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>

namespace lowbit::quant::ties {

struct TieCount {
  int64_t explained = 0;    // codes that differ only by the reciprocal's last bit
  int64_t unexplained = 0;  // real disagreements
};

// got/want(i): codes of element i; x(i): the input; scale(i): 1/absmax of its
// block; code_of(v): the code for a scaled value v.
inline TieCount compare_codes(int64_t n, const std::function<int(int64_t)>& got,
                              const std::function<int(int64_t)>& want, const std::function<float(int64_t)>& x,
                              const std::function<float(int64_t)>& scale, const std::function<int(float)>& code_of) {
  TieCount count;
  for (int64_t i = 0; i < n; ++i) {
    const int w = want(i);
    if (got(i) == w) continue;
    const float r = scale(i);
    const bool ok = code_of(x(i) * std::nextafter(r, -INFINITY)) == w || code_of(x(i) * std::nextafter(r, INFINITY)) == w;
    (ok ? count.explained : count.unexplained)++;
  }
  return count;
}

inline int nibble(const uint8_t* packed, int64_t i) { return (i & 1) ? (packed[i / 2] & 15) : (packed[i / 2] >> 4); }

}  // namespace lowbit::quant::ties
