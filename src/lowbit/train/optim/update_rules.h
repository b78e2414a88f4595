// The per-element update of every optimizer, shared by the CPU loops and the
// CUDA kernels so that both compute the same function.
//
// The arithmetic follows bitsandbytes' kernels term for term (csrc kernels
// kOptimizer32bit{1,2}State and kOptimizerStatic8bit{1,2}StateBlockwise): the
// same products, the same fused multiply-adds where nvcc contracts them, the
// same quirks (the 8-bit RMSprop/Adagrad step divides the raw gradient; the
// 32-bit 1-state kernels add weight decay to the gradient, Lion included), so
// that states re-quantize to the same codes. CUDA-safe: no fmt, no std::.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define LOWBIT_HD __host__ __device__ __forceinline__
#define LOWBIT_HD_ALWAYS LOWBIT_HD
#else
#define LOWBIT_HD inline
// Inlined into the CPU loops' FMA-targeted copies, so fmaf becomes one instruction.
#define LOWBIT_HD_ALWAYS __attribute__((always_inline)) inline
#endif

namespace lowbit::train::optim::detail {

// The update rules bitsandbytes has kernels for, plus AdEMAMix's three states.
enum class Rule : uint8_t { Adam, AdEMAMix, Momentum, Lion, RMSprop, Adagrad };

// Everything one step of one tensor needs, computed on the host.
struct StepParams {
  float lr = 0, beta1 = 0, beta2 = 0, beta3 = 0, alpha = 0, eps = 0, weight_decay = 0;
  int step = 1;
  float correction1 = 1;  // 1 - beta1^step
  float correction2 = 1;  // sqrt(1 - beta2^step)
  float step_size = 0;    // -lr * correction2 / correction1
  float gnorm_scale = 1;  // percentile clipping
  float update_scale = 1; // LAMB / LARS trust ratio
  bool nesterov = false;
};

// a / b: the device's fast division where bitsandbytes uses __fdividef.
LOWBIT_HD float fast_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdividef(a, b);
#else
  return a / b;
#endif
}

LOWBIT_HD float sign_of(float v) { return float((0.0f < v) - (v < 0.0f)); }

#if defined(__CUDACC__)
LOWBIT_HD bool finite_value(float v) { return !isnan(v) && !isinf(v); }
LOWBIT_HD bool sign_bit(float v) { return signbit(v); }
#else
inline bool finite_value(float v) { return !std::isnan(v) && !std::isinf(v); }
inline bool sign_bit(float v) { return std::signbit(v); }
#endif

constexpr int rule_states(Rule r) { return r == Rule::Adam ? 2 : r == Rule::AdEMAMix ? 3 : 1; }
// State i uses the signed dynamic map, except the second moment of Adam and
// AdEMAMix (the unsigned map); bitsandbytes' 1-state kernels all use the signed one.
constexpr bool state_signed(Rule r, int i) { return !((r == Rule::Adam || r == Rule::AdEMAMix) && i == 1); }

// One element. `s` holds the dequantized (or fp32) states on entry and the new
// ones on exit; `p` the parameter. kEightBit picks the 8-bit kernel's
// arithmetic where bitsandbytes' two kernels differ.
template <Rule R, bool kEightBit>
LOWBIT_HD_ALWAYS void update_element(const StepParams& a, float g_raw, float& p, float* s) {
  if constexpr (R == Rule::Adam || R == Rule::AdEMAMix) {
    float g = g_raw;
    if constexpr (kEightBit) {
      if (!finite_value(g)) {  // the 8-bit kernel zeroes the states and leaves p
        s[0] = 0.0f; s[1] = 0.0f;
        if constexpr (R == Rule::AdEMAMix) s[2] = 0.0f;
        return;
      }
      g *= a.gnorm_scale;
      s[1] = fmaf((1.0f - a.beta2) * g, g, s[1] * a.beta2);
    } else {
      g *= a.gnorm_scale;
      s[1] = fmaf(s[1], a.beta2, (1.0f - a.beta2) * (g * g));
    }
    // nvcc contracts the two kernels' identical source differently; these are
    // the forms whose results match bitsandbytes' states bit for bit.
    s[0] = kEightBit ? fmaf(1.0f - a.beta1, g, s[0] * a.beta1) : fmaf(s[0], a.beta1, (1.0f - a.beta1) * g);
    if constexpr (R == Rule::AdEMAMix) {
      s[2] = fmaf(s[2], a.beta3, (1.0f - a.beta3) * g);
      p = p - a.lr * (((s[0] / a.correction1) + (a.alpha * s[2])) / ((sqrtf(s[1]) / a.correction2) + a.eps));
    } else if constexpr (kEightBit) {
      p = fmaf(a.update_scale * a.step_size, fast_div(s[0], fmaf(a.correction2, a.eps, sqrtf(s[1]))), p);
    } else {
      p = fmaf(a.update_scale * a.step_size, s[0] / fmaf(a.eps, a.correction2, sqrtf(s[1])), p);
    }
    if (a.weight_decay > 0.0f) p = p * fmaf(-a.lr, a.weight_decay, 1.0f);
  } else {
    float g = g_raw * a.gnorm_scale;
    if (a.weight_decay > 0.0f) {
      if (kEightBit && R == Rule::Lion)
        p = p * fmaf(-a.lr, a.weight_decay, 1.0f);
      else
        g = fmaf(p, a.weight_decay, g);
    }
    if constexpr (R == Rule::Momentum) {
      s[0] = a.step == 1 ? g : fmaf(s[0], a.beta1, g);
      const float u = a.nesterov ? fmaf(s[0], a.beta1, g) : s[0];
      p = fmaf(-a.lr * a.update_scale, u, p);
    } else if constexpr (R == Rule::Lion) {
      const float u = a.lr * sign_of(fmaf(s[0], a.beta1, (1.0f - a.beta1) * g));
      p = p - a.update_scale * u;
      s[0] = fmaf(1.0f - a.beta2, g, s[0] * a.beta2);
    } else if constexpr (R == Rule::RMSprop) {
      if constexpr (kEightBit) {
        s[0] = fmaf(1.0f - a.beta1, g * g, s[0] * a.beta1);
        p = fmaf(-a.lr, fast_div(g_raw, sqrtf(s[0]) + a.eps), p);
      } else {
        s[0] = fmaf(s[0], a.beta1, ((1.0f - a.beta1) * g) * g);
        p = p - a.update_scale * (a.lr * fast_div(g, sqrtf(s[0]) + a.eps));
      }
    } else {  // Adagrad
      s[0] = fmaf(g, g, s[0]);
      p = fmaf(-a.lr, fast_div(kEightBit ? g_raw : g, sqrtf(s[0]) + a.eps), p);
    }
  }
}

