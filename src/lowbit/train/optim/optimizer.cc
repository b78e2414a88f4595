// Front end of the optimizers: validates parameters, keeps their state, turns
// the config into per-step constants (bias correction on the host, percentile
// clipping, trust ratios) and dispatches each tensor to its device's kernels.
#include "lowbit/train/optim/optimizer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "lowbit/io/safetensors.h"
#include "lowbit/quant/formats.h"
#include "train/optim/kernels.h"
#ifdef LOWBIT_WITH_CUDA
#include "core/cuda_runtime.h"
#endif

namespace lowbit::train {

using optim::detail::CodeSearch;
using optim::detail::Rule;
using optim::detail::StepParams;
using optim::detail::TensorStep;
namespace detail = optim::detail;

namespace {

constexpr std::array<std::string_view, 9> kNames = {"adam", "adamw", "lion", "sgd", "rmsprop",
                                                     "adagrad", "lamb", "lars", "ademamix"};

Rule rule_of(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::Adam:
    case OptimizerKind::AdamW:
    case OptimizerKind::LAMB: return Rule::Adam;
    case OptimizerKind::AdEMAMix: return Rule::AdEMAMix;
    case OptimizerKind::SGD:
    case OptimizerKind::LARS: return Rule::Momentum;
    case OptimizerKind::Lion: return Rule::Lion;
    case OptimizerKind::RMSprop: return Rule::RMSprop;
    case OptimizerKind::Adagrad: return Rule::Adagrad;
  }
  return Rule::Adam;
}

const CodeSearch& host_search(bool is_signed) {
  static const CodeSearch signed_search = [] {
    CodeSearch t;
    detail::build_code_search(quant::dynamic_map_signed().data(), t);
    return t;
  }();
  static const CodeSearch unsigned_search = [] {
    CodeSearch t;
    detail::build_code_search(quant::dynamic_map_unsigned().data(), t);
    return t;
  }();
  return is_signed ? signed_search : unsigned_search;
}

}  // namespace

std::string_view optimizer_name(OptimizerKind kind) { return kNames[size_t(kind)]; }

OptimizerKind parse_optimizer_kind(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i)
    if (kNames[i] == name) return OptimizerKind(i);
  fail("unknown optimizer '{}': expected one of adam, adamw, lion, sgd, rmsprop, adagrad, lamb, lars, ademamix",
       name);
}

OptimizerConfig OptimizerConfig::defaults(OptimizerKind kind, int state_bits) {
  OptimizerConfig c;
  c.kind = kind;
  c.state_bits = state_bits;
  c.weight_decay = 0.0f;
  switch (kind) {
    case OptimizerKind::Adam: break;
    case OptimizerKind::AdamW: c.weight_decay = 1e-2f; break;
    case OptimizerKind::Lion: c.lr = 1e-4f; c.beta2 = 0.99f; break;
    case OptimizerKind::SGD: c.lr = 1e-2f; c.momentum = 0.9f; c.eps = 0.0f; break;
    case OptimizerKind::RMSprop: c.lr = 1e-2f; c.alpha = 0.99f; break;
    case OptimizerKind::Adagrad: c.lr = 1e-2f; c.eps = 1e-10f; break;
    case OptimizerKind::LAMB: c.max_unorm = 1.0f; break;
    case OptimizerKind::LARS: c.lr = 1e-2f; c.momentum = 0.9f; c.eps = 0.0f; c.max_unorm = 0.02f; break;
    case OptimizerKind::AdEMAMix: c.weight_decay = 1e-2f; break;
  }
  return c;
}

