// Shared helpers for lowbit's tests: where the reference data lives, loading
// golden tensors, and skipping GPU tests on machines without a GPU.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lowbit/core/device.h"
#include "lowbit/core/tensor.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/ops/linear.h"

namespace lowbit::testing {

// ../shared beside the checkout, or $LOWBIT_SHARED.
std::filesystem::path shared_dir();
std::filesystem::path golden_dir();   // shared_dir()/golden
std::filesystem::path models_dir();   // shared_dir()/models
// A fresh, empty temporary directory for one test (removed at exit).
std::filesystem::path temp_dir(const std::string& name);

// Whether a and b (on any devices) hold the same bytes.
bool same_bytes(const Tensor& a, const Tensor& b);

// Host copy of a tensor as f32 (from f32, f16 or bf16).
std::vector<float> to_floats(const Tensor& t);

// Token ids of a reference i64 tensor, as the engine takes them.
std::vector<int32_t> token_ids(const Tensor& t);

// Values ~N(0, stddev) drawn in f32 from std::mt19937(seed), then cast to dtype.
Tensor random_normal(Shape shape, DType dtype, uint32_t seed, float stddev = 1.0f);

// A weight [n, k] quantized to 4 bits on the CPU as ops::linear_4bit takes
// it: f32 absmax (with double quantization, decoded back from its codes).
ops::Blockwise4bitWeight quantize_4bit_weight(const Tensor& w, quant::QuantType type, int blocksize,
                                              bool double_quant);
// q's tensors copied to `device`.
ops::Blockwise4bitWeight weight_on(ops::Blockwise4bitWeight q, Device device);

// Weights [n_i, k] of one dtype quantized to 4 bits with double quantization
// and stacked, rows of parts[0] first, into one weight on the CPU whose parts
// keep their own offsets (what nn::Linear::stack makes of such layers). Each
// part but the last must fill whole nested blocks.
ops::Blockwise4bitWeight double_quantized_stack(const std::vector<Tensor>& parts, quant::QuantType type,
                                                int blocksize);

// One run of the lowbit command ($LOWBIT_CLI, else the build tree's) with
// `args`; stdout and stderr together.
struct CliRun {
  int status = 0;
  std::string output;
};
CliRun run_lowbit(const std::string& args);

}  // namespace lowbit::testing

// Skips the current test (reported as skipped by ctest) when no GPU is present.
#define LOWBIT_REQUIRE_CUDA()                                          \
  do {                                                                 \
    if (!::lowbit::cuda_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

// Skips the current test when fewer than two GPUs are present.
#define LOWBIT_REQUIRE_TWO_GPUS()                                                    \
  do {                                                                               \
    LOWBIT_REQUIRE_CUDA();                                                           \
    if (::lowbit::cuda_device_count() < 2) GTEST_SKIP() << "needs two CUDA devices"; \
  } while (0)