// The squared norm of the update an element would get (LAMB / LARS trust
// ratio), as bitsandbytes' precondition kernels compute it: bias-corrected
// Adam update, or the new momentum; weight decay not included.
template <Rule R>
LOWBIT_HD float update_norm_term(const StepParams& a, float g, const float* s) {
  g *= a.gnorm_scale;
  if constexpr (R == Rule::Adam) {
    float m = fmaf(s[0], a.beta1, (1.0f - a.beta1) * g);
    float v = fmaf(s[1], a.beta2, (1.0f - a.beta2) * (g * g));
    m *= 1.0f / a.correction1;
    v *= 1.0f / (a.correction2 * a.correction2);
    const float u = m / (sqrtf(v) + a.eps);
    return u * u;
  } else {
    const float m = a.step == 1 ? g : fmaf(s[0], a.beta1, g);
    return m * m;
  }
}

// Nearest code search exactly as bitsandbytes' quantize_2D: a binary search
// over the sorted 256-value map starting at index 127 with steps 64..1, then a
// midpoint test against the neighbour on the side x lies. The seven internal
// levels are stored breadth-first (Eytzinger order) so that a warp's lanes
// read consecutive words; each of the 128 leaves (the even indices) keeps its
// value and both midpoints, which the search would compute the same way.
struct CodeSearch {
  float tree[128];      // internal nodes, breadth-first: tree[1] = code[127], children 2k, 2k+1
  float leaf[128];      // code[2j]
  float mid_up[128];    // (code[2j+1] + code[2j]) * 0.5 (upper neighbour; 1.0 past the end)
  float mid_down[128];  // (code[2j-1] + code[2j]) * 0.5 (lower neighbour; -1 or 0 before the start)
  float code[256];
};

// Fills the search tables from a sorted 256-value map.
inline void build_code_search(const float* code, CodeSearch& t) {
  // Node k of the breadth-first tree holds pivot 127 at the root; each level
  // moves by half the previous step (64, 32, ..., 1), down for the left child.
  struct Builder {
    CodeSearch& t;
    const float* code;
    void node(int k, int pivot, int step) {
      if (k >= 128) { return; }
      t.tree[k] = code[pivot];
      node(2 * k, pivot - step, step / 2);
      node(2 * k + 1, pivot + step, step / 2);
    }
  };
  Builder{t, code}.node(1, 127, 64);
  t.tree[0] = 0.0f;
  for (int j = 0; j < 128; ++j) {
    const int p = 2 * j;
    t.leaf[j] = code[p];
    t.mid_up[j] = ((p + 1 < 255 ? code[p + 1] : 1.0f) + code[p]) * 0.5f;
    t.mid_down[j] = p > 0 ? (code[p - 1] + code[p]) * 0.5f : code[p];
  }
  for (int i = 0; i < 256; ++i) t.code[i] = code[i];
}

LOWBIT_HD_ALWAYS uint8_t quantize_nearest(const CodeSearch& t, float x, bool is_signed, float state) {
  int node = 1;  // 1-based breadth-first index of the current pivot
  for (int level = 0; level < 7; ++level) node = 2 * node + (x > t.tree[node] ? 1 : 0);
  const int leaf = node - 128;  // pivot index 2 * leaf
  const int pivot = 2 * leaf;
  int c;
  if (x > t.leaf[leaf])
    c = x > t.mid_up[leaf] ? pivot + 1 : pivot;
  else
    c = (x < t.mid_down[leaf] && pivot > 0) ? pivot - 1 : pivot;
  uint8_t code = uint8_t(c);
  // Keep the sign of the state (not needed for the non-negative map).
  if (is_signed && sign_bit(t.code[c]) != sign_bit(state)) code = uint8_t(state > 0.0f ? c + 1 : c - 1);
  return code;
}

}  // namespace lowbit::train::optim::detail
