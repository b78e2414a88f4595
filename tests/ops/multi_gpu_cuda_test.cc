// Ops on one GPU's tensors while another GPU is current: each op makes its
// tensors' device current, and kernel attributes, occupancy and SM counts are
// set and asked on each device. The GPUs of a machine are of one kind, so an
// op gives the same bits on each (the single-GPU tests check those bits
// against the CPU). Skipped on machines with fewer than two GPUs.
#include <cuda_runtime.h>

#include <array>
#include <cstring>
#include <utility>

#include "lowbit/core/cuda_check.h"
#include "lowbit/ops/elementwise.h"
#include "lowbit/ops/linear.h"
#include "lowbit/ops/norm.h"
#include "lowbit/quant/blockwise.h"
#include "lowbit/quant/int8.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

int current_device() {
  int device = -1;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

Tensor on_host(const Tensor& t) {
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  return t.to(Device::cpu());
}

::testing::AssertionResult same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor ha = on_host(a), hb = on_host(b);
  if (ha.nbytes() != hb.nbytes() || std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) != 0)
    return ::testing::AssertionFailure() << "cuda:0 and cuda:1 differ: " << a.describe();
  return ::testing::AssertionSuccess();
}

// op(device) on cuda:0 with cuda:1 current, then on cuda:1 with cuda:0
// current; each must leave its own device current.
template <typename Op>
auto on_both(Op&& op) {
  LOWBIT_CUDA_CHECK(cudaSetDevice(1));
  auto first = op(Device::cuda(0));
  EXPECT_EQ(current_device(), 0);
  LOWBIT_CUDA_CHECK(cudaSetDevice(0));
  auto second = op(Device::cuda(1));
  EXPECT_EQ(current_device(), 1);
  return std::make_pair(std::move(first), std::move(second));
}

ops::Blockwise4bitWeight quantize_weight(const Tensor& w, bool nested) {
  return testing::quantize_4bit_weight(w, quant::QuantType::NF4, 64, nested);
}

// Rows that take each 4-bit path on Hopper: the one-row GEMV, the cluster
// kernel, the wgmma GEMM (narrow, wide and k-split tiles) and, past 1024
// rows, dequantization + cuBLAS.
TEST(MultiGpu, FourBitLinearRunsWhereItsTensorsAre) {
  LOWBIT_REQUIRE_TWO_GPUS();
  const int64_t n = 1024, k = 2048;
  const Tensor w = testing::random_normal({n, k}, DType::BF16, 1, 1.0f);
  const ops::Blockwise4bitWeight q = quantize_weight(w, false);
  for (int64_t m : {1, 2, 16, 64, 256, 1100}) {
    const Tensor x = testing::random_normal({m, k}, DType::BF16, uint32_t(10 + m), 1.0f);
    const auto [a, b] = on_both([&](Device d) {
      Tensor out = Tensor::empty({m, n}, DType::BF16, d);
      ops::linear_4bit(x.to(d), testing::weight_on(q, d), Tensor{}, out);
      return out;
    });
    EXPECT_TRUE(same_bytes(a, b)) << m << " rows";
  }
}

TEST(MultiGpu, DenseAndInt8LinearRunWhereTheirTensorsAre) {
  LOWBIT_REQUIRE_TWO_GPUS();
  const int64_t n = 768, k = 1024;
  const Tensor w = testing::random_normal({n, k}, DType::F16, 2, 1.0f);
  const quant::Int8RowwiseWeight q = quant::quantize_int8_rowwise(w);
  for (int64_t m : {1, 16, 300}) {
    Tensor x = testing::random_normal({m, k}, DType::F32, uint32_t(20 + m), 1.0f);
    for (int64_t r = 0; r < m; ++r) x.data<float>()[r * k + 5] *= 9.0f;  // an outlier column
    x = x.cast(DType::F16);
    for (float threshold : {0.0f, 6.0f}) {
      const auto [a, b] = on_both([&](Device d) {
        Tensor out = Tensor::empty({m, n}, DType::F16, d);
        ops::linear_int8(x.to(d), q.codes.to(d), q.scb.to(d), Tensor{}, threshold, out);
        return out;
      });
      EXPECT_TRUE(same_bytes(a, b)) << m << " rows, threshold " << threshold;
    }
    const auto [a, b] = on_both([&](Device d) {
      Tensor out = Tensor::empty({m, n}, DType::F16, d);
      ops::linear(x.to(d), w.to(d), Tensor{}, out);
      return out;
    });
    EXPECT_TRUE(same_bytes(a, b)) << m << " rows, dense";
  }
}

TEST(MultiGpu, DecoderOpsRunWhereTheirTensorsAre) {
  LOWBIT_REQUIRE_TWO_GPUS();
  const Tensor x = testing::random_normal({4, 4096}, DType::BF16, 3, 1.0f);
  const Tensor weight = testing::random_normal({4096}, DType::BF16, 4, 1.0f);
  const auto [a, b] = on_both([&](Device d) {
    Tensor normed = Tensor::empty({4, 4096}, DType::BF16, d), act = Tensor::empty({4, 2048}, DType::BF16, d);
    Tensor probs = Tensor::empty({4, 4096}, DType::F32, d);
    const Tensor xd = x.to(d);
    ops::rms_norm(xd, weight.to(d), 1e-5f, normed);
    ops::swiglu(normed, act);
    ops::softmax(xd.cast(DType::F32), probs);
    return std::array<Tensor, 3>{normed, act, probs};
  });
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(same_bytes(a[i], b[i])) << "op " << i;
}

TEST(MultiGpu, QuantizationRunsWhereItsTensorsAre) {
  LOWBIT_REQUIRE_TWO_GPUS();
  const Tensor x = testing::random_normal({1000, 333}, DType::BF16, 5, 1.0f);
  const auto [a, b] = on_both([&](Device d) {
    const Tensor xd = x.to(d);
    quant::QuantState s4, s8;
    const Tensor packed = quant::quantize_4bit(xd, quant::QuantType::NF4, 64, true, s4);
    const Tensor back = quant::dequantize_4bit(packed, s4);
    const Tensor codes = quant::quantize_blockwise(xd, 256, false, s8);
    const quant::Int8Rows rows = quant::int8_vectorwise_quant(xd, 6.0f);
    return std::array<Tensor, 6>{packed, s4.absmax, back, codes, s8.absmax, rows.codes};
  });
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(same_bytes(a[i], b[i])) << "result " << i;
}

}  // namespace
}  // namespace lowbit
