// LLM.int8 on the GPU against the CPU op on shapes that miss the kernels'
// tiles: k not a multiple of 4, 16, 32 or the 128-byte stage; odd n; 1 to 300
// rows (the GEMV for m <= 4, the wgmma GEMM on Hopper, each tile shape of
// the mma.sync GEMM elsewhere, the cuBLAS path without outliers elsewhere
// or where k % 16 != 0); with and without
// outliers, bias, f16 / bf16 / f32 activations. Up to 64 outlier columns the
// tensor-core GEMM sums them in the CPU's order, so there it must give the
// CPU's bits.
#include <cmath>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <cuda_runtime.h>

#include "lowbit/core/stream.h"
#include "lowbit/ops/linear.h"
#include "lowbit/quant/int8.h"
#include "ops/cuda/gemm_int8_cuda.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

const Device kGpu = Device::cuda(0);

struct Int8Case {
  int64_t m, n, k;
};

// Activations ~N(0, 1) whose every `stride`-th column is scaled by 9, so
// that |x| >= 6 in about half of that column's rows.
Tensor activations(int64_t m, int64_t k, int64_t stride, DType dtype, uint32_t seed) {
  Tensor x = testing::random_normal({m, k}, DType::F32, seed, 1.0f);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 3; c < k; c += stride) x.data<float>()[r * k + c] *= 9.0f;
  return x.cast(dtype);
}

// Largest |got - want| / max(1, |want|) and the number of elements that differ.
std::pair<double, int64_t> compare(const Tensor& got_t, const Tensor& want_t) {
  const auto got = testing::to_floats(got_t.to(Device::cpu()));
  const auto want = testing::to_floats(want_t);
  double max_err = 0.0;
  int64_t differ = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return {INFINITY, int64_t(want.size())};
    const double err = std::fabs(double(got[i]) - want[i]);
    differ += err != 0.0;
    max_err = std::max(max_err, err / std::max(1.0, std::fabs(double(want[i]))));
  }
  return {max_err, differ};
}

// The fused GEMMs' share of gemm_int8's automatic choice (mma.sync; wgmma on Hopper).
bool tiled_gemm(const Int8Case& c, float threshold) {
  return c.m > 4 && c.m < 1024 && c.k % 16 == 0 && threshold > 0.0f;
}

// exact: the tensor-core GEMM must give the CPU's bits (at most
// kSummedOutliers = 64 outlier columns, summed in the epilogue in order).
void check_cases(std::initializer_list<Int8Case> cases, int64_t outlier_stride, bool exact, uint32_t seed) {
  int index = 0;
  for (const Int8Case& c : cases) {
    for (DType dtype : {DType::F16, DType::BF16, DType::F32}) {
      for (float threshold : {0.0f, 6.0f}) {
        const bool with_bias = index++ % 2 == 0;
        const Tensor x = activations(c.m, c.k, outlier_stride, dtype, seed++);
        const auto q = quant::quantize_int8_rowwise(testing::random_normal({c.n, c.k}, DType::F32, seed++, 1.0f));
        const Tensor bias = with_bias ? testing::random_normal({c.n}, dtype, seed++, 1.0f) : Tensor{};
        Tensor want = Tensor::empty({c.m, c.n}, dtype);
        ops::linear_int8(x, q.codes, q.scb, bias, threshold, want);
        Tensor got = Tensor::empty({c.m, c.n}, dtype, kGpu);
        ops::linear_int8(x.to(kGpu), q.codes.to(kGpu), q.scb.to(kGpu), with_bias ? bias.to(kGpu) : Tensor{},
                         threshold, got);
        const auto [err, differ] = compare(got, want);
        const std::string what = "m " + std::to_string(c.m) + " n " + std::to_string(c.n) + " k " +
                                 std::to_string(c.k) + " " + std::string(dtype_name(dtype)) + " threshold " +
                                 std::to_string(threshold) + (with_bias ? " bias" : "");
        // cuBLAS's outlier product (from 16 rows) adds a few columns in another
        // order: one f16 ulp, as ManyOutlierColumnsMatchCpu bounds it. With
        // a thousand columns and more (the tensor-core outlier product, the
        // GEMV) the f32 sums part by a few ulps of their largest terms, which
        // can move the f16 result by two ulps, or a bf16 result by one.
        const bool cublas_outliers = threshold > 0.0f && !tiled_gemm(c, threshold) && c.m >= 16;
        const double tolerance = exact ? (cublas_outliers ? 1.0 / 1024 : 1.0 / 2048)
                                 : dtype == DType::BF16 ? 1.0 / 128 : 1.0 / 512;
        EXPECT_LE(err, tolerance) << what;
        if (exact && tiled_gemm(c, threshold))
          EXPECT_EQ(differ, 0) << what << ": the tensor-core GEMM should give the CPU's bits";
      }
    }
  }
}

