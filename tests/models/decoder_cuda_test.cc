// Whole-model forward passes on the GPU against the CPU path and against the
// logits transformers computed (shared/golden, shared/models).
//
// Tolerances. f32: the GPU sums in another order (cuBLAS, tiled attention,
// block reductions), ~1e-6 relative per op; through a few layers that stays
// below 1e-4 on logits of size ~1 (the CPU golden bound against transformers).
// 16-bit and quantized: every op rounds to bf16/f16, so a sum in another
// order flips an activation by one 16-bit ulp now and then (bf16: 0.4%), and
// that moves the logits by up to a few 1e-2; the bound against the CPU is
// taken from what the formats themselves move (transformers' own quantized
// logits differ from fp32 by 0.03 (int8) to 0.47 (fp4)), and against
// transformers the CPU golden test's bounds apply unchanged.
#include <cmath>
#include <cstdlib>

#include "lowbit/engine/model_loader.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

using testing::golden_dir;
using testing::models_dir;

struct Diff {
  double max_abs = 0.0, mean_abs = 0.0, argmax_agreement = 0.0;
};

Diff compare(const std::vector<float>& got, const std::vector<float>& want, int64_t vocab) {
  Diff d;
  const int64_t rows = int64_t(want.size()) / vocab;
  int64_t agree = 0;
  double sum = 0.0;
  for (int64_t t = 0; t < rows; ++t) {
    int64_t am_got = 0, am_want = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      const size_t i = size_t(t * vocab + v);
      const double e = std::fabs(double(got[i]) - want[i]);
      d.max_abs = std::max(d.max_abs, e);
      sum += e;
      if (got[i] > got[size_t(t * vocab + am_got)]) am_got = v;
      if (want[i] > want[size_t(t * vocab + am_want)]) am_want = v;
    }
    agree += am_got == am_want;
  }
  d.mean_abs = sum / double(want.size());
  d.argmax_agreement = double(agree) / double(rows);
  return d;
}

// Logits of every row of input_ids [batch, seq] from a fresh cache: the
// prompt in one pass, then (decode = true) the same tokens one at a time,
// which runs the decoding kernels.
std::vector<float> run(const models::CausalLM& model, const Tensor& input_ids, bool decode) {
  const int64_t batch = input_ids.dim(0), seq = input_ids.dim(1);
  std::vector<float> all;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int32_t> ids(static_cast<size_t>(seq));
    for (int64_t t = 0; t < seq; ++t) ids[size_t(t)] = int32_t(input_ids.data<int64_t>()[b * seq + t]);
    auto cache = model.make_cache(seq);
    if (!decode) {
      const auto got = testing::to_floats(model.forward(ids, cache, true));
      all.insert(all.end(), got.begin(), got.end());
      continue;
    }
    for (int64_t t = 0; t < seq; ++t) {
      const auto got = testing::to_floats(model.forward(std::span(ids).subspan(size_t(t), 1), cache, false));
      all.insert(all.end(), got.begin(), got.end());
    }
  }
  return all;
}

struct Case {
  std::string name;
  std::filesystem::path dir;
  std::optional<DType> dtype;
  std::filesystem::path reference;  // logits file
  std::string key;                  // its logits tensor
  double ref_max, ref_mean, ref_argmax;  // bounds against transformers (the CPU test's)
  double cpu_max, cpu_mean;              // bounds against the CPU path
};

class DecoderCuda : public ::testing::TestWithParam<Case> {};

