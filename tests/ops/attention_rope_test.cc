// Attention (GQA, causal, sliding window, KV cache offsets) and RoPE against
// direct double-precision formulas.
#include <cmath>
#include <random>

#include "lowbit/ops/attention.h"
#include "lowbit/ops/rope.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

Tensor random_f32(Shape shape, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = dist(rng);
  return Tensor::from_vector(v, shape);
}

TEST(Attention, MatchesDirectFormulaWithGqaWindowAndPast) {
  std::mt19937 rng(5);
  const int64_t tokens = 5, past = 7, heads = 6, kv_heads = 2, dim = 8, capacity = 16;
  for (int64_t window : {0, 3}) {
    const Tensor q = random_f32({tokens, heads, dim}, rng);
    const Tensor k = random_f32({capacity, kv_heads, dim}, rng), v = random_f32({capacity, kv_heads, dim}, rng);
    Tensor out = Tensor::empty({tokens, heads * dim}, DType::F32);
    ops::attention(q, k, v, past, out, window);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t kvh = h / (heads / kv_heads), last = past + t;
        const int64_t first = window > 0 ? std::max<int64_t>(0, last - window + 1) : 0;
        std::vector<double> w;
        double mx = -1e300, sum = 0.0;
        for (int64_t s = first; s <= last; ++s) {
          double dot = 0.0;
          for (int64_t i = 0; i < dim; ++i)
            dot += double(q.data<float>()[(t * heads + h) * dim + i]) * k.data<float>()[(s * kv_heads + kvh) * dim + i];
          w.push_back(dot / std::sqrt(double(dim)));
          mx = std::max(mx, w.back());
        }
        for (auto& x : w) sum += x = std::exp(x - mx);
        for (int64_t i = 0; i < dim; ++i) {
          double want = 0.0;
          for (int64_t s = first; s <= last; ++s)
            want += w[size_t(s - first)] / sum * v.data<float>()[(s * kv_heads + kvh) * dim + i];
          EXPECT_NEAR(out.data<float>()[t * heads * dim + h * dim + i], want, 1e-5) << "window " << window;
        }
      }
  }
}

TEST(Rope, Llama3FrequenciesAndRotation) {
  ops::RopeConfig c{.head_dim = 16, .theta = 500000.0f, .type = "llama3", .factor = 8.0f, .low_freq_factor = 1.0f,
                    .high_freq_factor = 4.0f, .original_max_position = 64};
  const Tensor inv = ops::rope_inverse_frequencies(c);
  for (int i = 0; i < 8; ++i) {
    const double base = 1.0 / std::pow(500000.0, 2.0 * i / 16);
    const double wavelen = 2 * M_PI / base;
    double want = base;
    if (wavelen > 64.0) want = base / 8;  // low frequencies: divided by factor
    else if (wavelen >= 16.0) {            // medium: interpolated
      const double smooth = (64.0 / wavelen - 1.0) / (4.0 - 1.0);
      want = (1 - smooth) * base / 8 + smooth * base;
    }
    EXPECT_NEAR(inv.data<float>()[i], want, 1e-6 * want) << i;
  }
  const auto tables = ops::rope_tables(c, 32);
  std::mt19937 rng(9);
  Tensor x = random_f32({2, 3, 16}, rng);
  const Tensor original = x.clone();
  ops::apply_rope(x, tables, 20);
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t i = 0; i < 8; ++i) {
        const double angle = double(float(20 + t) * inv.data<float>()[i]);
        const float* a = original.data<float>() + (t * 3 + h) * 16;
        EXPECT_NEAR(x.data<float>()[(t * 3 + h) * 16 + i], a[i] * std::cos(angle) - a[i + 8] * std::sin(angle), 1e-5);
        EXPECT_NEAR(x.data<float>()[(t * 3 + h) * 16 + i + 8], a[i + 8] * std::cos(angle) + a[i] * std::sin(angle),
                    1e-5);
      }
}

// The fused decoding step equals rope_qkv followed by attention; bad shapes
// and positions are Errors naming the op.
TEST(RopeAttentionDecode, EqualsTheTwoOpsAndChecksArguments) {
  std::mt19937 rng(77);
  const int64_t heads = 4, kv_heads = 2, dim = 16, capacity = 12, past = 7;
  const auto tables = ops::rope_tables({.head_dim = int(dim)}, capacity);
  const Tensor qkv = random_f32({1, (heads + 2 * kv_heads) * dim}, rng);
  const Tensor k0 = random_f32({capacity, kv_heads, dim}, rng), v0 = random_f32({capacity, kv_heads, dim}, rng);
  Tensor k1 = k0.clone(), v1 = v0.clone(), k2 = k0.clone(), v2 = v0.clone();
  Tensor q = Tensor::empty({1, heads, dim}, DType::F32);
  Tensor want = Tensor::empty({1, heads * dim}, DType::F32), got = Tensor::empty({1, heads * dim}, DType::F32);
  ops::rope_qkv(qkv, tables, past, q, k1, v1);
  ops::attention(q, k1, v1, past, want, 3);
  ops::rope_attention_decode(qkv, tables, past, k2, v2, got, 3);
  EXPECT_EQ(testing::to_floats(got), testing::to_floats(want));
  EXPECT_EQ(testing::to_floats(k2), testing::to_floats(k1));
  EXPECT_EQ(testing::to_floats(v2), testing::to_floats(v1));
  EXPECT_THROW(ops::rope_attention_decode(qkv, tables, capacity, k2, v2, got), Error);
  Tensor wide = Tensor::empty({1, 3 * dim}, DType::F32);
  EXPECT_THROW(ops::rope_attention_decode(qkv, tables, past, k2, v2, wide), Error);
  EXPECT_THROW(ops::rope_attention_decode(qkv.cast(DType::BF16), tables, past, k2, v2, got), Error);
}

