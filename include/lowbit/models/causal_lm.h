// A causal language model: token ids in, next-token logits out, with a
// key/value cache so that generation runs one token at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lowbit/core/tensor.h"
#include "lowbit/models/model_config.h"
#include "lowbit/nn/linear.h"

namespace lowbit::models {

// Keys and values of the positions seen so far, per layer:
// [capacity, kv_heads, head_dim] in the model's compute dtype, on the model's
// device.
struct KVCache {
  std::vector<Tensor> keys, values;
  int64_t length = 0;    // positions filled
  int64_t capacity() const { return keys.empty() ? 0 : keys.front().dim(0); }
  void clear() { length = 0; }
};

// Where a model gets its weights (the engine implements it from a checkpoint).
// Names are the checkpoint's: "model.layers.0.self_attn.q_proj" for a linear,
// "model.norm.weight" for a dense tensor. Dense tensors come in the compute
// dtype; a missing tensor or a shape other than `shape` is an Error naming it.
// Tensors (and the linears' weights) come on device().
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual Device device() const { return Device::cpu(); }
  virtual bool contains(const std::string& name) const = 0;
  virtual Tensor dense(const std::string& name, const Shape& shape) const = 0;
  // The layer `prefix` with weight [out, in] in whatever format the checkpoint
  // (or quantization on load) holds, and its bias when `bias` is set.
  virtual nn::Linear linear(const std::string& prefix, int64_t out, int64_t in, bool bias) const = 0;
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const ModelConfig& config() const = 0;
  virtual DType dtype() const = 0;  // the compute dtype of activations
  virtual Device device() const = 0;  // where weights, cache and activations live
  virtual KVCache make_cache(int64_t capacity) const = 0;
  // Caches for a batch of sequences (forward_batch): each layer's keys and
  // values of all of them in one allocation, so that a decoding step on the
  // GPU runs the batch's attention as one kernel a layer (separate caches
  // work too, one kernel a sequence).
  virtual std::vector<KVCache> make_caches(int64_t batch, int64_t capacity) const = 0;
  // Runs `tokens` at positions [cache.length, cache.length + n) and appends
  // their keys and values to the cache. Returns logits in the compute dtype,
  // on device(): [n, vocab] when all_logits, else [1, vocab] for the last
  // token. A model reuses its activation buffers from call to call, so one
  // model runs one forward at a time.
  virtual Tensor forward(std::span<const int32_t> tokens, KVCache& cache, bool all_logits) const = 0;
  // B sequences of n tokens in one pass (the projections see B * n rows):
  // tokens holds sequence b's ids at [b n, (b + 1) n), sequence b continues
  // caches[b], and every cache holds the same number of positions. Returns
  // logits [B n, vocab] when all_logits, else [B, vocab] (each sequence's
  // last token). With one cache it is forward.
  virtual Tensor forward_batch(std::span<const int32_t> tokens, std::span<KVCache* const> caches,
                               bool all_logits) const = 0;
  // Bytes of all weights (what transformers' get_memory_footprint counts).
  virtual size_t weight_bytes() const = 0;
  // One line per layer kind and format, for --verbose and tests.
  virtual std::string describe() const = 0;
};

}  // namespace lowbit::models
