#include "lowbit/models/decoder.h"

#include <algorithm>


#include <fmt/format.h>

#include "lowbit/ops/attention.h"
#include "lowbit/ops/elementwise.h"
#include "lowbit/ops/norm.h"
#include "lowbit/ops/rope.h"

namespace lowbit::models {
namespace {

// q/k/v and gate/up run as one stacked linear each (qkv, gate_up) when their
// formats allow it (nn::Linear::stack), else as separate layers.
struct Block {
  nn::RMSNorm input_norm, post_attention_norm;
  nn::Linear qkv, q_proj, k_proj, v_proj, o_proj;
  nn::Linear gate_up, gate_proj, up_proj, down_proj;
};

// Activations of one forward pass, kept from call to call: a GPU allocation
// is a cudaMalloc (and its release a device-wide synchronization), far more
// than the kernels of a decoding step cost. Grown when a call has more tokens
// than any before; each buffer is used as rows [0, n).
struct Workspace {
  int64_t rows = 0;
  Tensor ids;                       // i32 [rows] (GPU: the token ids uploaded)
  Tensor h, x, q, attn, tmp;        // [rows, hidden] / [rows, q_dim]
  Tensor gate, up;                  // [rows, intermediate]
  Tensor qkv, gate_up;              // the stacked projections' outputs
  Tensor logits;                    // [>= rows asked for, vocab], see forward

  void reserve(int64_t n, const ModelConfig& c, DType dtype, Device device) {
    if (n <= rows) return;
    const int64_t q_dim = c.num_heads * c.head_dim;
    ids = Tensor::empty({n}, DType::I32, device);
    h = Tensor::empty({n, c.hidden_size}, dtype, device);
    x = Tensor::empty({n, c.hidden_size}, dtype, device);
    tmp = Tensor::empty({n, c.hidden_size}, dtype, device);
    q = Tensor::empty({n, q_dim}, dtype, device);
    attn = Tensor::empty({n, q_dim}, dtype, device);
    gate = Tensor::empty({n, c.intermediate_size}, dtype, device);
    up = Tensor::empty({n, c.intermediate_size}, dtype, device);
    qkv = Tensor::empty({n, q_dim + 2 * c.num_kv_heads * c.head_dim}, dtype, device);
    gate_up = Tensor::empty({n, 2 * c.intermediate_size}, dtype, device);
    rows = n;
  }
};

class Decoder final : public CausalLM {
 public:
  Decoder(const ModelConfig& config, const WeightSource& w, DType dtype)
      : config_(config), dtype_(dtype), device_(w.device()) {
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
      const nn::Linear qkv[] = {b.q_proj, b.k_proj, b.v_proj};
      b.qkv = nn::Linear::stack(qkv);
      if (b.qkv.defined()) b.q_proj = b.k_proj = b.v_proj = {};
      const nn::Linear gate_up[] = {b.gate_proj, b.up_proj};
      b.gate_up = nn::Linear::stack(gate_up);
      if (b.gate_up.defined()) b.gate_proj = b.up_proj = {};
      blocks_.push_back(std::move(b));
    }
    norm_ = {w.dense("model.norm.weight", {hidden}), c.rms_norm_eps};
    tied_head_ = c.tie_word_embeddings && !w.contains("lm_head.weight");
    if (tied_head_)
      lm_head_ = nn::Linear::dense(embed_.table);
    else
      lm_head_ = w.linear("lm_head", c.vocab_size, hidden, false);
    rope_ = ops::rope_tables(c.rope, c.max_position_embeddings);
    rope_.cos = rope_.cos.to(device_);
    rope_.sin = rope_.sin.to(device_);
  }

  const ModelConfig& config() const override { return config_; }
  DType dtype() const override { return dtype_; }
  Device device() const override { return device_; }

  KVCache make_cache(int64_t capacity) const override {
    LOWBIT_CHECK(capacity > 0 && capacity <= config_.max_position_embeddings,
                 "the context of {} tokens exceeds the model's max_position_embeddings ({})", capacity,
                 config_.max_position_embeddings);
    KVCache cache;
    for (int64_t i = 0; i < config_.num_layers; ++i) {
      cache.keys.push_back(Tensor::empty({capacity, config_.num_kv_heads, config_.head_dim}, dtype_, device_));
      cache.values.push_back(Tensor::empty({capacity, config_.num_kv_heads, config_.head_dim}, dtype_, device_));
    }
    return cache;
  }