struct Optimizer::Impl {
  struct Param {
    Tensor tensor;
    ParamOverrides overrides;
    ParamState state;
    bool paged = false;
  };
  std::vector<Param> params;
#ifdef LOWBIT_WITH_CUDA
  // What the kernels use on each device that holds parameters: the code
  // searches (signed, unsigned) and the paged states' stagers (by state
  // bits: [0] 8-bit, [1] 32-bit), made there on first use.
  struct OnDevice {
    std::array<const CodeSearch*, 2> search{};
    std::unique_ptr<detail::cuda::PagedStager> stager[2];
  };
  std::vector<OnDevice> devices;
  OnDevice& on(int device) {
    if (devices.size() <= size_t(device)) devices.resize(size_t(device) + 1);
    return devices[size_t(device)];
  }
  ~Impl() {
    for (size_t device = 0; device < devices.size(); ++device) {
      OnDevice& d = devices[device];
      if (!d.search[0] && !d.stager[0] && !d.stager[1]) continue;
      lowbit::detail::cuda_use_device(int(device));
      for (auto& stager : d.stager) stager.reset();
      for (auto* s : d.search)
        if (s) detail::cuda::free_search(s);
    }
  }
#endif
};

Optimizer::Optimizer(OptimizerConfig config) : config_(config), impl_(std::make_unique<Impl>()) {
  LOWBIT_CHECK(config_.state_bits == 32 || config_.state_bits == 8,
               "optimizer: state_bits must be 32 or 8, got {}", config_.state_bits);
  LOWBIT_CHECK(config_.block_size == detail::kQuantBlock, "optimizer: block_size must be 256 (bitsandbytes' "
               "optimizer block), got {}", config_.block_size);
  LOWBIT_CHECK(config_.lr >= 0.0f && config_.eps >= 0.0f && config_.weight_decay >= 0.0f,
               "optimizer: lr, eps and weight_decay must be >= 0");
  LOWBIT_CHECK(config_.beta1 >= 0.0f && config_.beta1 < 1.0f && config_.beta2 >= 0.0f && config_.beta2 < 1.0f,
               "optimizer: betas must be in [0, 1), got ({}, {})", config_.beta1, config_.beta2);
  LOWBIT_CHECK(config_.percentile_clipping >= 1 && config_.percentile_clipping <= 100,
               "optimizer: percentile_clipping must be in 1..100, got {}", config_.percentile_clipping);
  LOWBIT_CHECK(!(config_.paged && config_.max_unorm > 0.0f),
               "optimizer: paged state does not support max_unorm (LAMB/LARS trust ratio); use paged = false");
  LOWBIT_CHECK(config_.paged_chunk_elements >= detail::kQuantBlock && config_.paged_chunk_elements % detail::kQuantBlock == 0,
               "optimizer: paged_chunk_elements must be a positive multiple of 256, got {}",
               config_.paged_chunk_elements);
}

Optimizer::~Optimizer() = default;
Optimizer::Optimizer(Optimizer&&) noexcept = default;
Optimizer& Optimizer::operator=(Optimizer&&) noexcept = default;

void Optimizer::set_lr(float lr) {
  LOWBIT_CHECK(lr >= 0.0f, "optimizer: lr must be >= 0, got {}", lr);
  config_.lr = lr;
}

size_t Optimizer::size() const { return impl_->params.size(); }

const ParamState& Optimizer::state(size_t index) const {
  LOWBIT_CHECK(index < impl_->params.size(), "optimizer: no parameter {} (have {})", index, impl_->params.size());
  return impl_->params[index].state;
}

