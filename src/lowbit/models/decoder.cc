#include "lowbit/models/decoder.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/cuda_runtime.h"
#include "lowbit/core/bytes.h"
#include "lowbit/core/stream.h"
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
  Tensor position;                  // i32 [1]: a GPU decoding step's position (ops::Position)
  Tensor h, x, q, attn, tmp;        // [rows, hidden] / [rows, q_dim]
  Tensor gate, up;                  // [rows, intermediate]
  Tensor qkv, gate_up;              // the stacked projections' outputs
  Tensor logits;                    // [>= rows asked for, vocab], see forward
  Tensor weight_slots[2];           // GPU prompts: weights dequantized ahead (DequantizeAhead)

  void reserve(int64_t n, const ModelConfig& c, DType dtype, Device device) {
    if (n <= rows) return;
    const int64_t q_dim = c.num_heads * c.head_dim;
    ids = Tensor::empty({n}, DType::I32, device);
    if (!position.defined()) position = Tensor::empty({1}, DType::I32, device);
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

// A prompt's projections on the GPU when they take the dequantize path: while
// projection j multiplies on the main stream, the weight of j + 1 is
// dequantized on a low-priority side stream (it fills the SMs and memory
// bandwidth the GEMMs leave idle) into the other of two slots (projections
// alternate between them); events order each slot's reuse both ways. The same bits as
// forward (ops::linear on the weight linear_4bit would dequantize). Measured
// on the 7B shape (H200): 512-token prompts 0.80-0.81x -> 0.87-0.88x bf16's
// rate; four slots, three projections ahead, gave no more.
class DequantizeAhead {
 public:
  static constexpr size_t kSlots = 2;

  // slots: kept by the caller from prompt to prompt (grown here when short):
  // allocating them per prompt (a cudaMalloc, and a synchronizing cudaFree)
  // measured 0.85-0.86x bf16's 512-token rate against 0.87-0.88x.
  DequantizeAhead(std::vector<const nn::Linear*> order, Tensor (&slots)[kSlots], DType dtype, Device device,
                  void* main, void* side)
      : order_(std::move(order)), main_(main), side_(side) {
    int64_t most[kSlots] = {};
    for (size_t j = 0; j < order_.size(); ++j)
      most[j % kSlots] = std::max(most[j % kSlots], order_[j]->out_features() * order_[j]->in_features());
    for (size_t s = 0; s < kSlots; ++s) {
      if (!slots[s].defined() || slots[s].numel() < most[s] || slots[s].dtype() != dtype)
        slots[s] = Tensor::empty({std::max<int64_t>(most[s], 1)}, dtype, device);
      slot_[s] = slots[s];
      ready_[s] = std::make_unique<CudaEvent>(device.index);
      free_[s] = std::make_unique<CudaEvent>(device.index);
    }
    // The side stream starts after the work already queued on the main one.
    start_ = std::make_unique<CudaEvent>(device.index);
    start_->record(main_);
    start_->wait(side_);
    for (size_t j = 0; j < kSlots - 1 && j < order_.size(); ++j) enqueue(j);
  }

  // l's product on the main stream (the current one) when l is the next
  // projection of the order; false (nothing done) when it is not, i.e. l
  // runs its own kernel.
  bool forward(const nn::Linear& l, const Tensor& x, Tensor& out) {
    if (next_ >= order_.size() || order_[next_] != &l) return false;
    const size_t j = next_++;
    if (j + kSlots - 1 < order_.size()) enqueue(j + kSlots - 1);
    ready_[j % kSlots]->wait(main_);
    l.forward_dequantized(x, weight(j), out);
    free_[j % kSlots]->record(main_);
    return true;
  }

 private:
  Tensor weight(size_t j) const {
    const nn::Linear& l = *order_[j];
    return slot_[j % kSlots].rows(0, l.out_features() * l.in_features()).reshape({l.out_features(), l.in_features()});
  }
  void enqueue(size_t j) {
    CudaStreamScope scope(side_);
    free_[j % kSlots]->wait(side_);  // projection j - kSlots is done with the slot
    Tensor w = weight(j);
    order_[j]->dequantize_weight(w);
    ready_[j % kSlots]->record(side_);
  }

  std::vector<const nn::Linear*> order_;
  size_t next_ = 0;  // the projection of order_ whose product comes next
  void* main_;
  void* side_;
  Tensor slot_[kSlots];
  std::unique_ptr<CudaEvent> ready_[kSlots], free_[kSlots], start_;
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

  KVCache make_cache(int64_t capacity) const override { return std::move(make_caches(1, capacity).front()); }

  std::vector<KVCache> make_caches(int64_t batch, int64_t capacity) const override {
    LOWBIT_CHECK(batch > 0, "make_caches: a batch needs at least one sequence, got {}", batch);
    LOWBIT_CHECK(capacity > 0 && capacity <= config_.max_position_embeddings,
                 "the context of {} tokens exceeds the model's max_position_embeddings ({})", capacity,
                 config_.max_position_embeddings);
    const Shape one = {capacity, config_.num_kv_heads, config_.head_dim};
    // On a GPU the whole cache is checked against the free memory first, so
    // that a cache too large fails at once with its size, not at the layer
    // whose allocation happens to fail.
    const uint64_t layer_bytes =
        uint64_t(batch) * uint64_t(shape_numel(one)) * element_size(dtype_) * 2;  // keys and values
    const auto what = [&] {
      return fmt::format("the KV cache of {} sequence(s) x {} positions ({} layers, {} each)", batch, capacity,
                         config_.num_layers, bytes_text(layer_bytes));
    };
    if (device_.is_cuda()) {
      const lowbit::detail::CudaMemoryInfo memory = lowbit::detail::cuda_memory_info(device_.index);
      const uint64_t total = layer_bytes * uint64_t(config_.num_layers);
      LOWBIT_CHECK(total <= memory.free,
                   "{} needs {}, but {} has {} free of {}: use fewer sequences or a shorter context", what(),
                   bytes_text(total), device_.str(), bytes_text(memory.free), bytes_text(memory.total));
    }
    std::vector<KVCache> caches(static_cast<size_t>(batch));
    try {
      for (int64_t i = 0; i < config_.num_layers; ++i) {
        const Tensor keys = Tensor::empty({batch, capacity, config_.num_kv_heads, config_.head_dim}, dtype_, device_);
        const Tensor values = Tensor::empty(keys.shape(), dtype_, device_);
        for (int64_t s = 0; s < batch; ++s) {
          caches[size_t(s)].keys.push_back(keys.rows(s, s + 1).reshape(one));
          caches[size_t(s)].values.push_back(values.rows(s, s + 1).reshape(one));
        }
      }
    } catch (const Error& e) {
      throw Error(what() + ": " + e.message());
    }
    return caches;
  }

  Tensor forward(std::span<const int32_t> tokens, KVCache& cache, bool all_logits) const override {
    KVCache* const caches[] = {&cache};
    return forward_batch(tokens, caches, all_logits);
  }

  Tensor forward_batch(std::span<const int32_t> tokens, std::span<KVCache* const> caches,
                       bool all_logits) const override {
    const int64_t batch = int64_t(caches.size());
    LOWBIT_CHECK(batch > 0, "forward: no sequences (no cache)");
    LOWBIT_CHECK(!tokens.empty(), "forward: no tokens");
    LOWBIT_CHECK(int64_t(tokens.size()) % batch == 0,
                 "forward: {} token ids do not make {} sequences of equal length", tokens.size(), batch);
    const int64_t n = int64_t(tokens.size()) / batch, past = caches.front() ? caches.front()->length : 0;
    for (int64_t s = 0; s < batch; ++s) {
      const KVCache* cache = caches[size_t(s)];
      LOWBIT_CHECK(cache, "forward: sequence {} has no cache", s);
      LOWBIT_CHECK(cache->length == past,
                   "forward: sequence {}'s cache holds {} positions, sequence 0's {} (a batch advances together)", s,
                   cache->length, past);
      LOWBIT_CHECK(past + n <= cache->capacity(),
                   "forward: {} tokens after {} cached ones exceed the context of {} tokens", n, past,
                   cache->capacity());
      LOWBIT_CHECK(cache->keys.size() == blocks_.size() && cache->keys.front().device() == device_,
                   "forward: the cache was made for another model (on {}, this model is on {})",
                   cache->keys.empty() ? std::string("-") : cache->keys.front().device().str(), device_.str());
      for (int64_t t = 0; t < s; ++t)
        LOWBIT_CHECK(caches[size_t(t)] != cache, "forward: sequences {} and {} share one cache", t, s);
    }
    const int64_t rows = batch * n;
    ws_.reserve(rows, config_, dtype_, device_);
    if (device_.is_cpu()) {
      copy_bytes(ws_.ids.raw_data(), device_, tokens.data(), Device::cpu(), size_t(rows) * sizeof(int32_t));
      return run(n, past, caches, all_logits, false);
    }
    // The GPU's work goes to this model's device and stream (another
    // model's call may have left another device current); a decoding step
    // (one token a sequence) is a CUDA graph once captured (decode_step).
    lowbit::detail::cuda_use_device(device_.index);
    if (!stream_.get()) stream_ = CudaStream(device_.index);
    CudaStreamScope scope(stream_.get());
    if (n == 1 && all_qkv_stacked()) return decode_step(tokens, caches);
    copy_bytes(ws_.ids.raw_data(), device_, tokens.data(), Device::cpu(), size_t(rows) * sizeof(int32_t));
    return run(n, past, caches, all_logits, false);
  }

 private:
  // One token a sequence on the GPU. Its kernels read the tokens (ws_.ids)
  // and the position (ws_.position, the same for every sequence) from device
  // memory, so the whole step can be captured once and replayed: one graph
  // launch instead of ~10 launches a layer (and two a sequence), which cost
  // more host time than the GPU needs. The first step for a set of caches
  // runs eagerly (it also warms up lazily set kernel attributes), the second
  // is captured; new caches or a new logits buffer mean a new capture. A
  // capture that fails leaves the model eager.
  Tensor decode_step(std::span<const int32_t> tokens, std::span<KVCache* const> caches) const {
    for (const int32_t token : tokens)
      LOWBIT_CHECK(token >= 0 && token < config_.vocab_size,
                   "forward: token id {} is outside the vocabulary [0, {})", token, config_.vocab_size);
    const int64_t batch = int64_t(caches.size()), past = caches.front()->length;
    ensure_logits(batch);
    // The buffers the captured kernels write: a graph is valid while they stay.
    std::vector<const void*> key = {ws_.h.raw_data(), ws_.logits.raw_data(),
                                    reinterpret_cast<const void*>(caches.front()->capacity())};
    for (const KVCache* cache : caches)
      for (size_t i = 0; i < cache->keys.size(); ++i) {
        key.push_back(cache->keys[i].raw_data());
        key.push_back(cache->values[i].raw_data());
      }
    if (key != decode_.key) {
      decode_.graph.reset();
      decode_.eager_steps = 0;
      decode_.key = std::move(key);
    }
    void* stream = stream_.get();
    const int32_t position = int32_t(past);
    copy_to_device_async(ws_.ids.raw_data(), tokens.data(), tokens.size_bytes(), stream);
    copy_to_device_async(ws_.position.raw_data(), &position, sizeof position, stream);
    const auto advance = [&](int64_t length) {
      for (KVCache* cache : caches) cache->length = length;
    };
    if (decode_.failed || !graphs_enabled()) return run(1, past, caches, false, true);
    if (decode_.graph.ready()) {
      decode_.graph.launch(stream);
      advance(past + 1);
      return ws_.logits.rows(0, batch);
    }
    if (decode_.eager_steps++ == 0) return run(1, past, caches, false, true);
    decode_.graph.begin_capture(stream);
    try {
      run(1, past, caches, false, true);
      decode_.graph.end_capture();
    } catch (const Error&) {
      decode_.graph.abort_capture();
      decode_.failed = true;  // (the caches are unchanged: nothing ran)
      advance(past);
      return run(1, past, caches, false, true);
    }
    advance(past);  // run() advanced them; the replay below computes the step
    decode_.graph.launch(stream);
    advance(past + 1);
    return ws_.logits.rows(0, batch);
  }

  // Layer i's keys and values of the batch as [batch, capacity, kv_heads,
  // head_dim] tensors when its caches lie back to back in one allocation
  // (make_caches), else undefined tensors.
  static std::pair<Tensor, Tensor> batched_cache(std::span<KVCache* const> caches, size_t i) {
    const Tensor& k0 = caches.front()->keys[i];
    const Tensor& v0 = caches.front()->values[i];
    for (size_t s = 0; s < caches.size(); ++s) {
      const Tensor& k = caches[s]->keys[i];
      const Tensor& v = caches[s]->values[i];
      if (k.storage() != k0.storage() || v.storage() != v0.storage() || k.shape() != k0.shape() ||
          k.offset() != k0.offset() + s * k0.nbytes() || v.offset() != v0.offset() + s * v0.nbytes())
        return {};
    }
    Shape shape = k0.shape();
    shape.insert(shape.begin(), int64_t(caches.size()));
    return {Tensor::view(k0.storage(), k0.offset(), shape, k0.dtype()),
            Tensor::view(v0.storage(), v0.offset(), shape, v0.dtype())};
  }

  // A decoding step reads its position from the device only with every
  // layer's q/k/v stacked: separate k/v projections write into cache rows
  // that move with the position.
  bool all_qkv_stacked() const {
    return std::all_of(blocks_.begin(), blocks_.end(), [](const Block& b) { return b.qkv.defined(); });
  }

  // LOWBIT_CUDA_GRAPHS=0 launches the same steps kernel by kernel (to compare,
  // or to debug a kernel).
  static bool graphs_enabled() {
    const char* v = std::getenv("LOWBIT_CUDA_GRAPHS");
    return !(v && std::strcmp(v, "0") == 0);
  }

  // The logits buffer is reused once the caller has let go of the previous
  // logits (no other handle to its storage): no allocation, and on a GPU no
  // cudaFree (a device-wide synchronization), per decoding step.
  void ensure_logits(int64_t out_rows) const {
    if (!ws_.logits.defined() || ws_.logits.storage().use_count() > 1 || ws_.logits.dim(0) < out_rows)
      ws_.logits = Tensor::empty({std::max(out_rows, ws_.rows), lm_head_.out_features()}, dtype_, device_);
  }

  // The forward pass over the sequences' n tokens each already in ws_.ids
  // (sequence s in rows [s n, (s + 1) n) of every activation). The
  // projections, norms and activations take all rows at once; RoPE and
  // attention run per sequence, on its cache, or for all sequences at once
  // when the caches were made together (make_caches). device_position:
  // rope and attention read the position from ws_.position (decode_step).
  Tensor run(int64_t n, int64_t past, std::span<KVCache* const> caches, bool all_logits,
             bool device_position) const {
    const ModelConfig& c = config_;
    const int64_t kv_dim = c.num_kv_heads * c.head_dim;
    const int64_t batch = int64_t(caches.size()), rows = batch * n;
    Tensor ids = ws_.ids.rows(0, rows), h = ws_.h.rows(0, rows), x = ws_.x.rows(0, rows), tmp = ws_.tmp.rows(0, rows);
    Tensor q = ws_.q.rows(0, rows), attn = ws_.attn.rows(0, rows), gate = ws_.gate.rows(0, rows);
    Tensor up = ws_.up.rows(0, rows), qkv = ws_.qkv.rows(0, rows), gate_up = ws_.gate_up.rows(0, rows);
    Tensor q_heads = q.reshape({rows, c.num_heads, c.head_dim});
    const auto sequence = [n](const Tensor& t, int64_t s) { return t.rows(s * n, (s + 1) * n); };
    const ops::Position position = device_position ? ops::Position(past, ws_.position) : ops::Position(past);
    // One token on the GPU: RoPE and attention in one kernel (one launch a
    // layer fewer; the CPU would only run the two ops in turn).
    const bool fused_decode = rows == 1 && device_.is_cuda();
    ops::embedding(ids, embed_.table, h);
    // Rows [first, rows) are the ones whose logits are asked for; after the
    // last attention only they go on (one sequence: its last row; several:
    // all rows, and finish picks each sequence's last).
    const int64_t first = all_logits || batch > 1 ? 0 : n - 1;
    if (fused_decode && linears_fuse(h, attn, qkv, gate)) {
      KVCache& cache = *caches.front();
      // Each norm, SwiGLU and residual add runs inside the projection that
      // reads or writes it: four GEMVs and the attention a layer.
      const ops::LinearFusion add_out = add_output();
      for (size_t i = 0; i < blocks_.size(); ++i) {
        const Block& b = blocks_[i];
        b.qkv.forward(h, norm_input(b.input_norm), qkv);
        ops::rope_attention_decode(qkv, rope_, position, cache.keys[i], cache.values[i], attn, c.sliding_window);
        b.o_proj.forward(attn, add_out, h);
        b.gate_up.forward(h, norm_input(b.post_attention_norm, ops::LinearFusion::Output::SwiGLU), gate);
        b.down_proj.forward(gate, add_out, h);
      }
      ops::rms_norm(h, norm_.weight, norm_.eps, x);
      return finish(n, past, first, x, caches, all_logits);
    }
    ops::rms_norm(h, blocks_.front().input_norm.weight, blocks_.front().input_norm.eps, x);
    // A prompt's projections in order: the next weight dequantized ahead
    // where they all take the dequantize path on the GPU.
    std::optional<DequantizeAhead> ahead;
    if (std::vector<const nn::Linear*> order = device_position ? std::vector<const nn::Linear*>{}
                                                               : dequantize_ahead_order(rows);
        !order.empty()) {
      if (!side_stream_.get()) side_stream_ = CudaStream(device_.index, true);
      ahead.emplace(std::move(order), ws_.weight_slots, dtype_, device_, stream_.get(), side_stream_.get());
    }
    // Projections of the order go through `ahead`; the others (a fused
    // kernel for this many rows) run as they are.
    const auto project = [&](const nn::Linear& l, const Tensor& in, Tensor& out) {
      if (!ahead || !ahead->forward(l, in, out)) l.forward(in, out);
    };
    ops::LinearFusion swiglu_out;
    swiglu_out.output = ops::LinearFusion::Output::SwiGLU;
    const bool swiglu_fuses = fusions_on();
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const Block& b = blocks_[i];
      if (b.qkv.defined() && fused_decode) {
        KVCache& cache = *caches.front();
        b.qkv.forward(x, qkv);
        ops::rope_attention_decode(qkv, rope_, position, cache.keys[i], cache.values[i], attn, c.sliding_window);
      } else if (b.qkv.defined()) {
        project(b.qkv, x, qkv);
        // Caches made together (make_caches): RoPE and attention of every
        // sequence in one call each (on the GPU one kernel each; a decoding
        // step one kernel for both).
        auto [keys, values] = batch > 1 ? batched_cache(caches, i) : std::pair<Tensor, Tensor>{};
        if (keys.defined() && n == 1 && device_.is_cuda()) {
          ops::rope_attention_decode(qkv, rope_, position, keys, values, attn, c.sliding_window);
        } else if (keys.defined()) {
          ops::rope_qkv(qkv, rope_, position, q_heads, keys, values);
          ops::attention(q_heads, keys, values, position, attn, c.sliding_window);
        } else {
          for (int64_t s = 0; s < batch; ++s) {
            KVCache& cache = *caches[size_t(s)];
            Tensor q_s = sequence(q_heads, s), attn_s = sequence(attn, s);
            ops::rope_qkv(sequence(qkv, s), rope_, position, q_s, cache.keys[i], cache.values[i]);
            ops::attention(q_s, cache.keys[i], cache.values[i], position, attn_s, c.sliding_window);
          }
        }
      } else {
        b.q_proj.forward(x, q);
        for (int64_t s = 0; s < batch; ++s) {
          // Keys and values go straight into the cache rows of these positions.
          KVCache& cache = *caches[size_t(s)];
          Tensor k = cache.keys[i].rows(past, past + n).reshape({n, kv_dim});
          Tensor v = cache.values[i].rows(past, past + n).reshape({n, kv_dim});
          const Tensor x_s = sequence(x, s);
          b.k_proj.forward(x_s, k);
          b.v_proj.forward(x_s, v);
          Tensor q_s = sequence(q_heads, s), attn_s = sequence(attn, s);
          Tensor k_heads = k.reshape({n, c.num_kv_heads, c.head_dim});
          ops::apply_rope(q_s, rope_, past);
          ops::apply_rope(k_heads, rope_, past);
          ops::attention(q_s, cache.keys[i], cache.values[i], position, attn_s, c.sliding_window);
        }
      }
      project(b.o_proj, attn, tmp);
      ops::add_rms_norm(h, tmp, b.post_attention_norm.weight, b.post_attention_norm.eps, x);
      if (b.gate_up.defined() && swiglu_fuses && b.gate_up.fuses(x, swiglu_out, gate)) {
        // The prompt's SwiGLU in the GEMM's epilogue (4-bit, Hopper).
        b.gate_up.forward(x, swiglu_out, gate);
      } else if (b.gate_up.defined()) {
        project(b.gate_up, x, gate_up);
        ops::swiglu(gate_up, gate);
      } else {
        b.gate_proj.forward(x, gate);
        b.up_proj.forward(x, up);
        ops::silu_mul(gate, up, gate);
      }
      project(b.down_proj, gate, tmp);
      // The residual add and the next norm (the next block's, or the final one).
      const nn::RMSNorm& next = i + 1 < blocks_.size() ? blocks_[i + 1].input_norm : norm_;
      const bool last = i + 1 == blocks_.size();
      Tensor h_rows = last ? h.rows(first, rows) : h, x_rows = last ? x.rows(first, rows) : x;
      ops::add_rms_norm(h_rows, last ? tmp.rows(first, rows) : tmp, next.weight, next.eps, x_rows);
    }
    return finish(n, past, first, x, caches, all_logits);
  }

  // The projections a prompt of n tokens dequantizes ahead, in the order
  // they run: on the GPU, with stacked q/k/v and gate/up, when every block
  // has at least two on the dequantize path (the others run their fused
  // kernels in turn). Empty: every projection runs in turn (also with
  // LOWBIT_DEQUANTIZE_AHEAD=0, to compare).
  std::vector<const nn::Linear*> dequantize_ahead_order(int64_t n) const {
    const char* v = std::getenv("LOWBIT_DEQUANTIZE_AHEAD");
    if (n <= 1 || !device_.is_cuda() || (v && std::strcmp(v, "0") == 0)) return {};
    std::vector<const nn::Linear*> order;
    for (const Block& b : blocks_) {
      if (!b.qkv.defined() || !b.gate_up.defined()) return {};
      const size_t before = order.size();
      for (const nn::Linear* l : {&b.qkv, &b.o_proj, &b.gate_up, &b.down_proj})
        if (l->dequantizes(n, dtype_, device_)) order.push_back(l);
      if (order.size() - before < 2) return {};
    }
    return order;
  }

  // The logits of rows [first, rows) from the final norm's output x; without
  // all_logits, of each sequence's last row when several sequences of more
  // than one token ran (first = 0 then, see run).
  Tensor finish(int64_t n, int64_t past, int64_t first, const Tensor& x, std::span<KVCache* const> caches,
                bool all_logits) const {
    for (KVCache* cache : caches) cache->length = past + n;
    const int64_t batch = int64_t(caches.size()), rows = batch * n;
    if (!all_logits && batch > 1 && n > 1) {
      // Each sequence's last row gathered (an embedding lookup in x), then the head.
      std::vector<int32_t> last(static_cast<size_t>(batch));
      for (int64_t s = 0; s < batch; ++s) last[size_t(s)] = int32_t((s + 1) * n - 1);
      Tensor picked = ws_.tmp.rows(0, batch);
      ops::embedding(Tensor::from_vector(last, {batch}).to(device_), x, picked);
      ensure_logits(batch);
      Tensor logits = ws_.logits.rows(0, batch);
      lm_head_.forward(picked, logits);
      return logits;
    }
    const int64_t out_rows = rows - first;
    ensure_logits(out_rows);
    Tensor logits = ws_.logits.rows(0, out_rows);
    lm_head_.forward(x.rows(first, rows), logits);
    return logits;
  }

  static ops::LinearFusion norm_input(const nn::RMSNorm& norm,
                                      ops::LinearFusion::Output output = ops::LinearFusion::Output::Store) {
    ops::LinearFusion f;
    f.input = ops::LinearFusion::Input::RmsNorm;
    f.norm_weight = norm.weight;
    f.eps = norm.eps;
    f.output = output;
    return f;
  }
  static ops::LinearFusion add_output() {
    ops::LinearFusion f;
    f.output = ops::LinearFusion::Output::Add;
    return f;
  }

  // Whether the projections may run with their fusions as single kernels;
  // LOWBIT_FUSED_LINEARS=0 runs the ops in turn (to compare).
  static bool fusions_on() {
    const char* v = std::getenv("LOWBIT_FUSED_LINEARS");
    return !(v && std::strcmp(v, "0") == 0);
  }
  // Whether every layer's projections run with their fusions as single
  // kernels (stacked 4-bit q/k/v and gate/up on the GPU, one row).
  bool linears_fuse(const Tensor& h, const Tensor& attn, const Tensor& qkv, const Tensor& gate) const {
    if (!fusions_on()) return false;
    const ops::LinearFusion add_out = add_output();
    return std::all_of(blocks_.begin(), blocks_.end(), [&](const Block& b) {
      return b.qkv.defined() && b.gate_up.defined() && b.qkv.fuses(h, norm_input(b.input_norm), qkv) &&
             b.o_proj.fuses(attn, add_out, h) &&
             b.gate_up.fuses(h, norm_input(b.post_attention_norm, ops::LinearFusion::Output::SwiGLU), gate) &&
             b.down_proj.fuses(gate, add_out, h);
    });
  }


 public:
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
  mutable CudaStream stream_;  // GPU: this model's stream (made on first use)
  mutable CudaStream side_stream_;  // GPU: weights dequantized ahead (low priority)
  // GPU: the captured decoding step, for the workspace, logits buffer and
  // cache named by `key`.
  struct DecodeGraph {
    CudaGraph graph;
    std::vector<const void*> key;
    int eager_steps = 0;
    bool failed = false;
  };
  mutable DecodeGraph decode_;
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
