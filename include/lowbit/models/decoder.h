// The Llama-family decoder shared by Llama, Mistral and Qwen2: pre-norm
// blocks of grouped-query attention with RoPE and a SwiGLU MLP, RMSNorm, and
// a tied or untied output head. Architecture files differ only in the config
// fields they read (biases, sliding window, rope scaling).
#pragma once

#include "lowbit/models/causal_lm.h"
#include "lowbit/nn/layers.h"

namespace lowbit::models {

std::unique_ptr<CausalLM> build_decoder(const ModelConfig& config, const WeightSource& weights, DType dtype);

}  // namespace lowbit::models