TEST_P(DecoderCuda, MatchesCpuAndTransformers) {
  LOWBIT_REQUIRE_CUDA();
  const Case& c = GetParam();
  const auto cpu = engine::load_model(c.dir, {.dtype = c.dtype});
  const auto gpu = engine::load_model(c.dir, {.dtype = c.dtype, .device = Device::cuda(0)});
  EXPECT_EQ(gpu->device(), Device::cuda(0));
  // A double-quantized checkpoint keeps its u8 absmax codes on the GPU (the
  // CPU decodes them to f32 on load).
  if (c.name.find("_dq_") != std::string::npos) EXPECT_LT(gpu->weight_bytes(), cpu->weight_bytes());
  else EXPECT_EQ(gpu->weight_bytes(), cpu->weight_bytes());
  const auto ref = io::SafetensorsReader::open(c.reference);
  const Tensor ids = ref.tensor("input_ids");
  const Tensor expected = ref.tensor(c.key);
  const int64_t vocab = expected.dim(-1);
  const auto want = testing::to_floats(expected);
  const auto on_cpu = run(*cpu, ids, false);
  for (bool decode : {false, true}) {
    const auto got = run(*gpu, ids, decode);
    const Diff vs_cpu = compare(got, on_cpu, vocab), vs_ref = compare(got, want, vocab);
    std::printf("%s %s: vs cpu max %.3g mean %.3g argmax %.3f | vs transformers max %.3g mean %.3g argmax %.3f\n",
                c.name.c_str(), decode ? "decode" : "prompt", vs_cpu.max_abs, vs_cpu.mean_abs, vs_cpu.argmax_agreement,
                vs_ref.max_abs, vs_ref.mean_abs, vs_ref.argmax_agreement);
    EXPECT_LE(vs_cpu.max_abs, c.cpu_max) << (decode ? "decode" : "prompt");
    EXPECT_LE(vs_cpu.mean_abs, c.cpu_mean) << (decode ? "decode" : "prompt");
    EXPECT_LE(vs_ref.max_abs, c.ref_max) << (decode ? "decode" : "prompt");
    EXPECT_LE(vs_ref.mean_abs, c.ref_mean) << (decode ? "decode" : "prompt");
    EXPECT_GE(vs_ref.argmax_agreement, c.ref_argmax) << (decode ? "decode" : "prompt");
  }
}

