// The fused decoder ops on the CPU equal the ops they replace, bit for bit:
// add_rms_norm = add + rms_norm, swiglu = silu_mul on the halves, rope_qkv =
// splitting q/k/v and apply_rope.
#include <cstring>
#include <random>

#include "lowbit/ops/elementwise.h"
#include "lowbit/ops/linear.h"
#include "lowbit/ops/norm.h"
#include "lowbit/ops/rope.h"
#include "lowbit/quant/blockwise.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

Tensor random_tensor(Shape shape, DType dtype, uint32_t seed) { return testing::random_normal(shape, dtype, seed, 2.0f); }

using testing::same_bytes;

TEST(FusedDecoderOps, AddRmsNormAndSwiglu) {
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    const Tensor x0 = random_tensor({3, 40}, dtype, 1), r = random_tensor({3, 40}, dtype, 2);
    const Tensor w = random_tensor({40}, dtype, 3);
    Tensor a = x0.clone(), b = x0.clone();
    Tensor out_a = Tensor::empty({3, 40}, dtype), out_b = Tensor::empty({3, 40}, dtype);
    ops::add(a, r, a);
    ops::rms_norm(a, w, 1e-6f, out_a);
    ops::add_rms_norm(b, r, w, 1e-6f, out_b);
    EXPECT_TRUE(same_bytes(a, b)) << dtype_name(dtype);
    EXPECT_TRUE(same_bytes(out_a, out_b)) << dtype_name(dtype);

    const Tensor gate = random_tensor({3, 20}, dtype, 4), up = random_tensor({3, 20}, dtype, 5);
    Tensor gate_up = Tensor::empty({3, 40}, dtype);
    const size_t row = 20 * element_size(dtype);
    for (int64_t t = 0; t < 3; ++t) {
      std::memcpy(static_cast<char*>(gate_up.raw_data()) + 2 * t * row, static_cast<char*>(gate.raw_data()) + t * row, row);
      std::memcpy(static_cast<char*>(gate_up.raw_data()) + (2 * t + 1) * row, static_cast<char*>(up.raw_data()) + t * row,
                  row);
    }
    Tensor want = Tensor::empty({3, 20}, dtype), got = Tensor::empty({3, 20}, dtype);
    ops::silu_mul(gate, up, want);
    ops::swiglu(gate_up, got);
    EXPECT_TRUE(same_bytes(want, got)) << dtype_name(dtype);
  }
}

TEST(FusedDecoderOps, RopeQkvSplitsAndRotates) {
  const int64_t tokens = 3, heads = 4, kv_heads = 2, dim = 8, past = 5, capacity = 10;
  const auto tables = ops::rope_tables({.head_dim = int(dim)}, 16);
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    const Tensor qkv = random_tensor({tokens, (heads + 2 * kv_heads) * dim}, dtype, 7);
    Tensor q = Tensor::empty({tokens, heads, dim}, dtype);
    Tensor k_cache = Tensor::zeros({capacity, kv_heads, dim}, dtype), v_cache = Tensor::zeros({capacity, kv_heads, dim}, dtype);
    ops::rope_qkv(qkv, tables, past, q, k_cache, v_cache);
    const auto in = testing::to_floats(qkv);
    Tensor q_want = Tensor::empty({tokens, heads, dim}, dtype), k_want = Tensor::empty({tokens, kv_heads, dim}, dtype);
    Tensor v_want = Tensor::empty({tokens, kv_heads, dim}, dtype);
    const size_t e = element_size(dtype), row = size_t((heads + 2 * kv_heads) * dim) * e;
    for (int64_t t = 0; t < tokens; ++t) {
      const char* r = static_cast<const char*>(qkv.raw_data()) + t * row;
      std::memcpy(static_cast<char*>(q_want.raw_data()) + t * heads * dim * e, r, heads * dim * e);
      std::memcpy(static_cast<char*>(k_want.raw_data()) + t * kv_heads * dim * e, r + heads * dim * e, kv_heads * dim * e);
      std::memcpy(static_cast<char*>(v_want.raw_data()) + t * kv_heads * dim * e, r + (heads + kv_heads) * dim * e,
                  kv_heads * dim * e);
    }
    ops::apply_rope(q_want, tables, past);
    ops::apply_rope(k_want, tables, past);
    EXPECT_TRUE(same_bytes(q, q_want)) << dtype_name(dtype);
    EXPECT_TRUE(same_bytes(k_cache.rows(past, past + tokens).clone(), k_want)) << dtype_name(dtype);
    EXPECT_TRUE(same_bytes(v_cache.rows(past, past + tokens).clone(), v_want)) << dtype_name(dtype);
    EXPECT_THROW(ops::rope_qkv(qkv, tables, capacity - 1, q, k_cache, v_cache), Error);
  }
}

