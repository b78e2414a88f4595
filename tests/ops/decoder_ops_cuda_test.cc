// The decoder ops on the GPU (RMSNorm, residual add, SwiGLU, embedding,
// softmax, RoPE, attention) against the CPU ops, for f32, bf16 and f16, on
// odd shapes: single rows, lengths 1/3/17/300, GQA ratios 1 and 4, queries
// past the start of the cache, sliding windows, odd head dimensions.
#include <cmath>
#include <cstdio>
#include <string>
#include <random>

#include <gmock/gmock.h>

#include "lowbit/ops/attention.h"
#include "lowbit/ops/elementwise.h"
#include "lowbit/ops/norm.h"
#include "lowbit/ops/rope.h"
#include "lowbit/ops/sampling.h"
#include "ops/cuda/ops_cuda.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

const Device kGpu = Device::cuda(0);
constexpr DType kDtypes[] = {DType::F32, DType::BF16, DType::F16};

Tensor random_tensor(Shape shape, DType dtype, uint32_t seed, float scale = 1.0f) {
  return testing::random_normal(shape, dtype, seed, scale);
}

double ulp_of(DType dtype) { return dtype == DType::BF16 ? 1.0 / 128 : dtype == DType::F16 ? 1.0 / 1024 : 1.0 / (1 << 23); }

// Largest |got - want| / max(|want|, floor), in ulps of the dtype at that magnitude.
double max_rel_ulps(const Tensor& got_t, const Tensor& want_t, double floor) {
  const auto got = testing::to_floats(got_t), want = testing::to_floats(want_t);
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(got[i]) != std::isnan(want[i])) return INFINITY;
    if (std::isnan(want[i])) continue;
    const double e = std::fabs(double(got[i]) - want[i]) / std::max(std::fabs(double(want[i])), floor);
    worst = std::max(worst, e / ulp_of(want_t.dtype()));
  }
  return worst;
}

// Largest |got - want| over the largest |want|, in ulps of the dtype.
double ulps_of_max(const Tensor& got_t, const Tensor& want_t) {
  const auto got = testing::to_floats(got_t), want = testing::to_floats(want_t);
  double max_err = 0.0, scale = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    max_err = std::max(max_err, std::fabs(double(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(double(want[i])));
  }
  return max_err / (scale * ulp_of(want_t.dtype()));
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  return ha.nbytes() == hb.nbytes() && std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) == 0;
}

// Sums of squares in another order move rsqrt by a few f32 ulps (the CPU's
// sequential sum of 11008 squares is the less accurate one: 12.7 ulps apart
// measured on the H200). In 16 bits, x * rsqrt is rounded, then multiplied by
// the weight and rounded again: a flip of the first rounding, carried through
// the product and the second rounding, is at most 2 ulps of the output
// (measured: 1.22 on f16 [2, 11008]).
TEST(DecoderOpsCuda, RmsNorm) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 1;
  for (DType dtype : kDtypes)
    for (auto [rows, dim] : {std::pair<int64_t, int64_t>{1, 256}, {3, 4096}, {17, 100}, {300, 33}, {2, 11008}}) {
      const Tensor x = random_tensor({rows, dim}, dtype, seed++, 3.0f);
      const Tensor w = random_tensor({dim}, dtype, seed++);
      Tensor want = Tensor::empty({rows, dim}, dtype), got = Tensor::empty({rows, dim}, dtype, kGpu);
      ops::rms_norm(x, w, 1e-5f, want);
      ops::rms_norm(x.to(kGpu), w.to(kGpu), 1e-5f, got);
      EXPECT_LE(max_rel_ulps(got, want, 1e-3), dtype == DType::F32 ? 64.0 : 2.01)
          << dtype_name(dtype) << " [" << rows << ", " << dim << "]";
    }
}