TEST(LinearInt8CudaShapes, FewOutlierColumns) {
  LOWBIT_REQUIRE_CUDA();
  check_cases({{1, 77, 130},       // k % 4 != 0: the cuBLAS path's plain kernel, one row
               {3, 101, 1040},     // GEMV
               {5, 33, 1040},      // k % 32 = 16, partial 128-byte stage
               {17, 257, 4096},    // 32-row tile
               {17, 55, 1002},     // k % 4 != 0: plain kernel
               {40, 64, 528},      // 64-row tile
               {64, 129, 2064},
               {256, 8447, 1040},  // 128 x 128 tiles (132 of them)
               {300, 1001, 4096},  // 128 x 64 tiles, a partial row tile
               {300, 65, 1000}},   // k % 16 != 0: cuBLAS int8
              97, true, 5000);
}

// The same through the mma.sync GEMM forced (on Hopper the wgmma GEMM is
// the automatic choice): the CPU's bits too.
TEST(LinearInt8CudaShapes, FewOutlierColumnsMmaSync) {
  LOWBIT_REQUIRE_CUDA();
  ops::cuda::set_gemm_int8_path(ops::cuda::GemmInt8Path::kTiled);
  check_cases({{5, 33, 1040}, {17, 257, 4096}, {40, 64, 528}, {300, 1001, 4096}}, 97, true, 6000);
  ops::cuda::set_gemm_int8_path(ops::cuda::GemmInt8Path::kAuto);
}

// Hundreds of outlier columns: their product on the tensor cores
// (gemm_int8_outliers_cuda.cu), the GEMV's per-lane sums, cuBLAS.
TEST(LinearInt8CudaShapes, ManyOutlierColumns) {
  LOWBIT_REQUIRE_CUDA();
  check_cases({{4, 40, 1024}, {5, 40, 1024}, {40, 70, 1040}, {300, 129, 2048}, {20, 33, 1000}, {130, 300, 4096}}, 3,
              false, 7000);
}

// The same through the mma.sync GEMM forced, whose epilogue adds that
// product too (on Hopper the wgmma GEMM is the automatic choice).
TEST(LinearInt8CudaShapes, ManyOutlierColumnsMmaSync) {
  LOWBIT_REQUIRE_CUDA();
  ops::cuda::set_gemm_int8_path(ops::cuda::GemmInt8Path::kTiled);
  check_cases({{5, 40, 1024}, {40, 70, 1040}, {300, 129, 2048}, {130, 300, 4096}}, 3, false, 7100);
  ops::cuda::set_gemm_int8_path(ops::cuda::GemmInt8Path::kAuto);
}

