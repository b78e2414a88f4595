#include <algorithm>
#include <cmath>
#include <functional>
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
  // Per-thread buffers kept from call to call: fresh ones of a large
  // vocabulary's size cost more in page faults than the sampling itself.
  thread_local std::vector<float> score, values;
  thread_local std::vector<int32_t> kept, order;
  thread_local std::vector<double> weight;
  score.resize(size_t(vocab));
  bool nan = false;
  const auto logit = [&](int64_t i) {
    return detail::dispatch_float("sample_token", x.dtype(),
                                  [&]<typename T>(T) { return detail::load(x.data<T>()[i]); });
  };
  detail::dispatch_float("sample_token", x.dtype(), [&]<typename T>(T) {
    const T* row = x.data<T>();
    for (int64_t i = 0; i < vocab; ++i) {
      const float v = detail::load(row[i]);
      nan |= std::isnan(v);
      score[size_t(i)] = p.temperature != 1.0f ? v / p.temperature : v;
    }
  });
  result = -1;
  if (nan) return;
  // From the logit, not the running score: a repeated id is penalized once.
  const int32_t* prev = previous.data<int32_t>();
  for (int64_t j = 0; j < previous.numel(); ++j) {
    const int32_t id = prev[j];
    if (id < 0 || id >= vocab) continue;
    float v = logit(id);
    v = v < 0.0f ? v * p.repetition_penalty : v / p.repetition_penalty;
    score[size_t(id)] = p.temperature != 1.0f ? v / p.temperature : v;
  }

  kept.clear();
  for (int64_t i = 0; i < vocab; ++i)
    if (score[size_t(i)] > -INFINITY) kept.push_back(int32_t(i));
  if (kept.empty()) return;
  // Descending score, then ascending id.
  const auto before = [&](int32_t a, int32_t b) {
    return score[size_t(a)] > score[size_t(b)] || (score[size_t(a)] == score[size_t(b)] && a < b);
  };
  if (p.top_k > 0 && size_t(p.top_k) < kept.size()) {
    // The k-th largest value (ties do not move it): a selection over the
    // values themselves, not over ids compared through the scores.
    values.resize(kept.size());
    for (size_t i = 0; i < kept.size(); ++i) values[i] = score[size_t(kept[i])];
    std::nth_element(values.begin(), values.begin() + (p.top_k - 1), values.end(), std::greater<float>());
    const float kth = values[size_t(p.top_k - 1)];
    std::erase_if(kept, [&](int32_t id) { return score[size_t(id)] < kth; });
  }
  double max_score = -INFINITY;
  for (int32_t id : kept) max_score = std::max(max_score, double(score[size_t(id)]));
  weight.resize(size_t(vocab));  // only kept ids are read
  double total = 0.0;
  for (int32_t id : kept) total += weight[size_t(id)] = std::exp(double(score[size_t(id)]) - max_score);

  if (p.top_p < 1.0f) {
    // The nucleus is usually small: sort a growing prefix, not everything.
    const double target = double(p.top_p) * total;
    order.assign(kept.begin(), kept.end());
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
    kept.assign(order.begin(), order.end());
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