  Tensor forward(std::span<const int32_t> tokens, KVCache& cache, bool all_logits) const override {
    const ModelConfig& c = config_;
    const int64_t n = int64_t(tokens.size()), past = cache.length;
    LOWBIT_CHECK(n > 0, "forward: no tokens");
    LOWBIT_CHECK(past + n <= cache.capacity(),
                 "forward: {} tokens after {} cached ones exceed the context of {} tokens", n, past, cache.capacity());
    LOWBIT_CHECK(cache.keys.size() == blocks_.size() && cache.keys.front().device() == device_,
                 "forward: the cache was made for another model (on {}, this model is on {})",
                 cache.keys.empty() ? std::string("-") : cache.keys.front().device().str(), device_.str());
    ws_.reserve(n, c, dtype_, device_);
    const int64_t kv_dim = c.num_kv_heads * c.head_dim;
    Tensor ids = ws_.ids.rows(0, n), h = ws_.h.rows(0, n), x = ws_.x.rows(0, n), tmp = ws_.tmp.rows(0, n);
    Tensor q = ws_.q.rows(0, n), attn = ws_.attn.rows(0, n), gate = ws_.gate.rows(0, n), up = ws_.up.rows(0, n);
    Tensor qkv = ws_.qkv.rows(0, n), gate_up = ws_.gate_up.rows(0, n);
    Tensor q_heads = q.reshape({n, c.num_heads, c.head_dim});
    copy_bytes(ids.raw_data(), device_, tokens.data(), Device::cpu(), size_t(n) * sizeof(int32_t));
    ops::embedding(ids, embed_.table, h);
    ops::rms_norm(h, blocks_.front().input_norm.weight, blocks_.front().input_norm.eps, x);
    // Rows [first, n) are the ones whose logits are asked for; after the last
    // attention only they go on.
    const int64_t first = all_logits ? 0 : n - 1;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const Block& b = blocks_[i];
      if (b.qkv.defined()) {
        b.qkv.forward(x, qkv);
        ops::rope_qkv(qkv, rope_, past, q_heads, cache.keys[i], cache.values[i]);
      } else {
        // Keys and values go straight into the cache rows of these positions.
        Tensor k = cache.keys[i].rows(past, past + n).reshape({n, kv_dim});
        Tensor v = cache.values[i].rows(past, past + n).reshape({n, kv_dim});
        b.q_proj.forward(x, q);
        b.k_proj.forward(x, k);
        b.v_proj.forward(x, v);
        Tensor k_heads = k.reshape({n, c.num_kv_heads, c.head_dim});
        ops::apply_rope(q_heads, rope_, past);
        ops::apply_rope(k_heads, rope_, past);
      }
      ops::attention(q_heads, cache.keys[i], cache.values[i], past, attn, c.sliding_window);
      b.o_proj.forward(attn, tmp);
      ops::add_rms_norm(h, tmp, b.post_attention_norm.weight, b.post_attention_norm.eps, x);
      if (b.gate_up.defined()) {
        b.gate_up.forward(x, gate_up);
        ops::swiglu(gate_up, gate);
      } else {
        b.gate_proj.forward(x, gate);
        b.up_proj.forward(x, up);
        ops::silu_mul(gate, up, gate);
      }
      b.down_proj.forward(gate, tmp);
      // The residual add and the next norm (the next block's, or the final one).
      const nn::RMSNorm& next = i + 1 < blocks_.size() ? blocks_[i + 1].input_norm : norm_;
      const bool last = i + 1 == blocks_.size();
      Tensor h_rows = last ? h.rows(first, n) : h, x_rows = last ? x.rows(first, n) : x;
      ops::add_rms_norm(h_rows, last ? tmp.rows(first, n) : tmp, next.weight, next.eps, x_rows);
    }
    cache.length = past + n;
    // The logits buffer is reused once the caller has let go of the previous
    // logits (no other handle to its storage): no allocation, and on a GPU no
    // cudaFree (a device-wide synchronization), per decoding step.
    const int64_t out_rows = n - first;
    if (!ws_.logits.defined() || ws_.logits.storage().use_count() > 1 || ws_.logits.dim(0) < out_rows)
      ws_.logits = Tensor::empty({std::max(out_rows, ws_.rows), lm_head_.out_features()}, dtype_, device_);
    Tensor logits = ws_.logits.rows(0, out_rows);
    lm_head_.forward(x.rows(first, n), logits);
    return logits;
  }

  size_t weight_bytes() const override {
    size_t bytes = embed_.table.nbytes() + norm_.weight.nbytes();
    for (const Block& b : blocks_) {
      bytes += b.input_norm.weight.nbytes() + b.post_attention_norm.weight.nbytes();
      for (const nn::Linear* l : {&b.qkv, &b.q_proj, &b.k_proj, &b.v_proj, &b.o_proj, &b.gate_up, &b.gate_proj,
                                  &b.up_proj, &b.down_proj})
        if (l->defined()) bytes += l->weight_bytes();
    }
    if (!tied_head_) bytes += lm_head_.weight_bytes();  // a tied head shares the embedding
    return bytes;
  }

  std::string describe() const override {
    const Block& b = blocks_.front();
    return fmt::format("{} ({}): {} layers, hidden {}, {} heads ({} kv), head_dim {}, vocab {}, compute {} on {}\n"
                       "  attention {} / mlp {} / lm_head {}",
                       config_.architecture, config_.model_type, config_.num_layers, config_.hidden_size,
                       config_.num_heads, config_.num_kv_heads, config_.head_dim, config_.vocab_size,
                       dtype_name(dtype_), device_.str(), (b.qkv.defined() ? b.qkv : b.q_proj).describe(),
                       (b.gate_up.defined() ? b.gate_up : b.gate_proj).describe(), lm_head_.describe());
  }

 private:
  ModelConfig config_;
  DType dtype_;
  Device device_;
  mutable Workspace ws_;
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