std::vector<Case> cases() {
  const auto dev = golden_dir() / "dev-llama", arch = golden_dir() / "dev-arch";
  const auto dev_logits = dev / "logits.safetensors", arch_logits = arch / "logits.safetensors";
  const auto shakespeare = models_dir() / "shakespeare-llama", sh_logits = models_dir() / "shakespeare-llama-logits.safetensors";
  return {
      {"dev_llama_fp32", dev / "fp32", {}, dev_logits, "logits.fp32", 1e-4, 1e-5, 1.0, 1e-4, 1e-5},
      {"dev_llama_int8", dev / "int8", {}, dev_logits, "logits.int8", 0.03, 0.005, 0.95, 0.03, 0.005},
      {"dev_llama_nf4_dq_bf16", dev / "nf4-dq-bf16", {}, dev_logits, "logits.nf4-dq-bf16", 0.02, 0.003, 0.95, 0.03, 0.004},
      {"dev_llama_fp4_f16", dev / "fp4-f16", {}, dev_logits, "logits.fp4-f16", 0.004, 0.0005, 0.97, 0.004, 0.0005},
      {"qwen2", arch / "qwen2", {}, arch_logits, "logits.qwen2", 1e-4, 1e-5, 1.0, 1e-4, 1e-5},
      {"mistral", arch / "mistral", {}, arch_logits, "logits.mistral", 1e-4, 1e-5, 1.0, 1e-4, 1e-5},
      {"llama3_rope", arch / "llama3-rope", {}, arch_logits, "logits.llama3-rope", 1e-4, 1e-5, 1.0, 1e-4, 1e-5},
      {"shakespeare_f32", shakespeare, DType::F32, sh_logits, "logits.fp32", 1e-3, 1e-4, 1.0, 1e-4, 1e-5},
      // bf16 against transformers' fp32 logits: bf16 itself moves them (the CPU
      // path's bf16 logits differ from fp32 by the same order).
      {"shakespeare_bf16", shakespeare, DType::BF16, sh_logits, "logits.fp32", 0.25, 0.03, 0.9, 0.1, 0.01},
  };
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, DecoderCuda, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

// Decoding steps on the GPU are captured into a CUDA graph (from the second
// step of a cache) and replayed; LOWBIT_CUDA_GRAPHS=0 launches the same
// kernels one by one. Both give the same logits bit for bit, for a fresh
// cache (a new capture) too, and for dense, int8 and 4-bit layers.
TEST(DecoderCuda, GraphReplayEqualsEagerSteps) {
  LOWBIT_REQUIRE_CUDA();
  const std::vector<int32_t> ids = {1, 17, 33, 2, 90, 5, 64, 12, 7, 41, 3, 99};
  for (const char* variant : {"fp32", "int8", "nf4-dq-bf16"}) {
    const auto gpu = engine::load_model(golden_dir() / "dev-llama" / variant, {.device = Device::cuda(0)});
    const auto steps = [&](bool graphs) {
      if (graphs) unsetenv("LOWBIT_CUDA_GRAPHS");
      else setenv("LOWBIT_CUDA_GRAPHS", "0", 1);
      auto cache = gpu->make_cache(int64_t(ids.size()) + 3);
      gpu->forward(std::span(ids).first(3), cache, false);
      std::vector<float> all;
      for (size_t t = 3; t < ids.size(); ++t) {
        const auto got = testing::to_floats(gpu->forward(std::span(ids).subspan(t, 1), cache, false));
        all.insert(all.end(), got.begin(), got.end());
      }
      EXPECT_EQ(cache.length, int64_t(ids.size()));
      return all;
    };
    const auto eager = steps(false), graph = steps(true), again = steps(true);
    unsetenv("LOWBIT_CUDA_GRAPHS");
    EXPECT_TRUE(eager == graph) << variant;
    EXPECT_TRUE(graph == again) << variant;
  }
}

// With 4-bit layers, one-token steps on the GPU run each norm, SwiGLU and
// residual add inside the projections' GEMVs; LOWBIT_FUSED_LINEARS=0 runs the
// ops in turn. Both give the same logits bit for bit (captured or eager).
TEST(DecoderCuda, FusedDecodeEqualsOpsInTurn) {
  LOWBIT_REQUIRE_CUDA();
  const std::vector<int32_t> ids = {1, 17, 33, 2, 90, 5, 64, 12, 7, 41, 3, 99};
  engine::QuantizeOnLoad nf4;
  nf4.double_quant = true;
  const auto gpu = engine::load_model(models_dir() / "shakespeare-llama",
                                      {.dtype = DType::BF16, .quantize = nf4, .device = Device::cuda(0)});
  const auto steps = [&](const char* fused, const char* graphs) {
    setenv("LOWBIT_FUSED_LINEARS", fused, 1);
    setenv("LOWBIT_CUDA_GRAPHS", graphs, 1);
    auto cache = gpu->make_cache(int64_t(ids.size()));
    gpu->forward(std::span(ids).first(3), cache, false);
    std::vector<float> all;
    for (size_t t = 3; t < ids.size(); ++t) {
      const auto got = testing::to_floats(gpu->forward(std::span(ids).subspan(t, 1), cache, false));
      all.insert(all.end(), got.begin(), got.end());
    }
    return all;
  };
  const auto in_turn = steps("0", "0"), fused_eager = steps("1", "0"), fused_graph = steps("1", "1");
  unsetenv("LOWBIT_FUSED_LINEARS");
  unsetenv("LOWBIT_CUDA_GRAPHS");
  EXPECT_TRUE(in_turn == fused_eager);
  EXPECT_TRUE(in_turn == fused_graph);
}

// The same NF4 model on two GPUs in one process, its calls interleaved: each
// runs on its own device and stream (the prompt eager, the steps as CUDA
// graphs) and gives the same logits bit for bit. Skipped with one GPU.
TEST(DecoderCuda, TwoGpusInOneProcessGiveTheSameLogits) {
  LOWBIT_REQUIRE_TWO_GPUS();
  const std::vector<int32_t> ids = {1, 17, 33, 2, 90, 5, 64, 12, 7, 41, 3, 99};
  engine::QuantizeOnLoad nf4;
  nf4.double_quant = true;
  const auto load = [&](int device) {
    return engine::load_model(models_dir() / "shakespeare-llama",
                              {.dtype = DType::BF16, .quantize = nf4, .device = Device::cuda(device)});
  };
  const auto first = load(0), second = load(1);
  auto cache0 = first->make_cache(int64_t(ids.size())), cache1 = second->make_cache(int64_t(ids.size()));
  EXPECT_TRUE(testing::to_floats(first->forward(std::span(ids).first(4), cache0, true)) ==
              testing::to_floats(second->forward(std::span(ids).first(4), cache1, true)));
  for (size_t t = 4; t < ids.size(); ++t) {
    const auto a = testing::to_floats(first->forward(std::span(ids).subspan(t, 1), cache0, false));
    const auto b = testing::to_floats(second->forward(std::span(ids).subspan(t, 1), cache1, false));
    EXPECT_TRUE(a == b) << "step " << t;
  }
}

// A prompt's SwiGLU runs in the epilogue of the 4-bit wgmma GEMM (Hopper)
// instead of a kernel of its own; LOWBIT_FUSED_LINEARS=0 runs the ops in
// turn. Both give the same logits bit for bit, with f32 and with
// double-quantized absmax, at 40 and 300 tokens.
TEST(DecoderCuda, FusedPromptEqualsOpsInTurn) {
  LOWBIT_REQUIRE_CUDA();
  for (bool double_quant : {false, true}) {
    engine::QuantizeOnLoad nf4;
    nf4.double_quant = double_quant;
    const auto gpu = engine::load_model(models_dir() / "shakespeare-llama",
                                        {.dtype = DType::BF16, .quantize = nf4, .device = Device::cuda(0)});
    for (size_t tokens : {40, 300}) {
      std::vector<int32_t> ids(tokens);
      for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 11) % 2000);
      const auto prompt = [&](const char* fused) {
        setenv("LOWBIT_FUSED_LINEARS", fused, 1);
        auto cache = gpu->make_cache(int64_t(ids.size()));
        return testing::to_floats(gpu->forward(ids, cache, true));
      };
      const auto in_turn = prompt("0"), fused = prompt("1");
      unsetenv("LOWBIT_FUSED_LINEARS");
      EXPECT_TRUE(in_turn == fused) << tokens << " tokens" << (double_quant ? ", double-quantized" : "");
    }
  }
}