// Add is one rounding of an exact f32 sum: equal bits. SwiGLU: CUDA's expf
// is within 2 ulps of exp, which moves silu by an f32 ulp at most; where that
// flips the rounding of silu, the product and its rounding carry it to at
// most 2 ulps of the output (as RMSNorm's two roundings).
TEST(DecoderOpsCuda, AddAndSiluMul) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 100;
  for (DType dtype : kDtypes)
    for (int64_t n : {1, 3, 17, 300, 100003}) {
      const Tensor a = random_tensor({n}, dtype, seed++, 4.0f), b = random_tensor({n}, dtype, seed++, 4.0f);
      Tensor want = Tensor::empty({n}, dtype), got = a.to(kGpu);
      ops::add(a, b, want);
      ops::add(got, b.to(kGpu), got);  // in place, as the decoder's residual
      EXPECT_TRUE(bit_equal(got, want)) << "add " << dtype_name(dtype) << " " << n;
      Tensor want_s = Tensor::empty({n}, dtype), got_s = Tensor::empty({n}, dtype, kGpu);
      ops::silu_mul(a, b, want_s);
      ops::silu_mul(a.to(kGpu), b.to(kGpu), got_s);
      EXPECT_LE(max_rel_ulps(got_s, want_s, 1e-3), dtype == DType::F32 ? 4.0 : 2.01)
          << "silu_mul " << dtype_name(dtype) << " " << n;
    }
}

TEST(DecoderOpsCuda, EmbeddingConvertsAndRejectsBadIds) {
  LOWBIT_REQUIRE_CUDA();
  const Tensor table = random_tensor({50, 37}, DType::F32, 7);
  for (DType from : kDtypes)
    for (DType to : kDtypes) {
      const Tensor t = table.cast(from);
      const Tensor ids32 = Tensor::from_vector(std::vector<int32_t>{49, 0, 3, 3, 17});
      const Tensor ids64 = Tensor::from_vector(std::vector<int64_t>{49, 0, 3, 3, 17});
      Tensor want = Tensor::empty({5, 37}, to);
      ops::embedding(ids32, t, want);
      for (const Tensor* ids : {&ids32, &ids64}) {
        Tensor got = Tensor::empty({5, 37}, to, kGpu);
        ops::embedding(ids->to(kGpu), t.to(kGpu), got);
        EXPECT_TRUE(bit_equal(got, want)) << dtype_name(from) << " -> " << dtype_name(to);
      }
    }
  Tensor out = Tensor::empty({2, 37}, DType::F32, kGpu);
  const Tensor bad = Tensor::from_vector(std::vector<int32_t>{1, 50}).to(kGpu);
  EXPECT_THAT([&] { ops::embedding(bad, table.to(kGpu), out); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("token id 50 is outside the vocabulary [0, 50)")));
  // A good lookup after the error works (the error flag is reset).
  const Tensor good = Tensor::from_vector(std::vector<int32_t>{1, 2}).to(kGpu);
  EXPECT_NO_THROW(ops::embedding(good, table.to(kGpu), out));
}

TEST(DecoderOpsCuda, SoftmaxAndLogSoftmax) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 200;
  for (DType dtype : kDtypes)
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 2048}, {3, 5}, {17, 32000}, {300, 1}}) {
      const Tensor x = random_tensor({rows, cols}, dtype, seed++, 5.0f);
      for (bool log : {false, true}) {
        Tensor want = Tensor::empty({rows, cols}, DType::F32), got = Tensor::empty({rows, cols}, DType::F32, kGpu);
        if (log) {
          ops::log_softmax(x, want);
          ops::log_softmax(x.to(kGpu), got);
        } else {
          ops::softmax(x, want);
          ops::softmax(x.to(kGpu), got);
        }
        const auto g = testing::to_floats(got), w = testing::to_floats(want);
        double worst = 0.0;
        for (size_t i = 0; i < w.size(); ++i)
          worst = std::max(worst, std::fabs(double(g[i]) - w[i]) / (log ? std::max(1.0, std::fabs(double(w[i]))) : 1.0));
        // f32 sums of up to 32000 terms in another order (the CPU sums in f64).
        EXPECT_LE(worst, 2e-6) << (log ? "log_softmax " : "softmax ") << dtype_name(dtype) << " [" << rows << ", "
                               << cols << "]";
      }
    }
}

// Same roundings, same f32 tables, no FMA contraction on either side: equal bits.
TEST(DecoderOpsCuda, RopeDefaultAndLlama3) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 300;
  ops::RopeConfig llama3{.head_dim = 128, .theta = 500000.0f, .type = "llama3", .factor = 8.0f};
  ops::RopeConfig plain{.head_dim = 64};
  ops::RopeConfig odd{.head_dim = 6, .theta = 1000.0f, .type = "linear", .factor = 2.0f};
  for (const auto& config : {plain, llama3, odd}) {
    const ops::RopeTables tables = ops::rope_tables(config, 1024);
    const ops::RopeTables gpu_tables{tables.cos.to(kGpu), tables.sin.to(kGpu)};
    for (DType dtype : kDtypes)
      for (auto [tokens, heads, first] : {std::tuple<int64_t, int64_t, int64_t>{1, 4, 0}, {3, 2, 700}, {17, 1, 5},
                                          {300, 8, 723}}) {
        Tensor want = random_tensor({tokens, heads, config.head_dim}, dtype, seed++, 2.0f);
        Tensor got = want.to(kGpu);
        ops::apply_rope(want, tables, first);
        ops::apply_rope(got, gpu_tables, first);
        EXPECT_TRUE(bit_equal(got, want)) << config.type << " d " << config.head_dim << " " << dtype_name(dtype)
                                          << " tokens " << tokens << " at " << first;
      }
  }
}

