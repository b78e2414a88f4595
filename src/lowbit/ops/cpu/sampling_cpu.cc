#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/dispatch.h"

namespace lowbit::ops::cpu {

void argmax(const Tensor& x, Tensor& out) {
  const int64_t rows = x.dim(0), cols = x.dim(1);
  detail::dispatch_float("argmax", x.dtype(), [&]<typename T>(T) {
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = x.data<T>() + r * cols;
      int32_t best = 0;
      float best_value = -INFINITY;
      for (int64_t i = 0; i < cols; ++i) {
        const float v = detail::load(row[i]);
        if (std::isnan(v)) {
          best = -1;
          break;
        }
        if (v > best_value || i == 0) {
          best_value = v;
          best = int32_t(i);
        }
      }
      out.data<int32_t>()[r] = best;
    }
  });
}

void sample_token(const Tensor& x, const Tensor& previous, const SamplingParams& p, double u, Tensor& out) {
  const int64_t vocab = x.dim(1);
  int32_t& result = out.data<int32_t>()[0];
  std::vector<float> score(size_t(vocab), 0.0f);
  bool nan = false;
  const auto logit = [&](int64_t i) {
    return detail::dispatch_float("sample_token", x.dtype(), [&]<typename T>(T) { return detail::load(x.data<T>()[i]); });
  };
  detail::dispatch_float("sample_token", x.dtype(), [&]<typename T>(T) {
    for (int64_t i = 0; i < vocab; ++i) {
      const float v = detail::load(x.data<T>()[i]);
      nan |= std::isnan(v);
      score[size_t(i)] = p.temperature != 1.0f ? v / p.temperature : v;
    }
  });
  result = -1;
  if (nan) return;
  // From the logit, not the running score: a repeated id is penalized once.
  for (int64_t j = 0; j < previous.numel(); ++j) {
    const int32_t id = previous.data<int32_t>()[j];
    if (id < 0 || id >= vocab) continue;
    float v = logit(id);
    v = v < 0.0f ? v * p.repetition_penalty : v / p.repetition_penalty;
    score[size_t(id)] = p.temperature != 1.0f ? v / p.temperature : v;
  }

  std::vector<int32_t> kept;
  for (int64_t i = 0; i < vocab; ++i)
    if (score[size_t(i)] > -INFINITY) kept.push_back(int32_t(i));
  if (kept.empty()) return;
  // Descending score, then ascending id.
  const auto before = [&](int32_t a, int32_t b) {
    return score[size_t(a)] > score[size_t(b)] || (score[size_t(a)] == score[size_t(b)] && a < b);
  };
  if (p.top_k > 0 && size_t(p.top_k) < kept.size()) {
    std::vector<int32_t> order = kept;
    std::nth_element(order.begin(), order.begin() + (p.top_k - 1), order.end(), before);
    const float kth = score[size_t(order[size_t(p.top_k - 1)])];
    std::erase_if(kept, [&](int32_t id) { return score[size_t(id)] < kth; });
  }
  double max_score = -INFINITY;
  for (int32_t id : kept) max_score = std::max(max_score, double(score[size_t(id)]));
  std::vector<double> weight(size_t(vocab), 0.0);
  double total = 0.0;
  for (int32_t id : kept) total += weight[size_t(id)] = std::exp(double(score[size_t(id)]) - max_score);

  if (p.top_p < 1.0f) {
    // The nucleus is usually small: sort a growing prefix, not everything.
    const double target = double(p.top_p) * total;
    std::vector<int32_t> order = kept;
    size_t keep = 0;
    double above = 0.0;
    for (size_t sorted = std::min<size_t>(256, order.size());; sorted = std::min(sorted * 4, order.size())) {
      std::partial_sort(order.begin(), order.begin() + long(sorted), order.end(), before);
      above = 0.0;
      keep = 0;
      while (keep < sorted && above < target) above += weight[size_t(order[keep++])];
      if (above >= target || sorted == order.size()) break;
    }
    order.resize(keep);
    std::sort(order.begin(), order.end());
    kept = std::move(order);
    total = above;
  }

  // Inverse CDF in ascending id order.
  const double r = u * total;
  double cumulative = 0.0;
  for (int32_t id : kept) {
    cumulative += weight[size_t(id)];
    if (r < cumulative) {
      result = id;
      return;
    }
  }
  result = kept.back();
}

}  // namespace lowbit::ops::cpu
