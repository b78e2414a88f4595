#include "lowbit/engine/bench.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "engine/device_memory.h"
#include "lowbit/core/bytes.h"
#include "lowbit/core/thread_pool.h"
#include "lowbit/engine/generate.h"
#include "lowbit/engine/synthetic_weights.h"
#include "lowbit/models/registry.h"
#include "lowbit/ops/sampling.h"

namespace lowbit::engine {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs `run` once to warm up (caches, allocator, kernels chosen on first
// use); when that took less than the threshold, `repeats` more runs follow
// and the median of those is returned, else the first run's.
double measure(const BenchOptions& o, const std::function<double()>& run) {
  const double first = run();
  if (first >= o.repeat_below_seconds || o.repeats <= 0) return first;
  std::vector<double> times;
  for (int i = 0; i < o.repeats; ++i) times.push_back(run());
  return median(times);
}

// Token ids the same for every format: uniform over the vocabulary.
std::vector<int32_t> token_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint64_t state = seed ^ 0x5851f42d4c957f2dull;
  for (auto& id : ids) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;  // PCG's LCG step
    id = int32_t((state >> 33) % uint64_t(vocab));
  }
  return ids;
}

uint64_t cache_bytes(const models::CausalLM& model, int64_t capacity) {
  const models::ModelConfig& c = model.config();
  return 2 * uint64_t(c.num_layers) * storage_bytes(model.dtype(), size_t(capacity * c.num_kv_heads * c.head_dim));
}

void check_options(const BenchOptions& o) {
  if (o.formats.empty()) fail("no format to measure; the formats are {}", bench_format_names());
  for (const auto& f : o.formats) bench_format(f);
  LOWBIT_CHECK(!o.batches.empty(), "no batch size to measure");
  for (const int64_t b : o.batches)
    LOWBIT_CHECK(b >= 1 && b <= 1024, "a batch holds 1 to 1024 sequences, got {}", b);
  LOWBIT_CHECK(o.prompt > 0, "the prompt must have at least 1 token, got {}", o.prompt);
  LOWBIT_CHECK(o.decode > 0, "at least 1 decode step is needed, got {}", o.decode);
  for (const int64_t n : o.prefill) LOWBIT_CHECK(n > 0, "prefill lengths must be positive, got {}", n);
  require_available(o.device);
}

struct LoadedModel {
  std::unique_ptr<models::CausalLM> model;
  double seconds = 0.0;
};

LoadedModel load(const BenchModel& m, const BenchFormat& format, const BenchOptions& o) {
  LoadOptions load = format.load;
  load.device = o.device;
  const auto t0 = Clock::now();
  LoadedModel out;
  if (m.shape.empty()) {
    out.model = load_model(m.dir, load);
  } else {
    const ShapePreset& preset = find_shape_preset(m.shape);
    const models::ModelConfig config = models::find_architecture(preset.config).parse_config(preset.config);
    // Made in the format's dtype, so that nothing is cast on the way.
    out.model = load_model_from_tensors(preset.config, synthetic_weights(config, *load.dtype, m.seed), load);
  }
  out.seconds = seconds_since(t0);
  return out;
}

// Greedy tokens of a batch's logits [batch, vocab], on the host (the step
// waits for them, as generation does).
std::vector<int32_t> greedy_tokens(const Tensor& logits) {
  Tensor picked = Tensor::empty({logits.dim(0)}, DType::I32, logits.device());
  ops::argmax(logits, picked);
  const Tensor host = picked.to(Device::cpu());
  std::vector<int32_t> out(host.data<int32_t>(), host.data<int32_t>() + host.numel());
  for (const int32_t t : out) LOWBIT_CHECK(t >= 0, "bench: the model's logits hold NaN");
  return out;
}

// The first n ids of each sequence's stretch of `stretch` ids (sequence s
// takes ids[s stretch, s stretch + n)), one sequence after another.
std::vector<int32_t> batch_tokens(const std::vector<int32_t>& ids, int64_t batch, int64_t stretch, int64_t n) {
  std::vector<int32_t> out;
  for (int64_t s = 0; s < batch; ++s) out.insert(out.end(), ids.begin() + s * stretch, ids.begin() + s * stretch + n);
  return out;
}

