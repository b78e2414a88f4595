// The quantization formats on the GPU give the CPU's bytes (which the golden
// tests tie to bitsandbytes): 4-bit NF4/FP4 with and without double
// quantization, dynamic 8-bit, LLM.int8 row quantization, and their inverses,
// on the golden input (13,325 values: no block size divides it).
#include <cstring>
#include <initializer_list>
#include <string>

#include "lowbit/io/safetensors.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/int8.h"
#include "support/test_support.h"

namespace lowbit::quant {
namespace {

const Device kGpu = Device::cuda(0);

const io::SafetensorsReader& golden() {
  static const io::SafetensorsReader reader =
      io::SafetensorsReader::open(testing::golden_dir() / "dev-quant.safetensors");
  return reader;
}

void expect_same_bytes(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  ASSERT_TRUE(gpu.defined() && cpu.defined()) << what;
  const Tensor got = gpu.to(Device::cpu());
  ASSERT_EQ(got.dtype(), cpu.dtype()) << what;
  ASSERT_EQ(got.numel(), cpu.numel()) << what;
  const size_t esize = element_size(cpu.dtype());
  const auto* a = static_cast<const unsigned char*>(got.raw_data());
  const auto* b = static_cast<const unsigned char*>(cpu.raw_data());
  int64_t mismatches = 0, first = -1;
  for (int64_t i = 0; i < cpu.numel(); ++i)
    if (std::memcmp(a + i * esize, b + i * esize, esize) != 0) {
      if (first < 0) first = i;
      ++mismatches;
    }
  EXPECT_EQ(mismatches, 0) << what << ": first difference at element " << first;
}

void expect_same_state(const QuantState& gpu, const QuantState& cpu, const std::string& what) {
  expect_same_bytes(gpu.absmax, cpu.absmax, what + " absmax");
  ASSERT_EQ(gpu.nested.has_value(), cpu.nested.has_value()) << what;
  if (cpu.nested) {
    EXPECT_EQ(gpu.nested->offset, cpu.nested->offset) << what << " offset";
    expect_same_bytes(gpu.nested->nested_absmax, cpu.nested->nested_absmax, what + " nested_absmax");
  }
}

// NF4 and FP4 of x at each block size, plain and double-quantized: the GPU's
// packed bytes, state and dequantized values equal the CPU's.
void expect_4bit_matches_cpu(const Tensor& x, std::initializer_list<int> blocksizes) {
  const Tensor xg = x.to(kGpu);
  for (QuantType type : {QuantType::NF4, QuantType::FP4})
    for (int bs : blocksizes)
      for (bool dq : {false, true}) {
        const std::string what = std::string(traits(type).name) + " " + std::string(dtype_name(x.dtype())) +
                                 " bs" + std::to_string(bs) + (dq ? " dq" : " plain");
        QuantState cs, gs;
        const Tensor cp = quantize_4bit(x, type, bs, dq, cs);
        const Tensor gp = quantize_4bit(xg, type, bs, dq, gs);
        expect_same_bytes(gp, cp, what + " packed");
        expect_same_state(gs, cs, what);
        expect_same_bytes(dequantize_4bit(gp, gs), dequantize_4bit(cp, cs), what + " dequant");
      }
}

TEST(QuantCuda, FourBitMatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  for (const std::string dt : {"f32", "f16", "bf16"}) {
    expect_4bit_matches_cpu(golden().tensor("input.x_" + dt), {64, 128, 256, 4096});
  }
}

// Large inputs take the vectorized kernels for whole blocks and the one-warp
// (one-thread) kernels for the partial last block; the double quantization's
// mean runs its whole tree (up to 1921 absmax values here). Values are bf16-representable, so every
// absmax is in the reciprocal table (quant/reciprocal.h) for f32 too, and the
// input has the cases that decide codes: a zero block, NaN, exact thresholds
// (x = 7/24 of the absmax is FP4's 0.29166667). (An Inf makes its block's
// values NaN, whose payload the CPU and the GPU write differently.)
TEST(QuantCuda, FourBitLargeInputsMatchCpu) {
  LOWBIT_REQUIRE_CUDA();
  const int64_t n = 3 * 4096 * 5 + 37;
  std::vector<float> values(static_cast<size_t>(n));
  uint32_t state = 12345;
  for (auto& v : values) {
    state = state * 1664525u + 1013904223u;
    v = float(int32_t(state >> 8) - (1 << 23)) / float(1 << 21);  // ~U(-4, 4)
  }
  for (int i = 64; i < 128; ++i) values[size_t(i)] = 0.0f;
  values[300] = NAN;
  for (int i = 4096; i < 4160; ++i) values[size_t(i)] = (i % 2 ? 7.0f : -7.0f) / float(1 + i % 3 % 2);
  values[4096] = 24.0f;
  const Tensor x32 = Tensor::from_vector(values, {n}).cast(DType::BF16).cast(DType::F32);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    const Tensor x = x32.cast(dt);
    expect_4bit_matches_cpu(x, {32, 64, 128, 512, 1024, 4096});
  }
}

TEST(QuantCuda, Dynamic8MatchesCpu) {
  LOWBIT_REQUIRE_CUDA();
  for (const std::string dt : {"f32", "f16", "bf16"}) {
    const Tensor x = golden().tensor("input.x_" + dt);
    for (int bs : {64, 256, 4096})
      for (bool nested : {false, true}) {
        const std::string what = "dynamic8 " + dt + " bs" + std::to_string(bs) + (nested ? " nested" : "");
        QuantState cs, gs;
        const Tensor cc = quantize_blockwise(x, bs, nested, cs);
        const Tensor gc = quantize_blockwise(x.to(kGpu), bs, nested, gs);
        expect_same_bytes(gc, cc, what + " codes");
        expect_same_state(gs, cs, what);
        expect_same_bytes(dequantize_blockwise(gc, gs), dequantize_blockwise(cc, cs), what + " dequant");
      }
  }
}

TEST(QuantCuda, Int8RowsMatchCpu) {
  LOWBIT_REQUIRE_CUDA();
  const Tensor a = golden().tensor("int8.A_f16");
  for (float threshold : {0.0f, 6.0f}) {
    const std::string what = "int8 threshold " + std::to_string(threshold);
    const Int8Rows c = int8_vectorwise_quant(a, threshold);
    const Int8Rows g = int8_vectorwise_quant(a.to(kGpu), threshold);
    expect_same_bytes(g.codes, c.codes, what + " codes");
    expect_same_bytes(g.row_stats, c.row_stats, what + " row_stats");
    expect_same_bytes(g.outlier_cols, c.outlier_cols, what + " outlier_cols");
    for (DType dtype : {DType::F32, DType::F16, DType::BF16})
      expect_same_bytes(int8_vectorwise_dequant(g.codes, g.row_stats, dtype),
                        int8_vectorwise_dequant(c.codes, c.row_stats, dtype), what + " dequant");
  }
}

}  // namespace
}  // namespace lowbit::quant
