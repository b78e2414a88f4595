// CPU loops around the shared element rules (update_rules.h).
//
// 8-bit: one pass per 256-value block: dequantize each state, update the
// element and the parameter, take the block's new absmax, re-quantize. The
// last partial block is padded as bitsandbytes pads it (gradient 0, codes 128
// for signed states and 0 for the unsigned one), and the padding takes part in
// the absmax, so the codes agree on any length.
#include <algorithm>
#include <cmath>

#include "lowbit/core/thread_pool.h"
#include "train/optim/cpu/code_search_highway.h"
#include "train/optim/kernels.h"

namespace lowbit::train::optim::detail::cpu {
namespace {

template <Rule R>
void update_32bit(const StepParams& a, const TensorStep& t) {
  constexpr int S = rule_states(R);
  parallel_for(0, size_t(t.n), 1 << 15, [&](size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; ++i) {
      float s[3];
      for (int k = 0; k < S; ++k) s[k] = t.state32[k][i];
      float p = t.p[i];
      update_element<R, false>(a, t.g[i], p, s);
      t.p[i] = p;
      for (int k = 0; k < S; ++k) t.state32[k][i] = s[k];
    }
  });
}

// Blocks [lo, hi) of an 8-bit tensor.
template <Rule R>
__attribute__((always_inline)) inline void update_8bit_blocks(const StepParams& a, const TensorStep& t, size_t lo, size_t hi) {
  constexpr int S = rule_states(R);
  const CodeSearch* search[3];
  uint8_t pad_code[3];
  for (int k = 0; k < S; ++k) {
    search[k] = state_signed(R, k) ? t.search_signed : t.search_unsigned;
    pad_code[k] = state_signed(R, k) ? 128 : 0;
  }
  float s[3][kQuantBlock];
  for (size_t b = lo; b < hi; ++b) {
    const int64_t base = int64_t(b) * kQuantBlock;
    const int valid = int(std::min<int64_t>(kQuantBlock, t.n - base));
    float old_absmax[3], new_absmax[3];
    for (int k = 0; k < S; ++k) {
      old_absmax[k] = t.absmax[k][b];
      new_absmax[k] = -3.402823466e38f;
    }
    for (int j = 0; j < kQuantBlock; ++j) {
      const bool in = j < valid;
      float e[3];
      for (int k = 0; k < S; ++k) e[k] = search[k]->code[in ? t.codes[k][base + j] : pad_code[k]] * old_absmax[k];
      float p = in ? t.p[base + j] : 0.0f;
      update_element<R, true>(a, in ? t.g[base + j] : 0.0f, p, e);
      if (in) t.p[base + j] = p;
      for (int k = 0; k < S; ++k) {
        s[k][j] = e[k];
        new_absmax[k] = std::fmax(new_absmax[k], std::fabs(e[k]));
      }
    }
    for (int k = 0; k < S; ++k) {
      t.absmax[k][b] = new_absmax[k];
      quantize_nearest_block(*search[k], s[k], valid, new_absmax[k], state_signed(R, k), t.codes[k] + base);
    }
  }
}

// The same blocks compiled for processors with FMA: the rules' fused
// multiply-adds become single instructions instead of calls into libm. The
// results are the same bits (fmaf is exact either way; the build does not
// contract other expressions).
#if defined(__x86_64__) && defined(__GNUC__)
template <Rule R>
__attribute__((target("fma"))) void update_8bit_blocks_fma(const StepParams& a, const TensorStep& t, size_t lo,
                                                            size_t hi) {
  update_8bit_blocks<R>(a, t, lo, hi);
}
bool has_fma() {
  static const bool yes = __builtin_cpu_supports("fma");
  return yes;
}
#endif

template <Rule R>
void update_8bit(const StepParams& a, const TensorStep& t) {
  const int64_t blocks = (t.n + kQuantBlock - 1) / kQuantBlock;
  parallel_for(0, size_t(blocks), 16, [&](size_t lo, size_t hi) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (has_fma()) return update_8bit_blocks_fma<R>(a, t, lo, hi);
#endif
    update_8bit_blocks<R>(a, t, lo, hi);
  });
}

template <Rule R>
double update_norm_rule(const StepParams& a, const TensorStep& t) {
  std::vector<double> parts(size_t((t.n + 65535) / 65536), 0.0);
  parallel_for(0, parts.size(), 1, [&](size_t lo, size_t hi) {
    for (size_t c = lo; c < hi; ++c) {
      double sum = 0;
      const int64_t end = std::min<int64_t>(t.n, int64_t(c + 1) * 65536);
      for (int64_t i = int64_t(c) * 65536; i < end; ++i) {
        float s[3];
        load_states<R>(t, i, s);
        sum += update_norm_term<R == Rule::Adam ? Rule::Adam : Rule::Momentum>(a, t.g[i], s);
      }
      parts[c] = sum;
    }
  });
  double total = 0;
  for (double v : parts) total += v;
  return total;
}

template <Rule R>
void dispatch_bits(const StepParams& a, const TensorStep& t) {
  if (t.bits == 8)
    update_8bit<R>(a, t);
  else
    update_32bit<R>(a, t);
}

}  // namespace

void update(Rule rule, const StepParams& a, const TensorStep& t) {
  switch (rule) {
    case Rule::Adam: return dispatch_bits<Rule::Adam>(a, t);
    case Rule::AdEMAMix: return dispatch_bits<Rule::AdEMAMix>(a, t);
    case Rule::Momentum: return dispatch_bits<Rule::Momentum>(a, t);
    case Rule::Lion: return dispatch_bits<Rule::Lion>(a, t);
    case Rule::RMSprop: return dispatch_bits<Rule::RMSprop>(a, t);
    case Rule::Adagrad: return dispatch_bits<Rule::Adagrad>(a, t);
  }
}

double update_norm(Rule rule, const StepParams& a, const TensorStep& t) {
  return rule == Rule::Adam ? update_norm_rule<Rule::Adam>(a, t) : update_norm_rule<Rule::Momentum>(a, t);
}

double squared_norm(const float* x, int64_t n) {
  std::vector<double> parts(size_t((n + 65535) / 65536), 0.0);
  parallel_for(0, parts.size(), 1, [&](size_t lo, size_t hi) {
    for (size_t c = lo; c < hi; ++c) {
      double sum = 0;
      const int64_t end = std::min<int64_t>(n, int64_t(c + 1) * 65536);
      for (int64_t i = int64_t(c) * 65536; i < end; ++i) sum += double(x[i]) * x[i];
      parts[c] = sum;
    }
  });
  double total = 0;
  for (double v : parts) total += v;
  return total;
}

}  // namespace lowbit::train::optim::detail::cpu