size_t Optimizer::add(Tensor param, ParamOverrides overrides) {
  LOWBIT_CHECK(param.defined(), "optimizer: parameter {} is undefined", impl_->params.size());
  LOWBIT_CHECK(param.dtype() == DType::F32, "optimizer: parameter {} must be f32, got {}", impl_->params.size(),
               param.describe());
#ifndef LOWBIT_WITH_CUDA
  LOWBIT_CHECK(param.device().is_cpu(), "optimizer: parameter {} is on {} but lowbit was built without CUDA",
               impl_->params.size(), param.describe());
#endif
  Impl::Param entry;
  entry.tensor = param;
  entry.overrides = overrides;
  const int64_t n = param.numel();
  int bits = overrides.state_bits.value_or(config_.state_bits);
  LOWBIT_CHECK(bits == 32 || bits == 8, "optimizer: state_bits override must be 32 or 8, got {}", bits);
  if (n < config_.min_8bit_size || n < 4096) bits = 32;  // bitsandbytes keeps small tensors in 32-bit
  const Rule rule = rule_of(config_.kind);
  ParamState& st = entry.state;
  st.bits = bits;
  st.num_states = detail::rule_states(rule);
  entry.paged = config_.paged && param.device().is_cuda();
  // State starts at zero codes and zero absmax (dequantizes to 0), as in bitsandbytes.
  const MemoryKind kind = entry.paged ? MemoryKind::PinnedHost : MemoryKind::Host;
  const Device where = entry.paged ? Device::cpu() : param.device();
  auto zeros = [&](Shape shape, DType dtype) {
    if (where.is_cpu()) {
      Tensor t = Tensor::empty(shape, dtype, Device::cpu(), kind);
      if (t.nbytes()) std::memset(t.raw_data(), 0, t.nbytes());
      return t;
    }
    return Tensor::zeros(shape, dtype, where);
  };
  const int64_t blocks = (n + detail::kQuantBlock - 1) / detail::kQuantBlock;
  for (int k = 0; k < st.num_states; ++k) {
    if (bits == 8) {
      st.state[k] = zeros({n}, DType::U8);
      st.absmax[k] = zeros({blocks}, DType::F32);
    } else {
      st.state[k] = zeros({n}, DType::F32);
    }
  }
  impl_->params.push_back(std::move(entry));
  return impl_->params.size() - 1;
}

size_t Optimizer::state_bytes() const {
  size_t bytes = 0;
  for (const auto& p : impl_->params)
    for (int k = 0; k < p.state.num_states; ++k)
      bytes += p.state.state[k].nbytes() + (p.state.absmax[k].defined() ? p.state.absmax[k].nbytes() : 0);
  return bytes;
}