// Every row has its own outlier column: a column flagged by one row only must
// still leave every row's int8 product (the epilogue's correction with up to
// 64 columns, the zeroed codes beyond).
TEST(LinearInt8CudaShapes, OutlierColumnOfOneRow) {
  LOWBIT_REQUIRE_CUDA();
  for (int64_t m : {40, 100}) {
    const int64_t n = 130, k = 1056;
    Tensor x = testing::random_normal({m, k}, DType::F32, 77, 1.0f);
    for (int64_t r = 0; r < m; ++r) x.data<float>()[r * k + (r * 37) % k] = r % 2 ? 8.0f : -7.5f;
    x = x.cast(DType::F16);
    const auto q = quant::quantize_int8_rowwise(testing::random_normal({n, k}, DType::F32, 78, 1.0f));
    Tensor want = Tensor::empty({m, n}, DType::F16);
    ops::linear_int8(x, q.codes, q.scb, Tensor{}, 6.0f, want);
    Tensor got = Tensor::empty({m, n}, DType::F16, kGpu);
    ops::linear_int8(x.to(kGpu), q.codes.to(kGpu), q.scb.to(kGpu), Tensor{}, 6.0f, got);
    const auto [err, differ] = compare(got, want);
    EXPECT_LE(err, 1.0 / 1024) << "m " << m;
    if (m <= 64) EXPECT_EQ(differ, 0) << "m " << m << ", max error " << err;
  }
}

// Whether the int8 wgmma GEMM runs on this GPU (compute capability 9.0).
bool wgmma_runs_here() {
  const Tensor probe = Tensor::zeros({64}, DType::I8, kGpu);
  return ops::cuda::gemm_int8_wgmma_supports(16, probe.raw_data(), probe.data<int8_t>());
}

