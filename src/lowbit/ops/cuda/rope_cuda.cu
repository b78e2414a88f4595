// RoPE on the GPU, in place: one thread per rotated pair (x[i], x[i + half])
// of one head of one token. cos/sin come from the f32 tables (device copies of
// ops::rope_tables) and are rounded to x's dtype first; each product and the
// sum are rounded, as `q * cos + rotate_half(q) * sin` in PyTorch.
#include "lowbit/core/tensor.h"
#include "ops/cuda/ops_cuda.h"
#include "ops/cuda/reduce_cuda.h"

namespace lowbit::ops::cuda {
namespace {

template <typename T>
__global__ void rope_kernel(T* x, const float* cos_table, const float* sin_table, int64_t first_position,
                            int64_t tokens, int64_t heads, int64_t half) {
  const int64_t pairs = tokens * heads * half;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = p % half, row = p / half, t = row / heads;
    const int64_t at = (first_position + t) * half + i;
    const float c = round_to<T>(cos_table[at]), s = round_to<T>(sin_table[at]);
    T* v = x + row * 2 * half;
    const float a = to_float(v[i]), b = to_float(v[i + half]);
    // __fmul_rn / __fadd_rn: no FMA contraction, so f32 matches the CPU too.
    v[i] = from_float<T>(__fadd_rn(round_to<T>(__fmul_rn(a, c)), round_to<T>(__fmul_rn(-b, s))));
    v[i + half] = from_float<T>(__fadd_rn(round_to<T>(__fmul_rn(b, c)), round_to<T>(__fmul_rn(a, s))));
  }
}

}  // namespace

void apply_rope(Tensor& x, const RopeTables& tables, int64_t first_position) {
  use_device(x.device().index);
  const int64_t tokens = x.dim(0), heads = x.dim(1), half = x.dim(2) / 2;
  const int64_t pairs = tokens * heads * half;
  if (pairs == 0) return;
  dispatch_device_float(x.dtype(), "ops::apply_rope", [&](auto tag) {
    using T = decltype(tag);
    rope_kernel<T><<<unsigned(std::min<int64_t>(grid_for(pairs, 256), 132 * 16)), 256>>>(
        static_cast<T*>(x.raw_data()), tables.cos.data<float>(), tables.sin.data<float>(), first_position, tokens,
        heads, half);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

}  // namespace lowbit::ops::cuda
