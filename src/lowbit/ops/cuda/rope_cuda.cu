// RoPE on the GPU, in place: one thread per rotated pair (x[i], x[i + half])
// of one head of one token. cos/sin come from the f32 tables (device copies of
// ops::rope_tables) and are rounded to x's dtype first; each product and the
// sum are rounded, as `q * cos + rotate_half(q) * sin` in PyTorch.
#include <algorithm>

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

// One thread per rotated pair of the q and k heads of a token, and per pair of
// v elements (copied): [tokens, heads + 2 kv_heads, half] work items.
// A non-null position_on_device replaces first_position (captured decoding).
template <typename T>
__global__ void rope_qkv_kernel(const T* qkv, const float* cos_table, const float* sin_table, int64_t first_position,
                                const int32_t* position_on_device, int64_t tokens, int64_t seq_tokens,
                                int64_t cache_stride, int64_t heads, int64_t kv_heads, int64_t half, T* q_out,
                                T* k_cache, T* v_cache) {
  // The position is written before the step starts, not by the previous
  // kernel: read while that kernel drains.
  if (position_on_device) first_position = *position_on_device;
  wait_for_previous_grid();
  const int64_t slots = heads + 2 * kv_heads, dim = 2 * half;
  const int64_t items = tokens * slots * half;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < items; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = p % half, slot = (p / half) % slots, t = p / (half * slots);
    const T* in = qkv + (t * slots + slot) * dim;
    // Row t: sequence t / seq_tokens of the batch, at its position.
    const int64_t seq = t / seq_tokens, pos = first_position + (t - seq * seq_tokens);
    if (slot >= heads + kv_heads) {
      T* v = v_cache + seq * cache_stride + (pos * kv_heads + (slot - heads - kv_heads)) * dim;
      v[i] = in[i];
      v[i + half] = in[i + half];
      continue;
    }
    T* dst = slot < heads ? q_out + (t * heads + slot) * dim
                          : k_cache + seq * cache_stride + (pos * kv_heads + (slot - heads)) * dim;
    const float c = round_to<T>(cos_table[pos * half + i]), s = round_to<T>(sin_table[pos * half + i]);
    const float a = to_float(in[i]), b = to_float(in[i + half]);
    dst[i] = from_float<T>(__fadd_rn(round_to<T>(__fmul_rn(a, c)), round_to<T>(__fmul_rn(-b, s))));
    dst[i + half] = from_float<T>(__fadd_rn(round_to<T>(__fmul_rn(b, c)), round_to<T>(__fmul_rn(a, s))));
  }
}

}  // namespace

void rope_qkv(const Tensor& qkv, const RopeTables& tables, const Position& first_position, Tensor& q_out,
              Tensor& k_cache, Tensor& v_cache) {
  // k_cache: [capacity, kv_heads, d], or a batch's [batch, capacity, kv_heads, d].
  const int64_t batch = k_cache.ndim() == 4 ? k_cache.dim(0) : 1;
  const int64_t tokens = q_out.dim(0), heads = q_out.dim(1), kv_heads = k_cache.dim(-2), half = q_out.dim(2) / 2;
  const int64_t seq_tokens = std::max<int64_t>(tokens / batch, 1);
  const int64_t cache_stride = k_cache.dim(-3) * kv_heads * 2 * half;
  const int64_t items = tokens * (heads + 2 * kv_heads) * half;
  if (items == 0) return;
  dispatch_device_float(qkv.dtype(), "ops::rope_qkv", [&](auto tag) {
    using T = decltype(tag);
    launch_dependent(rope_qkv_kernel<T>, dim3(unsigned(std::min<int64_t>(grid_for(items, 256), 132 * 16))), dim3(256),
                     0, current_stream(), static_cast<const T*>(qkv.raw_data()), tables.cos.data<float>(),
                     tables.sin.data<float>(), first_position.value,
                     first_position.on_device.defined() ? first_position.on_device.data<int32_t>() : nullptr, tokens,
                     seq_tokens, cache_stride, heads, kv_heads, half, static_cast<T*>(q_out.raw_data()),
                     static_cast<T*>(k_cache.raw_data()), static_cast<T*>(v_cache.raw_data()));
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void apply_rope(Tensor& x, const RopeTables& tables, int64_t first_position) {
  const int64_t tokens = x.dim(0), heads = x.dim(1), half = x.dim(2) / 2;
  const int64_t pairs = tokens * heads * half;
  if (pairs == 0) return;
  dispatch_device_float(x.dtype(), "ops::apply_rope", [&](auto tag) {
    using T = decltype(tag);
    rope_kernel<T><<<unsigned(std::min<int64_t>(grid_for(pairs, 256), 132 * 16)), 256, 0, current_stream()>>>(
        static_cast<T*>(x.raw_data()), tables.cos.data<float>(), tables.sin.data<float>(), first_position, tokens,
        heads, half);
  });
  LOWBIT_CUDA_CHECK_LAUNCH();
}

}  // namespace lowbit::ops::cuda
