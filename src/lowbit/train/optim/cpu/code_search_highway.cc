// Vectorized nearest-code search (code_search_highway.h): the seven tree
// levels and the midpoint test of quantize_nearest, lane by lane with
// gathers, then the same sign correction. Remainder lanes take the scalar
// function itself.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/optim/cpu/code_search_highway.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "train/optim/cpu/code_search_highway.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::train::optim::detail::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void quantize_block(const CodeSearch& t, const float* s, int n, float absmax, bool is_signed, uint8_t* codes) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(di)> d8;
  const int N = int(hn::Lanes(df));
  const auto scale = hn::Set(df, absmax);
  const auto one = hn::Set(di, 1), zero_i = hn::Zero(di);
  int j = 0;
  for (; j + N <= n; j += N) {
    const auto state = hn::LoadU(df, s + j);
    const auto x = hn::Div(state, scale);
    // Breadth-first tree: node k's children are 2k and 2k + 1 (right when x > pivot).
    auto node = one;
    for (int level = 0; level < 7; ++level) {
      const auto right = hn::RebindMask(di, hn::Gt(x, hn::GatherIndex(df, t.tree, node)));
      node = hn::Sub(hn::Add(node, node), hn::VecFromMask(di, right));  // mask is -1 when set
    }
    const auto leaf = hn::Sub(node, hn::Set(di, 128));
    const auto pivot = hn::Add(leaf, leaf);
    const auto above = hn::RebindMask(di, hn::Gt(x, hn::GatherIndex(df, t.leaf, leaf)));
    const auto up = hn::RebindMask(di, hn::Gt(x, hn::GatherIndex(df, t.mid_up, leaf)));
    const auto down = hn::And(hn::RebindMask(di, hn::Lt(x, hn::GatherIndex(df, t.mid_down, leaf))),
                              hn::Gt(pivot, zero_i));
    auto c = hn::IfThenElse(above, hn::IfThenElse(up, hn::Add(pivot, one), pivot),
                            hn::IfThenElse(down, hn::Sub(pivot, one), pivot));
    if (is_signed) {
      // The code's sign bit differs from the state's: step toward the state.
      const auto code_value = hn::GatherIndex(df, t.code, c);
      const auto flipped = hn::Lt(hn::Xor(hn::BitCast(di, code_value), hn::BitCast(di, state)), zero_i);
      const auto positive = hn::RebindMask(di, hn::Gt(state, hn::Zero(df)));
      c = hn::IfThenElse(flipped, hn::IfThenElse(positive, hn::Add(c, one), hn::Sub(c, one)), c);
    }
    hn::StoreU(hn::DemoteTo(d8, c), d8, codes + j);
  }
  for (; j < n; ++j) codes[j] = quantize_nearest(t, s[j] / absmax, is_signed, s[j]);
}

}  // namespace lowbit::train::optim::detail::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::train::optim::detail::cpu {

HWY_EXPORT(quantize_block);

void quantize_nearest_block(const CodeSearch& t, const float* s, int n, float absmax, bool is_signed, uint8_t* codes) {
  HWY_DYNAMIC_DISPATCH(quantize_block)(t, s, n, absmax, is_signed, codes);
}

}  // namespace lowbit::train::optim::detail::cpu
#endif  // HWY_ONCE