void Optimizer::step(std::span<const Tensor> grads) {
  auto& params = impl_->params;
  LOWBIT_CHECK(grads.size() == params.size(), "optimizer step: expected {} gradients (one per parameter), got {}",
               params.size(), grads.size());
  const Rule rule = rule_of(config_.kind);
  for (size_t i = 0; i < params.size(); ++i) {
    auto& entry = params[i];
    const Tensor& g = grads[i];
    LOWBIT_CHECK(g.defined() && g.dtype() == DType::F32 && g.shape() == entry.tensor.shape() &&
                     g.device() == entry.tensor.device(),
                 "optimizer step: gradient {} must be {}, got {}", i, entry.tensor.describe(),
                 g.defined() ? g.describe() : std::string("undefined"));
    const bool on_cuda = entry.tensor.device().is_cuda();
#ifndef LOWBIT_WITH_CUDA
    LOWBIT_CHECK(!on_cuda, "optimizer step: {} is on CUDA but lowbit was built without CUDA", entry.tensor.describe());
#endif
    ParamState& st = entry.state;
    const ParamOverrides& ov = entry.overrides;
    st.step += 1;

    StepParams a;
    a.lr = ov.lr.value_or(config_.lr);
    a.weight_decay = ov.weight_decay.value_or(config_.weight_decay);
    a.eps = ov.eps.value_or(config_.eps);
    a.step = st.step;
    a.nesterov = config_.nesterov;
    switch (rule) {
      case Rule::Momentum: a.beta1 = ov.beta1.value_or(config_.momentum); break;
      case Rule::RMSprop: a.beta1 = ov.beta1.value_or(config_.alpha); break;
      default:
        a.beta1 = ov.beta1.value_or(config_.beta1);
        a.beta2 = ov.beta2.value_or(config_.beta2);
    }
    a.beta3 = config_.beta3;
    a.alpha = config_.alpha;
    // Bias correction as bitsandbytes' kernels form it, computed once here.
    a.correction1 = 1.0f - std::pow(a.beta1, float(a.step));
    a.correction2 = std::sqrt(1.0f - std::pow(a.beta2, float(a.step)));
    a.step_size = -a.lr * a.correction2 / a.correction1;

    TensorStep t;
    t.p = entry.tensor.data<float>();
    t.g = g.data<float>();
    t.n = entry.tensor.numel();
    t.bits = st.bits;
    for (int k = 0; k < st.num_states; ++k) {
      if (st.bits == 8) {
        t.codes[k] = st.state[k].data<uint8_t>();
        t.absmax[k] = st.absmax[k].data<float>();
      } else {
        t.state32[k] = st.state[k].data<float>();
      }
    }
    t.search_signed = &host_search(true);
    t.search_unsigned = &host_search(false);
#ifdef LOWBIT_WITH_CUDA
    // The kernels run on the parameter's device, with that device's searches.
    Impl::OnDevice* on_device = nullptr;
    if (on_cuda) {
      const int device = entry.tensor.device().index;
      lowbit::detail::cuda_use_device(device);
      on_device = &impl_->on(device);
      if (!on_device->search[0]) {
        on_device->search[0] = detail::cuda::upload_search(host_search(true));
        on_device->search[1] = detail::cuda::upload_search(host_search(false));
      }
    }
    if (on_cuda && !entry.paged) {
      t.search_signed = on_device->search[0];
      t.search_unsigned = on_device->search[1];
    }
#endif
    auto squared_norm = [&](const float* x) {
#ifdef LOWBIT_WITH_CUDA
      if (on_cuda) return detail::cuda::squared_norm(x, t.n);
#endif
      return detail::cpu::squared_norm(x, t.n);
    };

    // Percentile clipping: keep the last 100 squared gradient norms; scale the
    // gradient down to the given percentile of them (bitsandbytes' rule).
    const int percentile = ov.percentile_clipping.value_or(config_.percentile_clipping);
    if (percentile < 100) {
      const float gnorm_sq = float(squared_norm(t.g));
      if (st.gnorm_history.empty()) st.gnorm_history.assign(100, 0.0f);
      if (st.step == 1)
        std::fill(st.gnorm_history.begin(), st.gnorm_history.end(), gnorm_sq);
      else
        st.gnorm_history[size_t(st.step % 100)] = gnorm_sq;
      const float current = std::sqrt(st.gnorm_history[size_t(st.step % 100)]);
      std::vector<float> sorted = st.gnorm_history;
      std::sort(sorted.begin(), sorted.end());
      const float clip = std::sqrt(sorted[size_t(percentile)]);
      if (current > clip) a.gnorm_scale = clip / current;
    }

    // LAMB / LARS: clip the update norm to max_unorm times the parameter norm.
    if (config_.max_unorm > 0.0f && (rule == Rule::Adam || rule == Rule::Momentum)) {
      StepParams pre = a;
      pre.correction1 = 1.0f - std::pow(a.beta1, float(a.step));
      double unorm = 0;
#ifdef LOWBIT_WITH_CUDA
      if (on_cuda) unorm = detail::cuda::update_norm(rule, pre, t);
      else
#endif
        unorm = detail::cpu::update_norm(rule, pre, t);
      const float param_norm = std::sqrt(float(squared_norm(t.p)));
      const float u = std::sqrt(float(unorm));
      const float limit = config_.max_unorm * param_norm + (rule == Rule::Momentum ? a.eps : 0.0f);
      if (u > limit) a.update_scale = limit / u;
    }

    if (!on_cuda) {
      detail::cpu::update(rule, a, t);
      continue;
    }
#ifdef LOWBIT_WITH_CUDA
    if (entry.paged) {
      auto& stager = on_device->stager[st.bits == 8 ? 0 : 1];
      if (!stager)
        stager = std::make_unique<detail::cuda::PagedStager>(config_.paged_chunk_elements, 3, st.bits);
      t.search_signed = on_device->search[0];
      t.search_unsigned = on_device->search[1];
      stager->update(rule, a, t);
    } else {
      detail::cuda::update(rule, a, t, nullptr);
    }
#endif
  }
}

