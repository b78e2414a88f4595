// lowbit generate MODEL --prompt TEXT [sampling options] [loading options]
// Tokens stream to stdout as they are generated; statistics go to stderr.
#include <algorithm>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/model_options.h"
#include "cli/tokenizer_support.h"
#include "lowbit/engine/generate.h"

namespace lowbit::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::string prompt;
  int64_t max_new_tokens = 128;
  int64_t context = 0;
  SamplingArgs sampling;
  bool no_bos = false;
  bool quiet = false;
  bool verbose = false;
  ModelOptions loading;
};

// eos ids of config.json and generation_config.json.
std::vector<int32_t> stop_tokens(const models::CausalLM& model, const std::string& dir) {
  std::vector<int32_t> stops;
  for (int64_t id : model.config().eos_token_ids) stops.push_back(int32_t(id));
  std::ifstream in(dir + "/generation_config.json");
  if (in) {
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_object() && j.contains("eos_token_id")) {
      const auto& e = j["eos_token_id"];
      if (e.is_number_integer()) stops.push_back(e.get<int32_t>());
      if (e.is_array())
        for (const auto& v : e)
          if (v.is_number_integer()) stops.push_back(v.get<int32_t>());
    }
  }
  return stops;
}

int run_generate(const GenerateArgs& a) {
  const auto model = engine::load_model(a.model, a.loading.load_options());
  if (a.verbose)
    std::fprintf(stderr, "%s\n  weights: %.1f MiB\n", model->describe().c_str(),
                 double(model->weight_bytes()) / (1 << 20));
  TextStream text(a.model);
  const std::vector<int32_t> prompt = text.encode(a.prompt, !a.no_bos);
  engine::GenerationOptions options;
  options.max_new_tokens = a.max_new_tokens;
  options.context = a.context;
  options.stop_tokens = stop_tokens(*model, a.model);
  for (int32_t id : text.eos_ids())
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), id) == options.stop_tokens.end())
      options.stop_tokens.push_back(id);
  options.sampling = sampling_config(a.sampling);
  std::fputs(a.prompt.c_str(), stdout);
  std::fflush(stdout);
  const auto result = engine::generate(*model, prompt, options, [&](int32_t id) {
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), id) == options.stop_tokens.end()) {
      std::fputs(text.push(id).c_str(), stdout);
      std::fflush(stdout);
    }
    return true;
  });
  std::fputs(text.finish().c_str(), stdout);
  std::fputs("\n", stdout);
  if (!a.quiet)
    std::fprintf(stderr, "[%zu prompt tokens in %.3f s; %zu new tokens, %.1f tokens/s; stop: %s]\n", prompt.size(),
                 result.prompt_seconds, result.tokens.size(), result.tokens_per_second(), result.stop_reason.c_str());
  return 0;
}

const CommandRegistration registration{{
    "generate",
    "generate text from a prompt, streaming tokens as they come",
    [](CLI::App& app) -> std::function<int()> {
      auto a = std::make_shared<GenerateArgs>();
      app.add_option("model", a->model, "model directory (config.json, safetensors, tokenizer)")->required();
      app.add_option("--prompt", a->prompt, "prompt text")->required();
      app.add_option("--max-new-tokens", a->max_new_tokens, "generate at most this many tokens")
          ->check(non_negative());
      app.add_option("--context", a->context, "context (KV cache) length; default max_position_embeddings");
      app.add_flag("--no-bos", a->no_bos, "do not add the tokenizer's special tokens to the prompt");
      app.add_flag("--quiet", a->quiet, "no statistics on stderr");
      app.add_flag("--verbose", a->verbose, "describe the loaded model (layer formats, weight size) on stderr");
      add_sampling_options(app, a->sampling);
      a->loading.add_to(app);
      return [a] { return run_generate(*a); };
    }}};

}  // namespace
}  // namespace lowbit::cli