// A batch (caches [batch, capacity, kv_heads, dim], one qkv and out row a
// sequence) equals each sequence's own call; a batch of caches that does not
// match qkv's rows is an Error.
TEST(RopeAttentionDecode, BatchEqualsEachSequence) {
  std::mt19937 rng(78);
  const int64_t batch = 3, heads = 4, kv_heads = 2, dim = 16, capacity = 12, past = 9;
  const auto tables = ops::rope_tables({.head_dim = int(dim)}, capacity);
  const Tensor qkv = random_f32({batch, (heads + 2 * kv_heads) * dim}, rng);
  const Tensor k0 = random_f32({batch, capacity, kv_heads, dim}, rng);
  const Tensor v0 = random_f32({batch, capacity, kv_heads, dim}, rng);
  Tensor k = k0.clone(), v = v0.clone(), all = Tensor::empty({batch, heads * dim}, DType::F32);
  ops::rope_attention_decode(qkv, tables, past, k, v, all, 4);
  for (int64_t b = 0; b < batch; ++b) {
    Tensor kb = k0.rows(b, b + 1).reshape({capacity, kv_heads, dim}).clone();
    Tensor vb = v0.rows(b, b + 1).reshape({capacity, kv_heads, dim}).clone();
    Tensor one = Tensor::empty({1, heads * dim}, DType::F32);
    ops::rope_attention_decode(qkv.rows(b, b + 1), tables, past, kb, vb, one, 4);
    EXPECT_EQ(testing::to_floats(all.rows(b, b + 1)), testing::to_floats(one)) << "sequence " << b;
    EXPECT_EQ(testing::to_floats(k.rows(b, b + 1)), testing::to_floats(kb)) << "sequence " << b;
    EXPECT_EQ(testing::to_floats(v.rows(b, b + 1)), testing::to_floats(vb)) << "sequence " << b;
  }
  Tensor two = Tensor::empty({2, heads * dim}, DType::F32);
  EXPECT_THROW(ops::rope_attention_decode(qkv.rows(0, 2), tables, past, k, v, two), Error);
}

// A batch's prompt through rope_qkv and attention (caches [batch, capacity,
// kv_heads, dim]) equals each sequence's calls; rows that do not split into
// the batch's sequences are an Error.
TEST(RopeQkvAndAttention, BatchEqualsEachSequence) {
  std::mt19937 rng(79);
  const int64_t batch = 2, tokens = 5, heads = 4, kv_heads = 2, dim = 16, capacity = 12, past = 3;
  const auto tables = ops::rope_tables({.head_dim = int(dim)}, capacity);
  const Tensor qkv = random_f32({batch * tokens, (heads + 2 * kv_heads) * dim}, rng);
  const Tensor k0 = random_f32({batch, capacity, kv_heads, dim}, rng);
  const Tensor v0 = random_f32({batch, capacity, kv_heads, dim}, rng);
  Tensor k = k0.clone(), v = v0.clone(), q = Tensor::empty({batch * tokens, heads, dim}, DType::F32);
  Tensor all = Tensor::empty({batch * tokens, heads * dim}, DType::F32);
  ops::rope_qkv(qkv, tables, past, q, k, v);
  ops::attention(q, k, v, past, all, 0);
  for (int64_t b = 0; b < batch; ++b) {
    Tensor kb = k0.rows(b, b + 1).reshape({capacity, kv_heads, dim}).clone();
    Tensor vb = v0.rows(b, b + 1).reshape({capacity, kv_heads, dim}).clone();
    Tensor qb = Tensor::empty({tokens, heads, dim}, DType::F32), one = Tensor::empty({tokens, heads * dim}, DType::F32);
    ops::rope_qkv(qkv.rows(b * tokens, (b + 1) * tokens), tables, past, qb, kb, vb);
    ops::attention(qb, kb, vb, past, one, 0);
    EXPECT_EQ(testing::to_floats(all.rows(b * tokens, (b + 1) * tokens)), testing::to_floats(one)) << b;
    EXPECT_EQ(testing::to_floats(k.rows(b, b + 1)), testing::to_floats(kb)) << b;
  }
  Tensor odd_q = Tensor::empty({7, heads, dim}, DType::F32), odd_out = Tensor::empty({7, heads * dim}, DType::F32);
  EXPECT_THROW(ops::attention(odd_q, k, v, past, odd_out, 0), Error);
  EXPECT_THROW(ops::rope_qkv(qkv.rows(0, 7), tables, past, odd_q, k, v), Error);
}

}  // namespace
}  // namespace lowbit