void Optimizer::save_state(const std::filesystem::path& path) const {
  std::vector<std::pair<std::string, Tensor>> tensors;
  io::Metadata meta;
  meta["optimizer"] = std::string(optimizer_name(config_.kind));
  meta["params"] = std::to_string(impl_->params.size());
  for (size_t i = 0; i < impl_->params.size(); ++i) {
    const ParamState& st = impl_->params[i].state;
    const std::string prefix = std::to_string(i) + ".";
    meta[prefix + "step"] = std::to_string(st.step);
    meta[prefix + "bits"] = std::to_string(st.bits);
    for (int k = 0; k < st.num_states; ++k) {
      tensors.emplace_back(prefix + "state" + std::to_string(k + 1), st.state[k].to(Device::cpu()));
      if (st.absmax[k].defined())
        tensors.emplace_back(prefix + "absmax" + std::to_string(k + 1), st.absmax[k].to(Device::cpu()));
    }
    if (!st.gnorm_history.empty()) tensors.emplace_back(prefix + "gnorm", Tensor::from_vector(st.gnorm_history));
  }
  io::save_safetensors(path, tensors, meta);
}

void Optimizer::load_state(const std::filesystem::path& path) {
  auto reader = io::SafetensorsReader::open(path);
  const auto& meta = reader.metadata();
  auto get = [&](const std::string& key) -> std::string {
    auto it = meta.find(key);
    if (it == meta.end()) throw Error(fmt::format("optimizer state: metadata '{}' missing", key)).with_file(path.string());
    return it->second;
  };
  LOWBIT_CHECK(get("optimizer") == optimizer_name(config_.kind),
               "optimizer state {}: saved by '{}', this optimizer is '{}'", path.string(), get("optimizer"),
               optimizer_name(config_.kind));
  LOWBIT_CHECK(std::stoul(get("params")) == impl_->params.size(),
               "optimizer state {}: holds {} parameters, this optimizer has {}", path.string(), get("params"),
               impl_->params.size());
  for (size_t i = 0; i < impl_->params.size(); ++i) {
    ParamState& st = impl_->params[i].state;
    const std::string prefix = std::to_string(i) + ".";
    LOWBIT_CHECK(std::stoi(get(prefix + "bits")) == st.bits, "optimizer state {}: parameter {} has {}-bit state there, "
                 "{}-bit here", path.string(), i, get(prefix + "bits"), st.bits);
    st.step = std::stoi(get(prefix + "step"));
    auto copy_into = [&](const std::string& name, Tensor& dst) {
      Tensor src = reader.tensor(name);
      LOWBIT_CHECK(src.dtype() == dst.dtype() && src.numel() == dst.numel(),
                   "optimizer state {}: '{}' is {}, expected {}", path.string(), name, src.describe(), dst.describe());
      if (dst.device().is_cpu())
        std::memcpy(dst.raw_data(), src.raw_data(), src.nbytes());
      else
        dst = src.to(dst.device());
    };
    for (int k = 0; k < st.num_states; ++k) {
      copy_into(prefix + "state" + std::to_string(k + 1), st.state[k]);
      if (st.absmax[k].defined()) copy_into(prefix + "absmax" + std::to_string(k + 1), st.absmax[k]);
    }
    st.gnorm_history.clear();
    if (reader.contains(prefix + "gnorm")) {
      Tensor gn = reader.tensor(prefix + "gnorm");
      st.gnorm_history.assign(gn.data<float>(), gn.data<float>() + gn.numel());
    }
  }
}

}  // namespace lowbit::train