// Double quantization stays on the GPU: the absmax as u8 codes with their
// nested scales (the kernels decode them), 0.13 bits a weight instead of the
// decoded f32 absmax's 0.5; the CPU load decodes them, and the logits agree
// within the bf16 bound of the checkpoint tests above.
TEST(DecoderCuda, DoubleQuantStaysOnTheGpu) {
  LOWBIT_REQUIRE_CUDA();
  engine::QuantizeOnLoad nf4, nf4_dq;
  nf4_dq.double_quant = true;
  const auto model = models_dir() / "shakespeare-llama";
  const auto dq = engine::load_model(model, {.dtype = DType::BF16, .quantize = nf4_dq, .device = Device::cuda(0)});
  const auto plain = engine::load_model(model, {.dtype = DType::BF16, .quantize = nf4, .device = Device::cuda(0)});
  const auto cpu = engine::load_model(model, {.dtype = DType::BF16, .quantize = nf4_dq});
  // 3.1M quantized weights: 49K absmax blocks, 196 KB as f32, 49 KB as codes.
  EXPECT_LT(dq->weight_bytes() + 140000, plain->weight_bytes());
  EXPECT_EQ(cpu->weight_bytes(), plain->weight_bytes());
  const std::vector<int32_t> ids = {1, 17, 33, 2, 90, 5, 64, 12};
  auto gpu_cache = dq->make_cache(int64_t(ids.size()));
  auto cpu_cache = cpu->make_cache(int64_t(ids.size()));
  const auto gpu_logits = testing::to_floats(dq->forward(ids, gpu_cache, true));
  const auto cpu_logits = testing::to_floats(cpu->forward(ids, cpu_cache, true));
  ASSERT_EQ(gpu_logits.size(), cpu_logits.size());
  double worst = 0.0;
  for (size_t i = 0; i < gpu_logits.size(); ++i)
    worst = std::max(worst, double(std::fabs(gpu_logits[i] - cpu_logits[i])));
  EXPECT_LT(worst, 0.1);
}

// A prompt on the GPU whose 4-bit projections take the dequantize path
// dequantizes the next weight on a side stream while the current one
// multiplies; LOWBIT_DEQUANTIZE_AHEAD=0 runs them in turn. Same logits.
TEST(DecoderCuda, DequantizeAheadEqualsInTurn) {
  LOWBIT_REQUIRE_CUDA();
  // Two sequences of 600 tokens: 1200 rows take the dequantize path (up to
  // 1024 the wgmma GEMM on Hopper), so every projection is dequantized ahead.
  constexpr int64_t kSequences = 2, kTokens = 600;
  std::vector<int32_t> ids(size_t(kSequences * kTokens));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 5) % 2000);
  engine::QuantizeOnLoad nf4;
  const auto gpu = engine::load_model(models_dir() / "shakespeare-llama",
                                      {.dtype = DType::BF16, .quantize = nf4, .device = Device::cuda(0)});
  const auto prompt = [&](const char* ahead) {
    setenv("LOWBIT_DEQUANTIZE_AHEAD", ahead, 1);
    auto caches = gpu->make_caches(kSequences, kTokens);
    std::vector<models::KVCache*> pointers;
    for (auto& c : caches) pointers.push_back(&c);
    return testing::to_floats(gpu->forward_batch(ids, pointers, true));
  };
  const auto in_turn = prompt("0"), ahead = prompt("1"), again = prompt("1");
  unsetenv("LOWBIT_DEQUANTIZE_AHEAD");
  EXPECT_TRUE(in_turn == ahead);
  EXPECT_TRUE(ahead == again);
}

