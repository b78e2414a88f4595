// Re-quantization of an 8-bit optimizer state block, vectorized (Highway,
// dispatched at run time): codes[j] = quantize_nearest(t, s[j] / absmax,
// is_signed, s[j]) for j < n, the same bits as the scalar search of
// update_rules.h, whose seven dependent table lookups per value dominated the
// CPU 8-bit step.
#pragma once

#include <cstdint>

#include "train/optim/update_rules.h"

namespace lowbit::train::optim::detail::cpu {

void quantize_nearest_block(const CodeSearch& t, const float* s, int n, float absmax, bool is_signed, uint8_t* codes);

}  // namespace lowbit::train::optim::detail::cpu
