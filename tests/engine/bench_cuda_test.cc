// `lowbit bench`'s measurement on the GPU: the tiny shape in every format,
// with the memory figures that only a GPU has.
#include <gmock/gmock.h>

#include "lowbit/engine/bench.h"
#include "support/test_support.h"

namespace lowbit {
namespace {

TEST(BenchCuda, TinyShapeInEachFormat) {
  LOWBIT_REQUIRE_CUDA();
  engine::BenchOptions o;
  o.device = Device::cuda(0);
  o.formats = {"bf16", "int8", "nf4", "fp4"};
  o.prompt = 8;
  o.decode = 8;
  o.prefill = {64};
  o.repeats = 1;
  const engine::BenchReport report = engine::run_bench({.shape = "tiny"}, o);
  ASSERT_EQ(report.rows.size(), 4u);
  for (const auto& r : report.rows) {
    EXPECT_EQ(r.device, "cuda:0");
    EXPECT_GT(r.decode_tokens_per_second, 0.0) << r.format;
    EXPECT_GT(r.prefill_tokens_per_second, 0.0) << r.format;
    // The allocator's peak holds the weights and the cache at least; the
    // device's own count adds the CUDA context.
    const uint64_t cache = 2 * 4 * 17 * 2 * 64 * 2;
    EXPECT_GE(r.peak_memory_bytes, r.weight_bytes + cache) << r.format;
    EXPECT_GT(r.device_memory_used_bytes, r.peak_memory_bytes) << r.format;
    ASSERT_EQ(r.prefill.size(), 1u);
    EXPECT_GT(r.prefill[0].tokens_per_second, 0.0) << r.format;
  }
  // No allocation outlives its model.
  EXPECT_EQ(device_memory_stats().allocated, 0u);
}

// A batch of sequences on the GPU: its steps are captured graphs over caches
// made together; the peak holds a cache a sequence, and nothing outlives the run.
TEST(BenchCuda, BatchOfSequences) {
  LOWBIT_REQUIRE_CUDA();
  const engine::BenchReport report = engine::run_bench(
      {.shape = "tiny"},
      {.formats = {"bf16", "nf4"}, .device = Device::cuda(0), .batches = {4}, .prompt = 8, .decode = 8, .prefill = {64},
       .repeats = 1});
  ASSERT_EQ(report.rows.size(), 2u);
  for (const auto& r : report.rows) {
    EXPECT_EQ(r.batch, 4);
    EXPECT_GT(r.decode_tokens_per_second, 0.0) << r.format;
    EXPECT_GT(r.prefill_tokens_per_second, 0.0) << r.format;
    EXPECT_GE(r.peak_memory_bytes, r.weight_bytes + 4 * (2 * 4 * 17 * 2 * 64 * 2)) << r.format;
    ASSERT_EQ(r.prefill.size(), 1u);
    EXPECT_GE(r.prefill[0].peak_memory_bytes, r.weight_bytes + 4 * (2 * 4 * 64 * 2 * 64 * 2)) << r.format;
  }
  EXPECT_EQ(device_memory_stats().allocated, 0u);
}

}  // namespace
}  // namespace lowbit
