// Streaming quantization of a synthetic checkpoint larger than 2 GB.
//
// Writes a Llama-shaped bf16 checkpoint (hidden 4096, MLP 11008, vocab 32000,
// 5 layers: 2.55 GB) to $LOWBIT_BENCH_DIR (default /tmp), then quantizes it
// to NF4 with double quantization in a child process and reports the wall
// time, the child's peak RSS (getrusage ru_maxrss) and that peak as a share
// of the checkpoint size. The claim: peak memory follows the largest tensor
// (the 262 MB embedding), not the model. The input was just written, so it
// is read from the page cache; the time is CPU-bound quantization plus
// writing 0.9 GB.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <benchmark/benchmark.h>

#include "lowbit/core/half.h"
#include "lowbit/core/thread_pool.h"
#include "lowbit/io/convert.h"
#include "lowbit/io/safetensors.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kHidden = 4096, kMlp = 11008, kVocab = 32000, kLayers = 5, kKv = 1024;

fs::path bench_dir() {
  const char* env = std::getenv("LOWBIT_BENCH_DIR");
  return fs::path(env ? env : "/tmp") / fmt::format("lowbit-stream-bench-{}", ::getpid());
}

// bf16 values of roughly N(0, 0.02), from a counter-based hash (fast, any order).
void fill(Tensor& t, uint64_t seed) {
  auto* p = t.data<bf16>();
  parallel_for(0, t.numel(), 1 << 20, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      uint64_t x = (uint64_t(i) + seed * 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
      x ^= x >> 31;
      x *= 0x94d049bb133111ebull;
      x ^= x >> 29;
      // Sum of four uniforms: close enough to a normal for quantization.
      float s = 0;
      for (int k = 0; k < 4; ++k) s += float((x >> (16 * k)) & 0xffff) / 65535.0f - 0.5f;
      p[i] = from_f32<bf16>(s * 0.035f);
    }
  });
}

uint64_t write_checkpoint(const fs::path& dir) {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 5, "num_attention_heads": 32,
  "num_key_value_heads": 8, "vocab_size": 32000, "rms_norm_eps": 1e-05, "dtype": "bfloat16",
  "tie_word_embeddings": false, "max_position_embeddings": 4096})";
  std::vector<std::pair<std::string, Shape>> tensors = {{"model.embed_tokens.weight", {kVocab, kHidden}},
                                                        {"lm_head.weight", {kVocab, kHidden}},
                                                        {"model.norm.weight", {kHidden}}};
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    tensors.push_back({p + "input_layernorm.weight", {kHidden}});
    tensors.push_back({p + "post_attention_layernorm.weight", {kHidden}});
    tensors.push_back({p + "self_attn.q_proj.weight", {kHidden, kHidden}});
    tensors.push_back({p + "self_attn.k_proj.weight", {kKv, kHidden}});
    tensors.push_back({p + "self_attn.v_proj.weight", {kKv, kHidden}});
    tensors.push_back({p + "self_attn.o_proj.weight", {kHidden, kHidden}});
    tensors.push_back({p + "mlp.gate_proj.weight", {kMlp, kHidden}});
    tensors.push_back({p + "mlp.up_proj.weight", {kMlp, kHidden}});
    tensors.push_back({p + "mlp.down_proj.weight", {kHidden, kMlp}});
  }
  io::SafetensorsWriter writer(dir / "model.safetensors", {{"format", "pt"}});
  for (const auto& [name, shape] : tensors) writer.declare(name, DType::BF16, shape);
  uint64_t seed = 1;
  for (const auto& [name, shape] : tensors) {
    Tensor t = Tensor::empty(shape, DType::BF16);
    fill(t, seed++);
    writer.write(name, t);
  }
  writer.commit();
  return fs::file_size(dir / "model.safetensors");
}

void BM_QuantizeNf4Streaming(benchmark::State& state) {
  const fs::path dir = bench_dir();
  const uint64_t size = write_checkpoint(dir / "in");
  for (auto _ : state) {
    fs::remove_all(dir / "out");
    const auto start = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 0;
      try {
        io::QuantizationConfig c;
        c.load_in_4bit = true;
        c.bnb_4bit_quant_type = "nf4";
        c.bnb_4bit_use_double_quant = true;
        c.bnb_4bit_compute_dtype = DType::BF16;
        io::quantize_checkpoint(dir / "in", dir / "out", c);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        code = 1;
      }
      ::_exit(code);
    }
    int status = 0;
    struct rusage usage {};
    ::wait4(pid, &status, 0, &usage);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) state.SkipWithError("quantize failed");
    state.SetIterationTime(seconds);
    const double peak = double(usage.ru_maxrss) * 1024.0;
    state.counters["checkpoint_GB"] = double(size) / 1e9;
    state.counters["peak_rss_MB"] = peak / 1e6;
    state.counters["peak_rss_share"] = peak / double(size);
    state.counters["input_GB_per_s"] = double(size) / 1e9 / seconds;
    std::printf("quantize nf4 (double quant) of %.2f GB: %.2f s, peak RSS %.0f MB = %.1f%% of the checkpoint\n",
                double(size) / 1e9, seconds, peak / 1e6, 100.0 * peak / double(size));
  }
  fs::remove_all(dir);
}
BENCHMARK(BM_QuantizeNf4Streaming)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

}  // namespace
}  // namespace lowbit

BENCHMARK_MAIN();
