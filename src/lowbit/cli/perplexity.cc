// lowbit perplexity MODEL --text FILE [--ctx N] [--stride N] [loading options] [--json]
#include <cstdio>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/model_options.h"
#include "cli/tokenizer_support.h"
#include "lowbit/engine/perplexity.h"

namespace lowbit::cli {
namespace {

struct PerplexityArgs {
  std::string model;
  std::string text;
  int64_t ctx = 256;
  int64_t stride = 128;
  bool json = false;
  ModelOptions loading;
};

int run_perplexity(const PerplexityArgs& a) {
  const std::string text = read_utf8_file(a.text);
  const auto model = engine::load_model(a.model, a.loading.load_options());
  const std::vector<int32_t> ids = encode_text(a.model, text, /*add_special_tokens=*/false);
  engine::PerplexityOptions options{.ctx = a.ctx, .stride = a.stride, .progress = {}};
  if (!a.json && isatty(STDERR_FILENO))
    options.progress = [](int64_t done, int64_t total) {
      std::fprintf(stderr, "\rwindow %lld/%lld", (long long)done, (long long)total);
      if (done == total) std::fprintf(stderr, "\n");
    };
  const auto r = engine::perplexity(*model, ids, options);
  if (a.json) {
    const nlohmann::json out = {{"perplexity", r.perplexity},
                                {"tokens", r.scored_tokens},
                                {"tokens_per_second", r.tokens_per_second},
                                {"windows", r.windows},
                                {"seconds", r.seconds}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("perplexity %.6f over %lld tokens (%lld windows, ctx %lld, stride %lld)\n", r.perplexity,
                (long long)r.scored_tokens, (long long)r.windows, (long long)a.ctx, (long long)a.stride);
    std::printf("%.2f s, %.0f tokens/s\n", r.seconds, r.tokens_per_second);
  }
  return 0;
}

const CommandRegistration registration{{
    "perplexity",
    "perplexity of a model on a UTF-8 text file (overlapping windows)",
    [](CLI::App& app) -> std::function<int()> {
      auto a = std::make_shared<PerplexityArgs>();
      app.add_option("model", a->model, "model directory (config.json, safetensors, tokenizer)")->required();
      app.add_option("--text", a->text, "UTF-8 text file")->required()->check(CLI::ExistingFile);
      app.add_option("--ctx", a->ctx, "window length in tokens")->check(positive());
      app.add_option("--stride", a->stride, "tokens between window starts")->check(positive());
      app.add_flag("--json", a->json, "print {perplexity, tokens, tokens_per_second} as JSON");
      a->loading.add_to(app);
      return [a] { return run_perplexity(*a); };
    }}};

}  // namespace
}  // namespace lowbit::cli
