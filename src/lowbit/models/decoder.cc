#include "lowbit/models/decoder.h"

#include <cstring>

#include <fmt/format.h>

#include "lowbit/ops/attention.h"
#include "lowbit/ops/elementwise.h"
#include "lowbit/ops/rope.h"

namespace lowbit::models {
namespace {

struct Block {
  nn::RMSNorm input_norm, post_attention_norm;
  nn::Linear q_proj, k_proj, v_proj, o_proj;
  nn::Linear gate_proj, up_proj, down_proj;
};

// Appends rows [0, n) of x [n, heads, dim] to cache rows [at, at + n).
void append_to_cache(const Tensor& x, Tensor& cache, int64_t at) {
  const size_t row_bytes = cache.nbytes() / size_t(cache.dim(0));
  std::memcpy(static_cast<char*>(cache.raw_data()) + size_t(at) * row_bytes, x.raw_data(), x.nbytes());
}

class Decoder final : public CausalLM {
 public:
  Decoder(const ModelConfig& config, const WeightSource& w, DType dtype) : config_(config), dtype_(dtype) {
    const ModelConfig& c = config_;
    const int64_t hidden = c.hidden_size, q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
    embed_.table = w.dense("model.embed_tokens.weight", {c.vocab_size, hidden});
    for (int64_t i = 0; i < c.num_layers; ++i) {
      const std::string p = fmt::format("model.layers.{}.", i);
      Block b;
      b.input_norm = {w.dense(p + "input_layernorm.weight", {hidden}), c.rms_norm_eps};
      b.post_attention_norm = {w.dense(p + "post_attention_layernorm.weight", {hidden}), c.rms_norm_eps};
      b.q_proj = w.linear(p + "self_attn.q_proj", q_dim, hidden, c.qkv_bias);
      b.k_proj = w.linear(p + "self_attn.k_proj", kv_dim, hidden, c.qkv_bias);
      b.v_proj = w.linear(p + "self_attn.v_proj", kv_dim, hidden, c.qkv_bias);
      b.o_proj = w.linear(p + "self_attn.o_proj", hidden, q_dim, c.o_bias);
      b.gate_proj = w.linear(p + "mlp.gate_proj", c.intermediate_size, hidden, c.mlp_bias);
      b.up_proj = w.linear(p + "mlp.up_proj", c.intermediate_size, hidden, c.mlp_bias);
      b.down_proj = w.linear(p + "mlp.down_proj", hidden, c.intermediate_size, c.mlp_bias);
      blocks_.push_back(std::move(b));
    }
    norm_ = {w.dense("model.norm.weight", {hidden}), c.rms_norm_eps};
    tied_head_ = c.tie_word_embeddings && !w.contains("lm_head.weight");
    if (tied_head_)
      lm_head_ = nn::Linear::dense(embed_.table);
    else
      lm_head_ = w.linear("lm_head", c.vocab_size, hidden, false);
    rope_ = ops::rope_tables(c.rope, c.max_position_embeddings);
  }

  const ModelConfig& config() const override { return config_; }
  DType dtype() const override { return dtype_; }

  KVCache make_cache(int64_t capacity) const override {
    LOWBIT_CHECK(capacity > 0 && capacity <= config_.max_position_embeddings,
                 "the context of {} tokens exceeds the model's max_position_embeddings ({})", capacity,
                 config_.max_position_embeddings);
    KVCache cache;
    for (int64_t i = 0; i < config_.num_layers; ++i) {
      cache.keys.push_back(Tensor::empty({capacity, config_.num_kv_heads, config_.head_dim}, dtype_));
      cache.values.push_back(Tensor::empty({capacity, config_.num_kv_heads, config_.head_dim}, dtype_));
    }
    return cache;
  }

  Tensor forward(std::span<const int32_t> tokens, KVCache& cache, bool all_logits) const override {
    const ModelConfig& c = config_;
    const int64_t n = int64_t(tokens.size()), past = cache.length;
    LOWBIT_CHECK(n > 0, "forward: no tokens");
    LOWBIT_CHECK(past + n <= cache.capacity(),
                 "forward: {} tokens after {} cached ones exceed the context of {} tokens", n, past, cache.capacity());
    const Tensor ids = Tensor::from_vector(std::vector<int32_t>(tokens.begin(), tokens.end()));
    Tensor h = embed_.forward(ids, dtype_);
    Tensor attn = Tensor::empty({n, c.num_heads * c.head_dim}, dtype_);
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const Block& b = blocks_[i];
      const Tensor x = b.input_norm.forward(h);
      Tensor q = b.q_proj.forward(x).reshape({n, c.num_heads, c.head_dim});
      Tensor k = b.k_proj.forward(x).reshape({n, c.num_kv_heads, c.head_dim});
      const Tensor v = b.v_proj.forward(x);
      ops::apply_rope(q, rope_, past);
      ops::apply_rope(k, rope_, past);
      append_to_cache(k, cache.keys[i], past);
      append_to_cache(v, cache.values[i], past);
      ops::attention(q, cache.keys[i], cache.values[i], past, attn, c.sliding_window);
      const Tensor o = b.o_proj.forward(attn);
      ops::add(h, o, h);
      const Tensor y = b.post_attention_norm.forward(h);
      Tensor gate = b.gate_proj.forward(y);
      const Tensor up = b.up_proj.forward(y);
      ops::silu_mul(gate, up, gate);
      const Tensor down = b.down_proj.forward(gate);
      ops::add(h, down, h);
    }
    cache.length = past + n;
    if (!all_logits) h = h.rows(n - 1, n).clone();
    return lm_head_.forward(norm_.forward(h));
  }

  size_t weight_bytes() const override {
    size_t bytes = embed_.table.nbytes() + norm_.weight.nbytes();
    for (const Block& b : blocks_) {
      bytes += b.input_norm.weight.nbytes() + b.post_attention_norm.weight.nbytes();
      for (const nn::Linear* l : {&b.q_proj, &b.k_proj, &b.v_proj, &b.o_proj, &b.gate_proj, &b.up_proj, &b.down_proj})
        bytes += l->weight_bytes();
    }
    if (!tied_head_) bytes += lm_head_.weight_bytes();  // a tied head shares the embedding
    return bytes;
  }

  std::string describe() const override {
    const Block& b = blocks_.front();
    return fmt::format("{} ({}): {} layers, hidden {}, {} heads ({} kv), head_dim {}, vocab {}, compute {}\n"
                       "  attention {} / mlp {} / lm_head {}",
                       config_.architecture, config_.model_type, config_.num_layers, config_.hidden_size,
                       config_.num_heads, config_.num_kv_heads, config_.head_dim, config_.vocab_size,
                       dtype_name(dtype_), b.q_proj.describe(), b.gate_proj.describe(), lm_head_.describe());
  }

 private:
  ModelConfig config_;
  DType dtype_;
  nn::Embedding embed_;
  std::vector<Block> blocks_;
  nn::RMSNorm norm_;
  nn::Linear lm_head_;
  bool tied_head_ = false;
  ops::RopeTables rope_;
};

}  // namespace

std::unique_ptr<CausalLM> build_decoder(const ModelConfig& config, const WeightSource& weights, DType dtype) {
  return std::make_unique<Decoder>(config, weights, dtype);
}

}  // namespace lowbit::models
