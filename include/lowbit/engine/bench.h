// Speed of a model in each weight format, the table that bitsandbytes and
// transformers users know: prefill and decode tokens/s after a prompt, peak
// memory and weight bytes, and prefill tokens/s at longer lengths. The model is
// a checkpoint directory or a preset shape with random weights
// (synthetic_weights.h); each format is built by quantization on load.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/core/device.h"
#include "lowbit/engine/model_loader.h"

namespace lowbit::engine {

// A weight format and how the model is loaded for it.
struct BenchFormat {
  std::string name;  // "bf16", "int8", "nf4", ...
  LoadOptions load;
};

// bf16 / f16 / f32: dense; int8: LLM.int8 (threshold 6.0, f16 activations as
// bitsandbytes); nf4 / fp4: blocksize 64, bf16 compute. An unknown name is an
// Error listing the valid ones.
BenchFormat bench_format(std::string_view name);
std::string bench_format_names();  // "bf16, f16, f32, int8, nf4, fp4, nf4-dq, fp4-dq"

// The model under test: a checkpoint directory, or a preset shape with random weights.
struct BenchModel {
  std::filesystem::path dir;
  std::string shape;  // set: a preset of synthetic_weights.h, ignoring dir
  uint64_t seed = 0;  // of the random weights and of the token ids
};

struct BenchOptions {
  std::vector<std::string> formats = {"bf16", "int8", "nf4"};
  Device device = Device::cpu();
  // Batch sizes, a row each a format: sequences run together
  // (CausalLM::forward_batch), each with its own prompt and cache.
  std::vector<int64_t> batches = {1};
  int64_t prompt = 32;  // tokens before decoding
  int64_t decode = 128; // single-token steps timed after the prompt
  std::vector<int64_t> prefill = {512, 2048};
  // Leave out prefill lengths beyond the model's context instead of refusing
  // them (for the default lengths on a small model).
  bool drop_long_prefill = false;
  // The first run of each measurement warms up; when it took less than
  // repeat_below_seconds, `repeats` more runs follow and their median counts.
  int repeats = 3;
  double repeat_below_seconds = 5.0;
};

struct PrefillSpeed {
  int64_t tokens = 0;
  double tokens_per_second = 0.0;
  uint64_t peak_memory_bytes = 0;
};

struct BenchRow {
  std::string format;
  std::string device;
  int64_t batch = 1, prompt = 0, decode = 0;
  double prefill_tokens_per_second = 0.0;  // of the prompt
  double decode_tokens_per_second = 0.0;
  // cuda: the most GPU memory lowbit held while prompt + decode ran (weights,
  // cache, activations: core/storage.h's device_memory_stats, as PyTorch's
  // max_memory_allocated); cpu: weight + cache bytes.
  uint64_t peak_memory_bytes = 0;
  uint64_t weight_bytes = 0;               // CausalLM::weight_bytes()
  // cuda: in use on the device after decoding (cudaMemGetInfo: the CUDA
  // context, library workspaces and other processes included).
  uint64_t device_memory_used_bytes = 0;
  uint64_t host_peak_rss_bytes = 0;        // the process's resident high-water mark so far
  std::vector<PrefillSpeed> prefill;
  double load_seconds = 0.0;
};

struct BenchReport {
  std::string model;     // the directory or "llama2-7b (random weights)"
  int64_t parameters = 0;
  int threads = 0;
  std::vector<BenchRow> rows;
};

// Options are checked before anything loads (Errors say which value is wrong).
// `log` receives one line per step (loading, warm-up), for a terminal.
BenchReport run_bench(const BenchModel& model, const BenchOptions& options,
                      const std::function<void(const std::string&)>& log = {});

nlohmann::json to_json(const BenchRow& row);
// The report as an aligned table, one row per format.
std::string format_table(const BenchReport& report);

}  // namespace lowbit::engine