// The fused ops against the CPU's fused ops: the residual sum equal bits,
// the norm and SwiGLU within the bounds above, the q/k/v split and rotation
// equal bits.
TEST(DecoderOpsCuda, FusedAddRmsNormSwigluRopeQkv) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 400;
  const auto tables = ops::rope_tables({.head_dim = 64}, 512);
  const ops::RopeTables gpu_tables{tables.cos.to(kGpu), tables.sin.to(kGpu)};
  for (DType dtype : kDtypes)
    for (int64_t rows : {1, 3, 17, 300}) {
      const Tensor x0 = random_tensor({rows, 256}, dtype, seed++, 3.0f), r = random_tensor({rows, 256}, dtype, seed++);
      const Tensor w = random_tensor({256}, dtype, seed++);
      Tensor x_cpu = x0.clone(), x_gpu = x0.to(kGpu);
      Tensor want = Tensor::empty({rows, 256}, dtype), got = Tensor::empty({rows, 256}, dtype, kGpu);
      ops::add_rms_norm(x_cpu, r, w, 1e-5f, want);
      ops::add_rms_norm(x_gpu, r.to(kGpu), w.to(kGpu), 1e-5f, got);
      EXPECT_TRUE(bit_equal(x_gpu, x_cpu)) << "add_rms_norm sum " << dtype_name(dtype) << " rows " << rows;
      EXPECT_LE(max_rel_ulps(got, want, 1e-3), dtype == DType::F32 ? 64.0 : 2.01)
          << "add_rms_norm " << dtype_name(dtype) << " rows " << rows;

      const Tensor gate_up = random_tensor({rows, 2 * 77}, dtype, seed++, 3.0f);
      Tensor s_want = Tensor::empty({rows, 77}, dtype), s_got = Tensor::empty({rows, 77}, dtype, kGpu);
      ops::swiglu(gate_up, s_want);
      ops::swiglu(gate_up.to(kGpu), s_got);
      EXPECT_LE(max_rel_ulps(s_got, s_want, 1e-3), dtype == DType::F32 ? 4.0 : 2.01) << "swiglu " << dtype_name(dtype);

      const int64_t heads = 8, kv_heads = 2, past = 511 - rows;
      const Tensor qkv = random_tensor({rows, (heads + 2 * kv_heads) * 64}, dtype, seed++, 2.0f);
      Tensor q_cpu = Tensor::empty({rows, heads, 64}, dtype), q_gpu = Tensor::empty({rows, heads, 64}, dtype, kGpu);
      Tensor k_cpu = Tensor::zeros({512, kv_heads, 64}, dtype), v_cpu = Tensor::zeros({512, kv_heads, 64}, dtype);
      Tensor k_gpu = k_cpu.to(kGpu), v_gpu = v_cpu.to(kGpu);
      ops::rope_qkv(qkv, tables, past, q_cpu, k_cpu, v_cpu);
      ops::rope_qkv(qkv.to(kGpu), gpu_tables, past, q_gpu, k_gpu, v_gpu);
      EXPECT_TRUE(bit_equal(q_gpu, q_cpu) && bit_equal(k_gpu, k_cpu) && bit_equal(v_gpu, v_cpu))
          << "rope_qkv " << dtype_name(dtype) << " rows " << rows;
      // The same with the position read from the device (captured decoding).
      Tensor position = Tensor::empty({1}, DType::I32, kGpu);
      const int32_t at = int32_t(past);
      copy_bytes(position.raw_data(), kGpu, &at, Device::cpu(), sizeof at);
      Tensor q_dev = Tensor::empty({rows, heads, 64}, dtype, kGpu);
      Tensor k_dev = Tensor::zeros({512, kv_heads, 64}, dtype, kGpu), v_dev = Tensor::zeros({512, kv_heads, 64}, dtype, kGpu);
      ops::rope_qkv(qkv.to(kGpu), gpu_tables, ops::Position(0, position), q_dev, k_dev, v_dev);
      EXPECT_TRUE(bit_equal(q_dev, q_cpu) && bit_equal(k_dev, k_cpu) && bit_equal(v_dev, v_cpu))
          << "rope_qkv, device position, " << dtype_name(dtype) << " rows " << rows;
    }
}