// linear_4bit_fused on the CPU is the ops in turn: rms_norm or swiglu of src,
// linear_4bit, then add into out; the input width is checked.
TEST(FusedDecoderOps, Linear4bitFusedIsTheOpsInTurn) {
  const DType dtype = DType::BF16;
  const int64_t n = 24, k = 64;
  quant::QuantState state;
  ops::Blockwise4bitWeight w;
  w.packed = quant::quantize_4bit(random_tensor({n, k}, dtype, 20), quant::QuantType::NF4, 64, false, state);
  w.absmax = quant::dequantize_nested_absmax(state);
  w.code = state.code;
  w.out_features = n;
  w.in_features = k;
  const Tensor norm_weight = random_tensor({k}, dtype, 21);
  for (auto input : {ops::LinearFusion::Input::Plain, ops::LinearFusion::Input::RmsNorm,
                     ops::LinearFusion::Input::SwiGLU}) {
    ops::LinearFusion f;
    f.input = input;
    f.norm_weight = norm_weight;
    f.eps = 1e-5f;
    f.output = ops::LinearFusion::Output::Add;
    const bool swiglu = input == ops::LinearFusion::Input::SwiGLU;
    const Tensor src = random_tensor({2, swiglu ? 2 * k : k}, dtype, 22);
    const Tensor out0 = random_tensor({2, n}, dtype, 23);
    Tensor x = Tensor::empty({2, k}, dtype), y = Tensor::empty({2, n}, dtype), want = out0.clone();
    if (input == ops::LinearFusion::Input::Plain) x = src;
    else if (swiglu) ops::swiglu(src, x);
    else ops::rms_norm(src, norm_weight, f.eps, x);
    ops::linear_4bit(x, w, Tensor{}, y);
    ops::add(want, y, want);
    Tensor got = out0.clone();
    EXPECT_FALSE(ops::linear_4bit_fuses(src, w, Tensor{}, f, got));
    ops::linear_4bit_fused(src, w, Tensor{}, f, got);
    EXPECT_TRUE(same_bytes(got, want)) << int(input);
    f.output = ops::LinearFusion::Output::Store;
    ops::linear_4bit_fused(src, w, Tensor{}, f, got);
    EXPECT_TRUE(same_bytes(got, y)) << int(input);
    Tensor stored = Tensor::empty({2, n}, dtype);
    ops::fused_linear_output(y, f, stored);
    EXPECT_TRUE(same_bytes(stored, y)) << int(input);
    f.output = ops::LinearFusion::Output::SwiGLU;
    Tensor half = Tensor::empty({2, n / 2}, dtype), half_want = Tensor::empty({2, n / 2}, dtype);
    ops::swiglu(y, half_want);
    ops::linear_4bit_fused(src, w, Tensor{}, f, half);
    EXPECT_TRUE(same_bytes(half, half_want)) << int(input);
  }
  ops::LinearFusion f;
  f.input = ops::LinearFusion::Input::SwiGLU;
  Tensor out = Tensor::empty({1, n}, dtype);
  try {
    ops::linear_4bit_fused(random_tensor({1, k}, dtype, 24), w, Tensor{}, f, out);
    ADD_FAILURE() << "a SwiGLU input of the weight's width was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[tokens, 128]"), std::string::npos) << e.what();
  }
}

// dequantize_4bit_weight gives the values quant::dequantize_4bit gives (the
// weight's dtype), also into an f32 output.
TEST(FusedDecoderOps, Dequantize4bitWeightMatchesQuant) {
  for (DType dtype : {DType::BF16, DType::F16}) {
    quant::QuantState state;
    ops::Blockwise4bitWeight w;
    w.packed = quant::quantize_4bit(random_tensor({24, 128}, dtype, 30), quant::QuantType::FP4, 64, false, state);
    w.absmax = quant::dequantize_nested_absmax(state);
    w.code = state.code;
    w.dtype = dtype;
    w.out_features = 24;
    w.in_features = 128;
    Tensor got = Tensor::empty({24, 128}, dtype), got_f32 = Tensor::empty({24, 128}, DType::F32);
    ops::dequantize_4bit_weight(w, got);
    ops::dequantize_4bit_weight(w, got_f32);
    const Tensor want = quant::dequantize_4bit(w.packed, state);
    // (Equal values: a zero code may come out as +0 where quant writes -0.)
    EXPECT_TRUE(testing::to_floats(got) == testing::to_floats(want)) << dtype_name(dtype);
    EXPECT_TRUE(testing::to_floats(got_f32) == testing::to_floats(want)) << dtype_name(dtype);
    Tensor wrong = Tensor::empty({24, 64}, dtype);
    EXPECT_THROW(ops::dequantize_4bit_weight(w, wrong), Error);
  }
}

}  // namespace
}  // namespace lowbit