// A batch's caches (made together) and the handles forward_batch takes.
std::vector<models::KVCache*> make_caches(const models::CausalLM& model, int64_t batch, int64_t capacity,
                                          std::vector<models::KVCache>& caches) {
  caches = model.make_caches(batch, capacity);
  std::vector<models::KVCache*> handles;
  for (auto& c : caches) handles.push_back(&c);
  return handles;
}

// Batches of several sequences: the prompts in one forward_batch, then
// `decode` greedy steps of one token a sequence, each one forward_batch of
// `batch` rows. Tokens per second count every sequence's tokens.
void measure_batched_decode(const models::CausalLM& model, const BenchOptions& o, int64_t batch,
                            const std::vector<int32_t>& ids, int64_t stretch, BenchRow& row) {
  const std::vector<int32_t> prompt = batch_tokens(ids, batch, stretch, o.prompt);
  std::vector<double> prompt_seconds;
  uint64_t used = 0;
  reset_device_memory_peak();
  const double decode_seconds = measure(o, [&] {
    std::vector<models::KVCache> caches;
    const auto handles = make_caches(model, batch, o.prompt + o.decode + 1, caches);
    const auto t0 = Clock::now();
    std::vector<int32_t> next = greedy_tokens(model.forward_batch(prompt, handles, false));
    prompt_seconds.push_back(seconds_since(t0));
    const auto t1 = Clock::now();
    for (int64_t step = 0; step < o.decode; ++step) next = greedy_tokens(model.forward_batch(next, handles, false));
    const double seconds = seconds_since(t1);
    used = std::max(used, detail::device_memory_used(o.device));
    return seconds;
  });
  if (prompt_seconds.size() > 1) prompt_seconds.erase(prompt_seconds.begin());
  row.prefill_tokens_per_second = double(batch * o.prompt) / median(prompt_seconds);
  row.decode_tokens_per_second = double(batch * o.decode) / decode_seconds;
  row.device_memory_used_bytes = used;
  row.peak_memory_bytes = o.device.is_cuda() ? device_memory_stats().peak
                                             : row.weight_bytes + batch * cache_bytes(model, o.prompt + o.decode + 1);
}

// Prefill at each --prefill length: `batch` sequences of that many tokens in
// one forward pass into fresh caches.
void measure_prefill(const models::CausalLM& model, const BenchOptions& o, int64_t batch,
                     const std::vector<int32_t>& ids, int64_t stretch, BenchRow& row) {
  for (const int64_t n : o.prefill) {
    reset_device_memory_peak();
    const std::vector<int32_t> tokens = batch_tokens(ids, batch, stretch, n);
    const double seconds = measure(o, [&] {
      std::vector<models::KVCache> caches;
      const auto handles = make_caches(model, batch, n, caches);
      const auto t0 = Clock::now();
      const Tensor logits = model.forward_batch(tokens, handles, false);
      logits.to(Device::cpu());  // waits for the device
      return seconds_since(t0);
    });
    row.prefill.push_back({n, double(batch * n) / seconds,
                           o.device.is_cuda() ? device_memory_stats().peak
                                              : row.weight_bytes + batch * cache_bytes(model, n)});
  }
}

// One sequence: the prompt, then `decode` single-token steps through the KV
// cache, as `lowbit generate` runs them (greedy, no stop token).
void measure_generate_decode(const models::CausalLM& model, const BenchOptions& o, const std::vector<int32_t>& ids,
                             BenchRow& row) {
  GenerationOptions g;
  g.max_new_tokens = o.decode + 1;
  g.context = o.prompt + o.decode + 1;
  const std::span<const int32_t> prompt(ids.data(), size_t(o.prompt));
  std::vector<double> prompt_seconds;
  uint64_t used = 0;
  reset_device_memory_peak();
  const double decode_seconds = measure(o, [&] {
    int64_t emitted = 0;
    const GenerationResult r = generate(model, prompt, g, [&](int32_t) {
      // After the last step, while the cache is alive: one query, outside
      // the steps' own timing except for this final token.
      if (++emitted == o.decode + 1) used = std::max(used, detail::device_memory_used(o.device));
      return true;
    });
    LOWBIT_CHECK(int64_t(r.tokens.size()) == o.decode + 1, "bench: generation stopped early ({})", r.stop_reason);
    prompt_seconds.push_back(r.prompt_seconds);
    return r.decode_seconds;
  });
  // The prompt pass of the same runs (warm-up excluded when there are repeats).
  if (prompt_seconds.size() > 1) prompt_seconds.erase(prompt_seconds.begin());
  row.prefill_tokens_per_second = double(o.prompt) / median(prompt_seconds);
  row.decode_tokens_per_second = double(o.decode) / decode_seconds;
  row.device_memory_used_bytes = used;
  row.peak_memory_bytes =
      o.device.is_cuda() ? device_memory_stats().peak : row.weight_bytes + cache_bytes(model, g.context);
}