// First index of the largest value, as the host's greedy choice; -1 marks a
// row with a NaN. Rows of 1 to 128K columns, ties, -inf rows.
TEST(DecoderOpsCuda, Argmax) {
  LOWBIT_REQUIRE_CUDA();
  uint32_t seed = 900;
  for (DType dtype : kDtypes)
    for (int64_t cols : {1, 7, 1000, 32000, 128256}) {
      Tensor x = random_tensor({5, cols}, dtype, seed++, 4.0f);
      Tensor xf = x.cast(DType::F32);
      float* v = xf.data<float>();
      v[1 * cols + cols / 2] = 100.0f;  // row 1: a clear winner ...
      v[2 * cols + cols - 1] = 100.0f;  // row 2: a tie, the first one counts
      v[2 * cols + cols / 3] = 100.0f;
      for (int64_t i = 0; i < cols; ++i) v[3 * cols + i] = -INFINITY;  // row 3: all -inf -> 0
      v[4 * cols + cols - 1] = NAN;                                     // row 4: NaN -> -1
      x = xf.cast(dtype);
      Tensor want = Tensor::empty({5}, DType::I32), got = Tensor::empty({5}, DType::I32, kGpu);
      ops::argmax(x, want);
      ops::argmax(x.to(kGpu), got);
      EXPECT_TRUE(bit_equal(got, want)) << dtype_name(dtype) << " cols " << cols;
      EXPECT_EQ(want.data<int32_t>()[1], cols / 2);
      EXPECT_EQ(want.data<int32_t>()[2], cols == 1 ? 0 : std::min(cols / 3, cols - 1));
      EXPECT_EQ(want.data<int32_t>()[3], 0);
      EXPECT_EQ(want.data<int32_t>()[4], -1);
    }
}

// The GPU draw against the CPU's on the same logits and u: the same id for
// every u (the probability mass is summed in another order, so only a u
// within rounding of a boundary could differ; none of these does).
TEST(DecoderOpsCuda, SampleTokenMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  struct Setting {
    ops::SamplingParams params;
    bool ties;
  };
  const Setting settings[] = {{{.temperature = 0.7f}, false},
                              {{.top_k = 50}, false},
                              {{.temperature = 1.3f, .top_p = 0.9f}, false},
                              {{.top_k = 40, .top_p = 0.8f, .repetition_penalty = 1.3f}, false},
                              {{.top_p = 0.5f}, true},
                              {{.top_k = 7, .top_p = 0.95f}, true}};
  uint32_t seed = 1200;
  for (DType dtype : kDtypes)
    for (int64_t vocab : {5, 32000, 128256})
      for (const Setting& st : settings) {
        Tensor x = random_tensor({1, vocab}, DType::F32, seed++, 3.0f);
        if (st.ties)
          for (int64_t i = 0; i < vocab; ++i) x.data<float>()[i] = std::round(x.data<float>()[i]);
        x = x.cast(dtype);
        std::vector<int32_t> prev;
        for (int i = 0; i < 20; ++i) prev.push_back(int32_t((i * 7919) % vocab));
        const Tensor previous = Tensor::from_vector(prev, {int64_t(prev.size())});
        const Tensor xg = x.to(kGpu), pg = previous.to(kGpu);
        Tensor want = Tensor::empty({1}, DType::I32), got = Tensor::empty({1}, DType::I32, kGpu);
        int mismatches = 0;
        for (int i = 0; i < 16; ++i) {
          const double u = (i + 0.37) / 16;
          ops::sample_token(x, previous, st.params, u, want);
          ops::sample_token(xg, pg, st.params, u, got);
          mismatches += got.to(Device::cpu()).data<int32_t>()[0] != want.data<int32_t>()[0];
        }
        EXPECT_EQ(mismatches, 0) << dtype_name(dtype) << " vocab " << vocab << " top_k " << st.params.top_k
                                 << " top_p " << st.params.top_p << " ties " << st.ties;
      }
}

