// Optimizers with 32-bit or 8-bit blockwise state, on the CPU and on CUDA,
// with bitsandbytes' numerics: Adam, AdamW, Lion, SGD (momentum, Nesterov),
// RMSprop, Adagrad, LAMB, LARS and AdEMAMix.
//
// 8-bit state: each state tensor is stored as uint8 codes of the dynamic map
// (signed; the second moment uses the unsigned map) with one fp32 absmax per
// 256 values, re-quantized from the new values at every step. Tensors with
// fewer than min_8bit_size elements keep 32-bit state, as in bitsandbytes.
// Paged state lives in pinned host memory and visits the GPU in chunks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/core/tensor.h"

namespace lowbit::train {

enum class OptimizerKind : uint8_t { Adam, AdamW, Lion, SGD, RMSprop, Adagrad, LAMB, LARS, AdEMAMix };

std::string_view optimizer_name(OptimizerKind kind);  // "adamw"
// "adam", "adamw", "lion", "sgd", "rmsprop", "adagrad", "lamb", "lars", "ademamix".
OptimizerKind parse_optimizer_kind(std::string_view name);

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::AdamW;
  float lr = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f;
  float beta3 = 0.9999f;      // AdEMAMix slow EMA
  float alpha = 5.0f;         // AdEMAMix mixing; RMSprop smoothing (0.99 there)
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled for Adam/AdamW/LAMB/AdEMAMix/8-bit Lion, L2 otherwise
  float momentum = 0.0f;      // SGD, LARS
  bool nesterov = false;      // SGD
  float max_unorm = 0.0f;     // trust-ratio clip: LAMB 1.0, LARS 0.02
  int state_bits = 32;        // 32 or 8
  int64_t min_8bit_size = 4096;
  int percentile_clipping = 100;  // < 100: clip gradients at that percentile of the last 100 norms
  int block_size = 256;
  bool paged = false;             // CUDA parameters: state in pinned host memory
  int64_t paged_chunk_elements = int64_t(1) << 22;  // elements per chunk on the GPU

  // bitsandbytes' defaults for `kind` (lr, betas, eps, weight decay, max_unorm).
  static OptimizerConfig defaults(OptimizerKind kind, int state_bits = 32);
};

// Per-parameter exceptions, for example embeddings kept in 32-bit state.
struct ParamOverrides {
  std::optional<int> state_bits;
  std::optional<float> lr, weight_decay, beta1, beta2, eps;
  std::optional<int> percentile_clipping;
};

// The state of one parameter. 8-bit: codes (U8) and absmax (F32) per state;
// 32-bit: F32 states, absmax undefined.
struct ParamState {
  int step = 0;
  int bits = 32;
  int num_states = 0;
  Tensor state[3];
  Tensor absmax[3];
  std::vector<float> gnorm_history;  // percentile clipping: last 100 squared norms
};

class Optimizer {
 public:
  explicit Optimizer(OptimizerConfig config);
  ~Optimizer();
  Optimizer(Optimizer&&) noexcept;
  Optimizer& operator=(Optimizer&&) noexcept;

  // Registers a parameter (F32, contiguous, CPU or CUDA); returns its index.
  size_t add(Tensor param, ParamOverrides overrides = {});
  size_t size() const;

  // One step; grads[i] has the shape, dtype and device of parameter i.
  void step(std::span<const Tensor> grads);

  const OptimizerConfig& config() const { return config_; }
  // Learning-rate schedules: the lr of the next steps (parameters without an lr override).
  void set_lr(float lr);
  const ParamState& state(size_t index) const;
  // Bytes of optimizer state (codes, absmax, fp32 states) over all parameters.
  size_t state_bytes() const;

  // Safetensors: `<i>.state<k>`, `<i>.absmax<k>`, `<i>.gnorm`; metadata holds
  // steps and the config, checked on load so a run resumes bit for bit.
  void save_state(const std::filesystem::path& path) const;
  void load_state(const std::filesystem::path& path);

 private:
  struct Impl;
  OptimizerConfig config_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lowbit::train