BenchRow measure_format(const models::CausalLM& model, const BenchOptions& o, int64_t batch,
                        const std::vector<int32_t>& ids, int64_t stretch) {
  BenchRow row;
  row.device = o.device.str();
  row.batch = batch;
  row.prompt = o.prompt;
  row.decode = o.decode;
  row.weight_bytes = model.weight_bytes();
  if (batch > 1) measure_batched_decode(model, o, batch, ids, stretch, row);
  else measure_generate_decode(model, o, ids, row);
  measure_prefill(model, o, batch, ids, stretch, row);
  row.host_peak_rss_bytes = detail::host_peak_rss();
  return row;
}

std::string count_str(int64_t n) {
  return n >= 1000000000 ? fmt::format("{:.2f}B", double(n) / 1e9) : fmt::format("{:.2f}M", double(n) / 1e6);
}

}  // namespace

BenchFormat bench_format(std::string_view name) {
  using Kind = QuantizeOnLoad::Kind;
  BenchFormat f;
  f.name = std::string(name);
  if (name == "bf16") f.load.dtype = DType::BF16;
  else if (name == "f16") f.load.dtype = DType::F16;
  else if (name == "f32") f.load.dtype = DType::F32;
  else if (name == "int8") {
    // bitsandbytes' LLM.int8 computes in f16.
    f.load.dtype = DType::F16;
    QuantizeOnLoad q;
    q.kind = Kind::Int8;
    q.int8_threshold = 6.0f;
    f.load.quantize = q;
  } else if (name == "nf4" || name == "fp4" || name == "nf4-dq" || name == "fp4-dq") {
    // -dq: double quantization of the absmax (QLoRA's setting).
    f.load.dtype = DType::BF16;
    QuantizeOnLoad q;
    q.kind = name.starts_with("nf4") ? Kind::NF4 : Kind::FP4;
    q.blocksize = 64;
    q.compute_dtype = DType::BF16;
    q.double_quant = name.ends_with("-dq");
    f.load.quantize = q;
  } else {
    fail("unknown format '{}'; the formats are {}", name, bench_format_names());
  }
  return f;
}

std::string bench_format_names() { return "bf16, f16, f32, int8, nf4, fp4, nf4-dq, fp4-dq"; }

BenchReport run_bench(const BenchModel& model, const BenchOptions& o,
                      const std::function<void(const std::string&)>& log) {
  check_options(o);
  const auto say = [&](const std::string& line) {
    if (log) log(line);
  };
  BenchReport report;
  report.threads = num_threads();
  nlohmann::json config_json;
  if (model.shape.empty()) {
    report.model = model.dir.string();
    const auto config_path = model.dir / "config.json";
    if (!std::filesystem::exists(config_path))
      throw Error(fmt::format("{} is not a model directory: config.json is missing", model.dir.string()))
          .with_file(config_path.string());
    config_json = io::read_json(config_path);
  } else {
    const ShapePreset& preset = find_shape_preset(model.shape);
    report.model = fmt::format("{} (random weights, {})", preset.name, preset.source);
    config_json = preset.config;
  }
  const models::ModelConfig config = models::find_architecture(config_json).parse_config(config_json);
  report.parameters = parameter_count(config);
  BenchOptions options = o;
  if (o.drop_long_prefill) {
    std::erase_if(options.prefill, [&](int64_t n) { return n > config.max_position_embeddings; });
    if (options.prefill.size() < o.prefill.size())
      say(fmt::format("prefill lengths beyond the context of {} tokens left out", config.max_position_embeddings));
  }
  const int64_t longest =
      std::max(o.prompt + o.decode + 1,
               options.prefill.empty() ? 0 : *std::max_element(options.prefill.begin(), options.prefill.end()));
  LOWBIT_CHECK(longest <= config.max_position_embeddings,
               "{} tokens (prompt + decode + 1, or the longest prefill) exceed the model's max_position_embeddings "
               "({})",
               longest, config.max_position_embeddings);
  // One stretch of `longest` ids a sequence (the first stretch is what one
  // sequence always measured).
  const int64_t most = *std::max_element(o.batches.begin(), o.batches.end());
  const std::vector<int32_t> ids = token_ids(longest * most, config.vocab_size, model.seed);

  for (const auto& name : o.formats) {
    const BenchFormat format = bench_format(name);
    say(fmt::format("{}: loading", name));
    LoadedModel loaded = load(model, format, options);
    say(fmt::format("{}: loaded in {:.1f} s ({}), measuring", name, loaded.seconds,
                    bytes_text(loaded.model->weight_bytes())));
    for (const int64_t batch : options.batches) {
      if (options.batches.size() > 1) say(fmt::format("{}: batch {}", name, batch));
      BenchRow row = measure_format(*loaded.model, options, batch, ids, longest);
      row.format = name;
      row.load_seconds = loaded.seconds;
      report.rows.push_back(std::move(row));
    }
  }
  return report;
}