// Several sequences in one pass on the GPU against each sequence alone on
// the GPU: a prompt of 8 x 64 rows (the 4-bit projections' prompt paths, the
// weights dequantized ahead) and three decoding steps of 8 rows (the m <= 16
// kernels; eager, captured, replayed) give each sequence its own logits,
// with separate caches (attention a sequence at a time) and with caches made
// together (one attention kernel a layer). f32: within the summation
// order; nf4 in bf16: the batch's kernels differ from one sequence's
// (another path for 512 rows than for 64, for 8 rows than for 1), which
// moves bf16 logits by what any two summation orders do.
TEST(DecoderCuda, BatchEqualsSequencesAlone) {
  LOWBIT_REQUIRE_CUDA();
  engine::QuantizeOnLoad nf4;
  struct Setup {
    std::filesystem::path dir;
    engine::LoadOptions options;
    double max_abs, mean_abs;
  };
  const Setup setups[] = {
      {golden_dir() / "dev-llama/fp32", {.device = Device::cuda(0)}, 1e-4, 1e-5},
      {models_dir() / "shakespeare-llama", {.dtype = DType::BF16, .quantize = nf4, .device = Device::cuda(0)}, 0.25,
       0.02},
  };
  for (const Setup& setup : setups) {
    for (bool together : {false, true}) {
      const auto model = engine::load_model(setup.dir, setup.options);
      const int64_t vocab = model->config().vocab_size, batch = 8, n = 64;
      std::vector<int32_t> joined(size_t(batch * n));
      const uint64_t ids = uint64_t(std::min<int64_t>(vocab, 2000));
      for (size_t i = 0; i < joined.size(); ++i) joined[i] = int32_t((i * 131 + 7) % ids);
      std::vector<models::KVCache> caches;
      std::vector<models::KVCache*> handles;
      constexpr int64_t kSteps = 3;
      // Made together (make_caches): a step's attention is one kernel for the batch.
      if (together) caches = model->make_caches(batch, n + kSteps);
      else
        for (int64_t s = 0; s < batch; ++s) caches.push_back(model->make_cache(n + kSteps));
      for (auto& c : caches) handles.push_back(&c);
      std::vector<float> got = testing::to_floats(model->forward_batch(joined, handles, false));
      std::vector<std::vector<int32_t>> steps(kSteps, std::vector<int32_t>(size_t(batch)));
      for (int64_t t = 0; t < kSteps; ++t) {
        for (int64_t s = 0; s < batch; ++s) steps[size_t(t)][size_t(s)] = int32_t(s * 3 + 1 + 5 * t);
        const auto stepped = testing::to_floats(model->forward_batch(steps[size_t(t)], handles, false));
        got.insert(got.end(), stepped.begin(), stepped.end());
      }
      for (const auto& c : caches) EXPECT_EQ(c.length, n + kSteps);

      std::vector<float> want(got.size());
      for (int64_t s = 0; s < batch; ++s) {
        auto cache = model->make_cache(n + kSteps);
        const auto prompt = testing::to_floats(
            model->forward(std::span<const int32_t>(joined).subspan(size_t(s * n), size_t(n)), cache, false));
        std::copy(prompt.begin(), prompt.end(), want.begin() + s * vocab);
        for (int64_t t = 0; t < kSteps; ++t) {
          const std::span<const int32_t> token = std::span<const int32_t>(steps[size_t(t)]).subspan(size_t(s), 1);
          const auto one = testing::to_floats(model->forward(token, cache, false));
          std::copy(one.begin(), one.end(), want.begin() + ((t + 1) * batch + s) * vocab);
        }
      }
      const Diff d = compare(got, want, vocab);
      std::printf("%s: batch of %lld (%s) vs alone: max %.3g mean %.3g argmax %.3f\n", setup.dir.filename().c_str(),
                  (long long)batch, together ? "make_caches" : "separate caches", d.max_abs, d.mean_abs,
                  d.argmax_agreement);
      EXPECT_LE(d.max_abs, setup.max_abs) << setup.dir;
      EXPECT_LE(d.mean_abs, setup.mean_abs) << setup.dir;
    }
  }
}

TEST(DecoderCuda, CacheOfAnotherDeviceIsRefused) {
  LOWBIT_REQUIRE_CUDA();
  const auto gpu = engine::load_model(golden_dir() / "dev-llama/fp32", {.device = Device::cuda(0)});
  const auto cpu = engine::load_model(golden_dir() / "dev-llama/fp32");
  auto cache = cpu->make_cache(4);
  const std::vector<int32_t> ids = {1, 2};
  EXPECT_THROW(gpu->forward(ids, cache, false), Error);
}

}  // namespace
}  // namespace lowbit
