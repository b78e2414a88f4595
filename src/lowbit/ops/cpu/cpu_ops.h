// The CPU bodies of the ops (declared in include/lowbit/ops/*.h). The front
// ends in src/lowbit/ops/*.cc validate arguments before calling these.
#pragma once

#include "lowbit/ops/linear.h"
#include "lowbit/ops/rope.h"
#include "lowbit/ops/sampling.h"

namespace lowbit::ops::cpu {

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);
void add(const Tensor& a, const Tensor& b, Tensor& out);
void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out);
void add_rms_norm(Tensor& x, const Tensor& residual, const Tensor& weight, float eps, Tensor& out);
void swiglu(const Tensor& gate_up, Tensor& out);
void rope_qkv(const Tensor& qkv, const RopeTables& tables, int64_t first_position, Tensor& q_out, Tensor& k_cache,
              Tensor& v_cache);
void embedding(const Tensor& ids, const Tensor& table, Tensor& out);
void softmax(const Tensor& x, Tensor& out, bool log);
void argmax(const Tensor& x, Tensor& out);
void sample_token(const Tensor& x, const Tensor& previous, const SamplingParams& params, double u, Tensor& out);
void apply_rope(Tensor& x, const RopeTables& tables, int64_t first_position);
void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t past, Tensor& out,
               int64_t window);
void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out);
void linear_4bit(const Tensor& x, const Blockwise4bitWeight& w, const Tensor& bias, Tensor& out);
void dequantize_4bit_weight(const Blockwise4bitWeight& w, Tensor& out);
void linear_int8(const Tensor& x, const Tensor& codes, const Tensor& scb, const Tensor& bias, float threshold,
                 Tensor& out);

}  // namespace lowbit::ops::cpu