// The fused decoding step (rope_attention_decode) against rope_qkv followed
// by attention on the GPU: the same bits (output and cache rows), with the
// position from the host and from the device; against the CPU the attention
// bounds.
TEST(DecoderOpsCuda, RopeAttentionDecodeEqualsTheTwoOps) {
  LOWBIT_REQUIRE_CUDA();
  struct Shape {
    int64_t heads, kv_heads, dim, past, window;
  };
  const Shape shapes[] = {{8, 2, 128, 0, 0},  {8, 2, 128, 37, 0}, {8, 2, 128, 299, 16},
                          {4, 4, 64, 5, 0},   {6, 3, 80, 20, 0},  {2, 1, 256, 130, 0}};
  uint32_t seed = 1500;
  for (DType dtype : kDtypes)
    for (const Shape& sh : shapes) {
      const int64_t capacity = sh.past + 9, d = sh.dim;
      const auto tables = ops::rope_tables({.head_dim = int(d)}, capacity);
      const ops::RopeTables gpu_tables{tables.cos.to(kGpu), tables.sin.to(kGpu)};
      const Tensor qkv = random_tensor({1, (sh.heads + 2 * sh.kv_heads) * d}, dtype, seed++, 2.0f);
      const Tensor k0 = random_tensor({capacity, sh.kv_heads, d}, dtype, seed++, 2.0f);
      const Tensor v0 = random_tensor({capacity, sh.kv_heads, d}, dtype, seed++);
      Tensor position = Tensor::empty({1}, DType::I32, kGpu);
      const int32_t at = int32_t(sh.past);
      copy_bytes(position.raw_data(), kGpu, &at, Device::cpu(), sizeof at);
      const std::string what = std::string(dtype_name(dtype)) + " heads " + std::to_string(sh.heads) + "/" +
                               std::to_string(sh.kv_heads) + " d " + std::to_string(d) + " past " +
                               std::to_string(sh.past) + " window " + std::to_string(sh.window);
      for (bool on_device : {false, true}) {
        const ops::Position pos = on_device ? ops::Position(0, position) : ops::Position(sh.past);
        Tensor k_two = k0.to(kGpu), v_two = v0.to(kGpu), k_one = k0.to(kGpu), v_one = v0.to(kGpu);
        Tensor q = Tensor::empty({1, sh.heads, d}, dtype, kGpu);
        Tensor two = Tensor::empty({1, sh.heads * d}, dtype, kGpu), one = Tensor::empty({1, sh.heads * d}, dtype, kGpu);
        ops::rope_qkv(qkv.to(kGpu), gpu_tables, ops::Position(sh.past, on_device ? position : Tensor{}), q, k_two,
                      v_two);
        ops::attention(q, k_two, v_two, pos, two, sh.window);
        ops::rope_attention_decode(qkv.to(kGpu), gpu_tables, ops::Position(sh.past, on_device ? position : Tensor{}),
                                   k_one, v_one, one, sh.window);
        EXPECT_TRUE(bit_equal(one, two)) << what << (on_device ? " (device position)" : "");
        EXPECT_TRUE(bit_equal(k_one, k_two) && bit_equal(v_one, v_two)) << "cache rows, " << what;
      }
      Tensor k_cpu = k0.clone(), v_cpu = v0.clone(), want = Tensor::empty({1, sh.heads * d}, dtype);
      Tensor k_gpu = k0.to(kGpu), v_gpu = v0.to(kGpu), got = Tensor::empty({1, sh.heads * d}, dtype, kGpu);
      ops::rope_attention_decode(qkv, tables, sh.past, k_cpu, v_cpu, want, sh.window);
      ops::rope_attention_decode(qkv.to(kGpu), gpu_tables, sh.past, k_gpu, v_gpu, got, sh.window);
      EXPECT_LE(ulps_of_max(got, want), dtype == DType::F32 ? 64.0 : 2.0) << "vs CPU, " << what;
      EXPECT_TRUE(bit_equal(k_gpu, k_cpu) && bit_equal(v_gpu, v_cpu)) << "cache rows vs CPU, " << what;
    }
}