// Threshold 0 through the Hopper wgmma GEMM, forced, both token tiles:
// int32 sums and the CPU's epilogue give the CPU's bits. k past the 128-code
// stage (16, 48, 1040) and rows past the tiles (5 to 300, odd n); bias or
// not; f16 / bf16 / f32 activations. Skipped off compute capability 9.0.
TEST(LinearInt8CudaShapes, WgmmaThresholdZeroGivesCpuBits) {
  LOWBIT_REQUIRE_CUDA();
  if (!wgmma_runs_here()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
  uint32_t seed = 9000;
  int runs = 0;
  for (const Int8Case c : {Int8Case{5, 33, 16}, Int8Case{17, 257, 48}, Int8Case{64, 129, 1040},
                           Int8Case{65, 128, 256}, Int8Case{300, 301, 1040}, Int8Case{130, 1000, 4096}}) {
    for (DType dtype : {DType::F16, DType::BF16, DType::F32}) {
      // {weight rows, tokens} of a tile.
      for (const auto [rows, tokens] : {std::pair{128, 64}, std::pair{128, 96}, std::pair{128, 128},
                                        std::pair{192, 64}, std::pair{192, 96}, std::pair{192, 128}}) {
        const bool with_bias = (seed & 1) == 0;
        const Tensor x = activations(c.m, c.k, 97, dtype, seed++);
        const auto q = quant::quantize_int8_rowwise(testing::random_normal({c.n, c.k}, DType::F32, seed++, 1.0f));
        const Tensor bias = with_bias ? testing::random_normal({c.n}, dtype, seed++, 1.0f) : Tensor{};
        Tensor want = Tensor::empty({c.m, c.n}, dtype);
        ops::linear_int8(x, q.codes, q.scb, bias, 0.0f, want);
        Tensor got =
            Tensor::from_vector(std::vector<float>(size_t(c.m * c.n), std::nanf("")), {c.m, c.n}).cast(dtype).to(kGpu);
        ops::cuda::set_gemm_int8_path(ops::cuda::GemmInt8Path::kWgmma);
        ops::cuda::set_gemm_int8_wgmma_tokens(tokens, 0, rows);
        ops::linear_int8(x.to(kGpu), q.codes.to(kGpu), q.scb.to(kGpu), with_bias ? bias.to(kGpu) : Tensor{}, 0.0f,
                         got);
        ops::cuda::set_gemm_int8_path(ops::cuda::GemmInt8Path::kAuto);
        ops::cuda::set_gemm_int8_wgmma_tokens(0);
        const auto [err, differ] = compare(got, want);
        ++runs;
        EXPECT_EQ(differ, 0) << "m " << c.m << " n " << c.n << " k " << c.k << " " << dtype_name(dtype) << " tokens "
                             << tokens << " rows " << rows << (with_bias ? " bias" : "") << ", max error " << err;
      }
    }
  }
  EXPECT_EQ(runs, 108);
}

// The wgmma GEMM forced with each token tile and k splits (slices adding
// int32 sums, then the epilogue kernel), threshold 0 and 6 (few outlier
// columns summed in the CPU's order): the CPU's bits.
TEST(LinearInt8CudaShapes, WgmmaTilesAndSplitsGiveCpuBits) {
  LOWBIT_REQUIRE_CUDA();
  if (!wgmma_runs_here()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
  ops::cuda::set_gemm_int8_path(ops::cuda::GemmInt8Path::kWgmma);
  uint32_t seed = 11000;
  // {tokens, k slices, weight rows}; 192-row tiles (three warpgroups) up to 96 tokens with outliers.
  for (const auto [tokens, split, rows] : {std::tuple{64, 3, 128}, std::tuple{128, 2, 128}, std::tuple{64, 1, 128},
                                           std::tuple{128, 5, 128}, std::tuple{96, 1, 128}, std::tuple{96, 4, 128},
                                           std::tuple{64, 1, 192}, std::tuple{96, 3, 192}, std::tuple{96, 1, 192},
                                           std::tuple{64, 2, 192}}) {
    ops::cuda::set_gemm_int8_wgmma_tokens(tokens, split, rows);
    check_cases({{5, 33, 1040}, {130, 257, 4096}, {300, 1001, 656}}, 97, true, seed);
    seed += 100;
  }
  ops::cuda::set_gemm_int8_wgmma_tokens(0);
  ops::cuda::set_gemm_int8_path(ops::cuda::GemmInt8Path::kAuto);
}

// Unsplit, the wgmma GEMM copies the outlier columns' weight codes from its
// own weight tiles (no gather): 63 columns inside one 128-byte stage, 64
// columns one every half stage, 63 columns with k not a multiple of the
// stage; every token tile; the CPU's bits.
TEST(LinearInt8CudaShapes, WgmmaCapturedOutlierWeightsGiveCpuBits) {
  LOWBIT_REQUIRE_CUDA();
  if (!wgmma_runs_here()) GTEST_SKIP() << "wgmma needs compute capability 9.0";
  ops::cuda::set_gemm_int8_path(ops::cuda::GemmInt8Path::kWgmma);
  uint32_t seed = 13000;
  for (const auto [tokens, rows] : {std::pair{64, 128}, std::pair{96, 128}, std::pair{128, 128}, std::pair{64, 192},
                                    std::pair{96, 192}}) {
    ops::cuda::set_gemm_int8_wgmma_tokens(tokens, 1, rows);
    check_cases({{70, 200, 128}}, 2, true, seed);
    check_cases({{40, 130, 4096}}, 64, true, seed + 20);
    check_cases({{100, 300, 1008}}, 16, true, seed + 40);
    seed += 100;
  }
  ops::cuda::set_gemm_int8_wgmma_tokens(0);
  ops::cuda::set_gemm_int8_path(ops::cuda::GemmInt8Path::kAuto);
}

// The outlier bitmask and done counter live per stream from call to call
// (ZeroedStreamBuffer), left zeroed by each call: a call with outlier
// columns, then calls without, with other columns, a larger and a smaller k,
// on the default stream and on another, each give the CPU's bits (a column
// left over in the mask would change them).
TEST(LinearInt8CudaShapes, OutlierMaskStartsCleanEachCall) {
  LOWBIT_REQUIRE_CUDA();
  cudaStream_t side = nullptr;
  ASSERT_EQ(cudaStreamCreate(&side), cudaSuccess);
  uint32_t seed = 12000;
  struct Call {
    int64_t m, n, k, stride;  // stride 0: no outliers
    bool side_stream;
  };
  for (const Call c : {Call{16, 64, 1024, 97, false}, Call{16, 64, 1024, 0, false}, Call{33, 40, 2048, 301, false},
                       Call{8, 64, 512, 0, false}, Call{8, 64, 512, 50, true}, Call{300, 96, 4096, 0, true},
                       Call{300, 96, 1024, 0, false}, Call{12, 80, 256, 7, false}, Call{12, 80, 256, 0, true}}) {
    const Tensor x = c.stride > 0 ? activations(c.m, c.k, c.stride, DType::F16, seed++)
                                  : testing::random_normal({c.m, c.k}, DType::F32, seed++, 1.0f).cast(DType::F16);
    const auto q = quant::quantize_int8_rowwise(testing::random_normal({c.n, c.k}, DType::F32, seed++, 1.0f));
    Tensor want = Tensor::empty({c.m, c.n}, DType::F16);
    ops::linear_int8(x, q.codes, q.scb, Tensor{}, 6.0f, want);
    Tensor got = Tensor::empty({c.m, c.n}, DType::F16, kGpu);
    const Tensor xg = x.to(kGpu), codes = q.codes.to(kGpu), scb = q.scb.to(kGpu);
    {
      CudaStreamScope scope(c.side_stream ? side : nullptr);
      ops::linear_int8(xg, codes, scb, Tensor{}, 6.0f, got);
      ASSERT_EQ(cudaStreamSynchronize(c.side_stream ? side : nullptr), cudaSuccess);
    }
    const auto [err, differ] = compare(got, want);
    EXPECT_EQ(differ, 0) << "m " << c.m << " n " << c.n << " k " << c.k << " stride " << c.stride
                         << (c.side_stream ? " side stream" : "") << ", max error " << err;
  }
  ASSERT_EQ(cudaStreamDestroy(side), cudaSuccess);
}

// Two host threads calling the op on one stream (the legacy default stream)
// with different outlier columns and k: each call queues its kernels under
// its stream's outlier-state lease, so neither reads the other's column list.
TEST(LinearInt8CudaShapes, ThreadsSharingAStreamKeepTheirOutliers) {
  LOWBIT_REQUIRE_CUDA();
  struct Case {
    Tensor x, codes, scb, want, xg, codes_g, scb_g;
  };
  auto make = [](int64_t m, int64_t n, int64_t k, int64_t stride, uint32_t seed) {
    Case c;
    c.x = activations(m, k, stride, DType::F16, seed);
    const auto q = quant::quantize_int8_rowwise(testing::random_normal({n, k}, DType::F32, seed + 1, 1.0f));
    c.codes = q.codes;
    c.scb = q.scb;
    c.want = Tensor::empty({m, n}, DType::F16);
    ops::linear_int8(c.x, c.codes, c.scb, Tensor{}, 6.0f, c.want);
    c.xg = c.x.to(kGpu);
    c.codes_g = c.codes.to(kGpu);
    c.scb_g = c.scb.to(kGpu);
    return c;
  };
  const Case cases[2] = {make(24, 96, 1024, 97, 13000), make(40, 64, 2048, 41, 13100)};
  int differ[2] = {0, 0};
  auto work = [&](int t) {
    const Case& c = cases[t];
    for (int i = 0; i < 20; ++i) {
      Tensor got = Tensor::empty({c.want.dim(0), c.want.dim(1)}, DType::F16, kGpu);
      ops::linear_int8(c.xg, c.codes_g, c.scb_g, Tensor{}, 6.0f, got);
      differ[t] += compare(got, c.want).second != 0;  // to(cpu) synchronizes
    }
  };
  std::thread a(work, 0), b(work, 1);
  a.join();
  b.join();
  EXPECT_EQ(differ[0], 0);
  EXPECT_EQ(differ[1], 0);
}

}  // namespace
}  // namespace lowbit
