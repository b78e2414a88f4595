// Kernel entry points of the optimizers, one call per tensor (or per chunk of
// a paged tensor). Pointers are host pointers for cpu::, device pointers for
// cuda::. Bits 8: codes/absmax used; bits 32: state32 used.
#pragma once

#include <cstdint>

#include "train/optim/update_rules.h"

namespace lowbit::train::optim::detail {

struct TensorStep {
  float* p = nullptr;
  const float* g = nullptr;
  int64_t n = 0;
  int bits = 32;
  float* state32[3] = {nullptr, nullptr, nullptr};
  uint8_t* codes[3] = {nullptr, nullptr, nullptr};
  float* absmax[3] = {nullptr, nullptr, nullptr};
  const CodeSearch* search_signed = nullptr;    // host or device copy
  const CodeSearch* search_unsigned = nullptr;
};

inline constexpr int kQuantBlock = 256;

// Element i's states as the update reads them: f32, or an 8-bit code times
// its block's absmax (the CPU loops and the CUDA kernels alike).
template <Rule R>
LOWBIT_HD void load_states(const TensorStep& t, int64_t i, float* s) {
  for (int k = 0; k < rule_states(R); ++k) {
    if (t.bits == 32) {
      s[k] = t.state32[k][i];
    } else {
      const CodeSearch* cs = state_signed(R, k) ? t.search_signed : t.search_unsigned;
      s[k] = cs->code[t.codes[k][i]] * t.absmax[k][i / kQuantBlock];
    }
  }
}

namespace cpu {
void update(Rule rule, const StepParams& params, const TensorStep& t);
// Sum over elements of update_norm_term (LAMB/LARS).
double update_norm(Rule rule, const StepParams& params, const TensorStep& t);
double squared_norm(const float* x, int64_t n);
}  // namespace cpu

namespace cuda {
void update(Rule rule, const StepParams& params, const TensorStep& t, void* stream);
double update_norm(Rule rule, const StepParams& params, const TensorStep& t);
double squared_norm(const float* x, int64_t n);
// A device copy of the search tables.
const CodeSearch* upload_search(const CodeSearch& host);
void free_search(const CodeSearch* device);

// Paged step: t's state pointers are pinned host memory; p and g are on the
// device. Streams state through two device buffers of chunk_elements each.
class PagedStager {
 public:
  PagedStager(int64_t chunk_elements, int num_states, int bits);
  ~PagedStager();
  PagedStager(const PagedStager&) = delete;
  PagedStager& operator=(const PagedStager&) = delete;
  void update(Rule rule, const StepParams& params, const TensorStep& host_state);
  int64_t chunk_elements() const { return chunk_; }
  size_t device_bytes() const;

 private:
  struct Buffers;
  int64_t chunk_;
  int num_states_, bits_;
  Buffers* b_;
};
}  // namespace cuda

}  // namespace lowbit::train::optim::detail