// A batch of sequences in one rope_attention_decode (caches [batch, capacity,
// kv_heads, d]) gives each sequence its own call's values: the cache rows bit
// for bit, the output within the attention bounds (a large batch splits the
// keys in fewer chunks, so its sums run in another order); the position from
// the host and from the device, batches of 1-40 sequences.
TEST(DecoderOpsCuda, RopeAttentionDecodeBatchEqualsEachSequence) {
  LOWBIT_REQUIRE_CUDA();
  struct Shape {
    int64_t batch, heads, kv_heads, dim, past, window;
  };
  const Shape shapes[] = {{1, 8, 2, 128, 37, 0}, {3, 8, 2, 128, 0, 0}, {5, 4, 4, 64, 200, 0},
                          {8, 6, 3, 80, 20, 7}, {40, 32, 8, 128, 90, 0}};
  uint32_t seed = 1700;
  for (DType dtype : kDtypes)
    for (const Shape& sh : shapes) {
      const int64_t capacity = sh.past + 5, d = sh.dim, row = (sh.heads + 2 * sh.kv_heads) * d;
      const auto tables = ops::rope_tables({.head_dim = int(d)}, capacity);
      const ops::RopeTables gpu_tables{tables.cos.to(kGpu), tables.sin.to(kGpu)};
      const Tensor qkv = random_tensor({sh.batch, row}, dtype, seed++, 2.0f).to(kGpu);
      const Tensor k0 = random_tensor({sh.batch, capacity, sh.kv_heads, d}, dtype, seed++, 2.0f).to(kGpu);
      const Tensor v0 = random_tensor({sh.batch, capacity, sh.kv_heads, d}, dtype, seed++).to(kGpu);
      Tensor position = Tensor::empty({1}, DType::I32, kGpu);
      const int32_t at = int32_t(sh.past);
      copy_bytes(position.raw_data(), kGpu, &at, Device::cpu(), sizeof at);
      for (bool on_device : {false, true}) {
        const ops::Position pos(sh.past, on_device ? position : Tensor{});
        Tensor k_all = k0.clone(), v_all = v0.clone(), all = Tensor::empty({sh.batch, sh.heads * d}, dtype, kGpu);
        ops::rope_attention_decode(qkv, gpu_tables, pos, k_all, v_all, all, sh.window);
        for (int64_t b = 0; b < sh.batch; ++b) {
          Tensor k = k0.rows(b, b + 1).reshape({capacity, sh.kv_heads, d}).clone();
          Tensor v = v0.rows(b, b + 1).reshape({capacity, sh.kv_heads, d}).clone();
          Tensor one = Tensor::empty({1, sh.heads * d}, dtype, kGpu);
          ops::rope_attention_decode(qkv.rows(b, b + 1), gpu_tables, pos, k, v, one, sh.window);
          const std::string what = std::string(dtype_name(dtype)) + " batch " + std::to_string(sh.batch) +
                                   " sequence " + std::to_string(b) + " d " + std::to_string(d) + " past " +
                                   std::to_string(sh.past) + (on_device ? " (device position)" : "");
          EXPECT_LE(ulps_of_max(all.rows(b, b + 1), one), dtype == DType::F32 ? 64.0 : 2.0) << what;
          EXPECT_TRUE(bit_equal(k_all.rows(b, b + 1).reshape({capacity, sh.kv_heads, d}), k) &&
                      bit_equal(v_all.rows(b, b + 1).reshape({capacity, sh.kv_heads, d}), v))
              << "cache rows, " << what;
        }
      }
    }
  // The batch's rows must agree: 3 caches for 2 qkv rows is an Error.
  const Tensor qkv = Tensor::zeros({2, 3 * 64}, DType::BF16, kGpu);
  Tensor k = Tensor::zeros({3, 8, 1, 64}, DType::BF16, kGpu), v = k.clone();
  Tensor out = Tensor::empty({2, 64}, DType::BF16, kGpu);
  const auto tables = ops::rope_tables({.head_dim = 64}, 8);
  EXPECT_THROW(ops::rope_attention_decode(qkv, {tables.cos.to(kGpu), tables.sin.to(kGpu)}, 1, k, v, out), Error);
}