nlohmann::json to_json(const BenchRow& r) {
  nlohmann::json prefill = nlohmann::json::array();
  for (const auto& p : r.prefill)
    prefill.push_back({{"tokens", p.tokens},
                       {"tokens_per_second", p.tokens_per_second},
                       {"peak_memory_bytes", p.peak_memory_bytes}});
  return {{"format", r.format},
          {"device", r.device},
          {"batch", r.batch},
          {"prompt", r.prompt},
          {"decode", r.decode},
          {"prefill_tokens_per_second", r.prefill_tokens_per_second},
          {"decode_tokens_per_second", r.decode_tokens_per_second},
          {"peak_memory_bytes", r.peak_memory_bytes},
          {"weight_bytes", r.weight_bytes},
          {"device_memory_used_bytes", r.device_memory_used_bytes},
          {"host_peak_rss_bytes", r.host_peak_rss_bytes},
          {"load_seconds", r.load_seconds},
          {"prefill", prefill}};
}

std::string format_table(const BenchReport& report) {
  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> head = {"format", "batch", "prompt", "decode", "prefill tok/s", "decode tok/s",
                                   "peak memory", "weights"};
  if (!report.rows.empty())
    for (const auto& p : report.rows.front().prefill) head.push_back(fmt::format("prefill {} tok/s", p.tokens));
  cells.push_back(head);
  // Speeds of the other formats also as a ratio to bf16 of the same run and batch.
  for (const auto& r : report.rows) {
    const auto bf16 = std::find_if(report.rows.begin(), report.rows.end(),
                                   [&](const BenchRow& b) { return b.format == "bf16" && b.batch == r.batch; });
    const BenchRow* base = bf16 != report.rows.end() && &r != &*bf16 ? &*bf16 : nullptr;
    auto speed = [](double v, double of_base) {
      return of_base > 0 ? fmt::format("{:.1f} ({:.2f}x)", v, v / of_base) : fmt::format("{:.1f}", v);
    };
    std::vector<std::string> line = {r.format,
                                     std::to_string(r.batch),
                                     std::to_string(r.prompt),
                                     std::to_string(r.decode),
                                     speed(r.prefill_tokens_per_second, base ? base->prefill_tokens_per_second : 0),
                                     speed(r.decode_tokens_per_second, base ? base->decode_tokens_per_second : 0),
                                     bytes_text(r.peak_memory_bytes),
                                     bytes_text(r.weight_bytes)};
    for (size_t i = 0; i < r.prefill.size(); ++i)
      line.push_back(speed(r.prefill[i].tokens_per_second,
                           base && i < base->prefill.size() ? base->prefill[i].tokens_per_second : 0));
    cells.push_back(line);
  }
  std::vector<size_t> width(head.size(), 0);
  for (const auto& line : cells)
    for (size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
  const std::string device = report.rows.empty() ? "" : report.rows.front().device;
  std::string out = fmt::format("{}: {} parameters, {}, {} CPU threads\n", report.model,
                                count_str(report.parameters), device, report.threads);
  for (const auto& line : cells) {
    for (size_t i = 0; i < line.size(); ++i) {
      // The format name left-aligned, numbers right-aligned.
      out += i == 0 ? fmt::format("{:<{}}", line[i], width[i]) : fmt::format("  {:>{}}", line[i], width[i]);
    }
    out += "\n";
  }
  return out;
}

}  // namespace lowbit::engine
