// lowbit bench MODEL|--shape NAME [--device D] [--formats bf16,int8,nf4] [--batch 1,8] [--prompt 32]
//              [--decode 128] [--prefill 512,2048|none] [--repeats 3] [--seed S] [--threads N] [--json]
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "lowbit/core/error.h"
#include "lowbit/core/thread_pool.h"
#include "lowbit/engine/bench.h"
#include "lowbit/engine/synthetic_weights.h"

namespace lowbit::cli {
namespace {

struct BenchArgs {
  std::string model;
  std::string shape;
  std::string device = "cpu";
  std::vector<std::string> formats = {"bf16", "int8", "nf4"};
  std::vector<int64_t> batches = {1};
  int64_t prompt = 32;
  int64_t decode = 128;
  std::vector<std::string> prefill = {"512", "2048"};
  int repeats = 3;
  uint64_t seed = 0;
  int threads = 0;
  bool json = false;
  bool prefill_given = false;
};

// Each value checked here so that the Error names its option before anything loads.
engine::BenchOptions options_from(const BenchArgs& a) {
  if (a.model.empty() == a.shape.empty())
    throw Error(a.model.empty() ? "give a model directory or --shape NAME (" + engine::shape_preset_names() + ")"
                                : "give a model directory or --shape, not both")
        .with_option("--shape");
  if (!a.shape.empty()) {
    try {
      engine::find_shape_preset(a.shape);
    } catch (const Error& e) {
      throw e.with_option("--shape");
    }
  }
  engine::BenchOptions o;
  try {
    o.device = Device::parse(a.device);
  } catch (const Error&) {
    throw Error(fmt::format("--device {}: expected cpu, cuda or cuda:N", a.device)).with_option("--device");
  }
  for (const auto& f : a.formats) {
    try {
      engine::bench_format(f);
    } catch (const Error& e) {
      throw e.with_option("--formats");
    }
  }
  for (const int64_t b : a.batches)
    if (b < 1 || b > 1024)
      throw Error(fmt::format("--batch {}: a batch holds 1 to 1024 sequences", b)).with_option("--batch");
  o.prefill.clear();
  for (const auto& text : a.prefill) {
    if (text.empty() || text == "none") continue;
    size_t used = 0;
    int64_t n = 0;
    try {
      n = std::stoll(text, &used);
    } catch (const std::exception&) {
    }
    if (used != text.size() || n <= 0)
      throw Error(fmt::format("--prefill {}: expected positive token counts such as 512,2048, or none", text))
          .with_option("--prefill");
    o.prefill.push_back(n);
  }
  o.formats = a.formats;
  o.batches = a.batches;
  o.prompt = a.prompt;
  o.decode = a.decode;
  o.repeats = a.repeats;
  o.drop_long_prefill = !a.prefill_given;
  return o;
}

int run_bench(const BenchArgs& a) {
  const engine::BenchOptions options = options_from(a);
  if (a.threads > 0) set_num_threads(a.threads);
  const engine::BenchModel model{.dir = a.model, .shape = a.shape, .seed = a.seed};
  const auto log = [&](const std::string& line) {
    if (!a.json) std::fprintf(stderr, "%s\n", line.c_str());
  };
  const engine::BenchReport report = engine::run_bench(model, options, log);
  if (a.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : report.rows) {
      nlohmann::json j = engine::to_json(r);
      j["model"] = report.model;
      j["parameters"] = report.parameters;
      j["threads"] = report.threads;
      rows.push_back(std::move(j));
    }
    std::printf("%s\n", rows.dump(2).c_str());
  } else {
    std::printf("%s", engine::format_table(report).c_str());
  }
  return 0;
}

const CommandRegistration registration{{
    "bench",
    "prefill and decode speed, memory and weight bytes of a model (or a model shape with random weights) per format",
    [](CLI::App& app) -> std::function<int()> {
      auto a = std::make_shared<BenchArgs>();
      app.add_option("model", a->model, "model directory (config.json + safetensors)");
      app.add_option("--shape", a->shape,
                     "a model's shape with random weights instead: " + engine::shape_preset_names());
      app.add_option("--device", a->device, "cpu, cuda or cuda:N")->default_str("cpu");
      app.add_option("--formats", a->formats, "comma-separated: " + engine::bench_format_names())
          ->delimiter(',')
          ->default_str("bf16,int8,nf4");
      app.add_option("--batch", a->batches,
                     "comma-separated batch sizes, a row each: sequences decoded together (one forward pass a "
                     "step for all of them)")
          ->delimiter(',')
          ->default_str("1");
      app.add_option("--prompt", a->prompt, "prompt tokens before decoding")
          ->check(positive())
          ->default_str("32");
      app.add_option("--decode", a->decode, "single-token decode steps timed after the prompt")
          ->check(positive())
          ->default_str("128");
      app.add_option("--prefill", a->prefill, "comma-separated prompt lengths whose prefill speed is reported, or none")
          ->delimiter(',')
          ->default_str("512,2048");
      app.add_option("--repeats", a->repeats, "runs after the warm-up, median reported (when a run takes < 5 s)")
          ->check(non_negative())
          ->default_str("3");
      app.add_option("--seed", a->seed, "seed of the random weights and token ids")->default_str("0");
      app.add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(non_negative());
      app.add_flag("--json", a->json, "print the rows as a JSON array of objects");
      CLI::Option* prefill = app.get_option("--prefill");
      return [a, prefill] {
        a->prefill_given = prefill->count() > 0;
        return run_bench(*a);
      };
    }}};

}  // namespace
}  // namespace lowbit::cli