// A batch's prompt through rope_qkv and attention at once (caches [batch,
// capacity, kv_heads, d], sequence b in rows [b tokens, (b + 1) tokens))
// equals each sequence's own calls bit for bit: the same kernels, block z a
// sequence. Both prompt kernels (head_dim 128 on the tensor cores, 200 on the
// CUDA cores), GQA, a window, and one token a sequence (the decoding kernel:
// within the attention bounds, its keys split in fewer chunks).
TEST(DecoderOpsCuda, PromptBatchEqualsEachSequence) {
  LOWBIT_REQUIRE_CUDA();
  struct Shape {
    int64_t batch, tokens, past, heads, kv_heads, dim, window;
  };
  const Shape shapes[] = {{3, 70, 0, 8, 2, 128, 0}, {2, 17, 40, 4, 4, 64, 9}, {4, 5, 3, 6, 3, 200, 0},
                          {5, 1, 30, 8, 2, 128, 0}};
  uint32_t seed = 1900;
  for (DType dtype : kDtypes)
    for (const Shape& sh : shapes) {
      const int64_t capacity = sh.past + sh.tokens + 3, d = sh.dim, rows = sh.batch * sh.tokens;
      const auto tables = ops::rope_tables({.head_dim = int(d)}, capacity);
      const ops::RopeTables gpu{tables.cos.to(kGpu), tables.sin.to(kGpu)};
      const Tensor qkv = random_tensor({rows, (sh.heads + 2 * sh.kv_heads) * d}, dtype, seed++, 2.0f).to(kGpu);
      const Tensor k0 = random_tensor({sh.batch, capacity, sh.kv_heads, d}, dtype, seed++, 2.0f).to(kGpu);
      const Tensor v0 = random_tensor({sh.batch, capacity, sh.kv_heads, d}, dtype, seed++).to(kGpu);
      Tensor k_all = k0.clone(), v_all = v0.clone();
      Tensor q_all = Tensor::empty({rows, sh.heads, d}, dtype, kGpu);
      Tensor all = Tensor::empty({rows, sh.heads * d}, dtype, kGpu);
      ops::rope_qkv(qkv, gpu, sh.past, q_all, k_all, v_all);
      ops::attention(q_all, k_all, v_all, sh.past, all, sh.window);
      for (int64_t b = 0; b < sh.batch; ++b) {
        Tensor k = k0.rows(b, b + 1).reshape({capacity, sh.kv_heads, d}).clone();
        Tensor v = v0.rows(b, b + 1).reshape({capacity, sh.kv_heads, d}).clone();
        Tensor q = Tensor::empty({sh.tokens, sh.heads, d}, dtype, kGpu);
        Tensor one = Tensor::empty({sh.tokens, sh.heads * d}, dtype, kGpu);
        ops::rope_qkv(qkv.rows(b * sh.tokens, (b + 1) * sh.tokens), gpu, sh.past, q, k, v);
        ops::attention(q, k, v, sh.past, one, sh.window);
        const std::string what = std::string(dtype_name(dtype)) + " batch " + std::to_string(sh.batch) + " x " +
                                 std::to_string(sh.tokens) + " d " + std::to_string(d) + " sequence " +
                                 std::to_string(b);
        const Tensor got = all.rows(b * sh.tokens, (b + 1) * sh.tokens);
        if (sh.tokens > 1) EXPECT_TRUE(bit_equal(got, one)) << what;
        else EXPECT_LE(ulps_of_max(got, one), dtype == DType::F32 ? 64.0 : 2.0) << what;
        EXPECT_TRUE(bit_equal(q_all.rows(b * sh.tokens, (b + 1) * sh.tokens), q)) << "q, " << what;
        EXPECT_TRUE(bit_equal(k_all.rows(b, b + 1).reshape({capacity, sh.kv_heads, d}), k) &&
                    bit_equal(v_all.rows(b, b + 1).reshape({capacity, sh.kv_heads, d}), v))
            << "cache rows, " << what;
      }
    }
}

struct AttentionCase {
  int64_t tokens, past, heads, kv_heads, dim, window;
};

class AttentionCuda : public ::testing::TestWithParam<AttentionCase> {};

