// CUDA bodies of the decoder ops (include/lowbit/ops/{norm,rope,attention,
// elementwise,sampling}.h). The front ends in src/lowbit/ops/*.cc validate arguments
// and hand CUDA tensors here; every kernel loads its dtype as f32, computes in
// f32 and rounds where the CPU body (ops/cpu/) rounds. Work is queued on the
// thread's current stream (core/stream.h), like the linear ops.
#pragma once

#include <cstdint>

#include "lowbit/ops/attention.h"
#include "lowbit/ops/rope.h"
#include "lowbit/ops/sampling.h"

namespace lowbit::ops::cuda {

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);
void add(const Tensor& a, const Tensor& b, Tensor& out);
void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out);
void add_rms_norm(Tensor& x, const Tensor& residual, const Tensor& weight, float eps, Tensor& out);
void swiglu(const Tensor& gate_up, Tensor& out);
void rope_qkv(const Tensor& qkv, const RopeTables& tables, const Position& first_position, Tensor& q_out,
              Tensor& k_cache, Tensor& v_cache);
void embedding(const Tensor& ids, const Tensor& table, Tensor& out);
void softmax(const Tensor& x, Tensor& out, bool log);
void argmax(const Tensor& x, Tensor& out);
void sample_token(const Tensor& x, const Tensor& previous, const SamplingParams& params, double u, Tensor& out);
void apply_rope(Tensor& x, const RopeTables& tables, int64_t first_position);
void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Position& past, Tensor& out,
               int64_t window);
void rope_attention_decode(const Tensor& qkv, const RopeTables& tables, const Position& position, Tensor& k_cache,
                           Tensor& v_cache, Tensor& out, int64_t window);
// Tests and benchmarks: false keeps prompts (bf16/f16, head_dim 64, 80, 96 or 128) on
// the CUDA-core flash kernel instead of the tensor-core one.
void set_attention_tensor_cores(bool on);

}  // namespace lowbit::ops::cuda