// f32 scores, softmax and weighted sums in another order (tiles, online
// softmax, split keys): f32 agrees to ~1e-6 of the largest output; the 16-bit
// outputs round the same f32 value, so they differ by at most an ulp of the
// largest |out| (2 allowed: values near a rounding edge of a smaller exponent).
TEST_P(AttentionCuda, MatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  const auto c = GetParam();
  const int64_t capacity = c.past + c.tokens + 5;
  uint32_t seed = uint32_t(c.tokens * 1000 + c.past * 7 + c.dim);
  for (DType dtype : kDtypes) {
    const Tensor q = random_tensor({c.tokens, c.heads, c.dim}, dtype, seed++, 2.0f);
    const Tensor k = random_tensor({capacity, c.kv_heads, c.dim}, dtype, seed++, 2.0f);
    const Tensor v = random_tensor({capacity, c.kv_heads, c.dim}, dtype, seed++);
    Tensor want = Tensor::empty({c.tokens, c.heads * c.dim}, dtype);
    Tensor got = Tensor::empty({c.tokens, c.heads * c.dim}, dtype, kGpu);
    ops::attention(q, k, v, c.past, want, c.window);
    const std::string what = std::string(dtype_name(dtype)) + " tokens " + std::to_string(c.tokens) + " past " +
                             std::to_string(c.past) + " heads " + std::to_string(c.heads) + "/" +
                             std::to_string(c.kv_heads) + " d " + std::to_string(c.dim) + " window " +
                             std::to_string(c.window);
    // Prompts in 16 bits with head_dim 64, 80, 96 or 128 run on the tensor cores,
    // where P is rounded to the dtype before P V (as SDPA's flash kernels
    // do): bf16's 8-bit P adds up to ~2 ulps of the largest output more.
    const bool tensor_cores =
        c.tokens > 1 && dtype != DType::F32 && (c.dim == 64 || c.dim == 80 || c.dim == 96 || c.dim == 128);
    for (bool on : {false, true}) {
      if (on && !tensor_cores) continue;
      ops::cuda::set_attention_tensor_cores(on);
      ops::attention(q.to(kGpu), k.to(kGpu), v.to(kGpu), c.past, got, c.window);
      const double ulps = ulps_of_max(got, want);
      const double bound = dtype == DType::F32 ? 64.0 : on && dtype == DType::BF16 ? 4.0 : 2.0;
      EXPECT_LE(ulps, bound) << what << (on ? " tensor cores" : "");
      if (on) std::printf("%s, tensor cores: %.2f ulps of the largest output\n", what.c_str(), ulps);
    }
    ops::cuda::set_attention_tensor_cores(true);
    if (c.tokens != 1) continue;
    // The position read from the device (a captured decoding step): the keys
    // are split for the whole capacity instead, same bounds.
    Tensor position = Tensor::empty({1}, DType::I32, kGpu);
    const int32_t at = int32_t(c.past);
    copy_bytes(position.raw_data(), kGpu, &at, Device::cpu(), sizeof at);
    Tensor got_device = Tensor::empty({c.tokens, c.heads * c.dim}, dtype, kGpu);
    ops::attention(q.to(kGpu), k.to(kGpu), v.to(kGpu), ops::Position(0, position), got_device, c.window);
    EXPECT_LE(ulps_of_max(got_device, want), dtype == DType::F32 ? 64.0 : 2.0)
        << "device position " << dtype_name(dtype) << " past " << c.past << " window " << c.window;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionCuda,
    ::testing::Values(AttentionCase{1, 0, 4, 4, 64, 0}, AttentionCase{1, 299, 8, 2, 128, 0},
                      AttentionCase{1, 4000, 32, 8, 128, 0}, AttentionCase{1, 700, 4, 1, 64, 256},
                      AttentionCase{3, 0, 4, 1, 64, 0}, AttentionCase{3, 20, 6, 6, 33, 0},
                      AttentionCase{17, 0, 8, 2, 128, 0}, AttentionCase{17, 50, 4, 4, 7, 5},
                      AttentionCase{300, 0, 4, 1, 64, 0}, AttentionCase{300, 17, 8, 2, 128, 100},
                      AttentionCase{300, 64, 2, 2, 256, 0}, AttentionCase{65, 3, 4, 4, 80, 0},
                      AttentionCase{1, 5, 2, 2, 200, 0}, AttentionCase{2, 1, 3, 1, 1, 0},
                      AttentionCase{64, 0, 4, 4, 64, 0}, AttentionCase{130, 1000, 8, 2, 128, 0},
                      AttentionCase{200, 300, 4, 2, 64, 37}, AttentionCase{2, 0, 4, 1, 128, 0},
                      AttentionCase{150, 40, 6, 2, 96, 0}, AttentionCase{33, 0, 4, 1, 96, 20},
                      AttentionCase{90, 200, 8, 8, 80, 64}),
    [](const auto& info) {
      const auto& s = info.param;
      return "t" + std::to_string(s.tokens) + "_past" + std::to_string(s.past) + "_h" + std::to_string(s.heads) +
             "_kv" + std::to_string(s.kv_heads) + "_d" + std::to_string(s.dim) + "_w" + std::to_string(s.window);
    });

TEST(DecoderOpsCuda, RejectsMixedDevices) {
  LOWBIT_REQUIRE_CUDA();
  const Tensor x = random_tensor({2, 8}, DType::F32, 1);
  Tensor out = Tensor::empty({2, 8}, DType::F32, kGpu);
  EXPECT_THAT([&] { ops::add(x, x.to(kGpu), out); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("tensors on different devices")));
}

}  // namespace
}  // namespace lowbit
