// LLM.int8 on Hopper's warpgroup MMA (wgmma, sm_90a): int8 x int8 with
// int32 sums, both operands brought to shared memory by TMA, bitsandbytes'
// dequantization (and the outlier columns' 16-bit product, computed before:
// linear_int8_cuda.cu) in the epilogue, so the int32 products never leave
// the registers.
//
// Block tile (three warpgroups, 384 threads, persistent over tiles):
//
//              k ->  stage 0 | stage 1 | ...          (kStageK = 128 codes a stage)
//     128      +---------+---------+---
//     weight   | WG 0: rows 0-63     |  A: 128 x 128 bytes  } TMA, 128-byte swizzle,
//     rows     | WG 1: rows 64-127   |                      } kStages deep
//              +---------+---------+---
//     BN       | x codes | x codes |    B: BN x 128 bytes
//     tokens   +---------+---------+---
//
//   out^T[128 x BN] = W[128 x k] codes^T[k x BN]: each consumer warpgroup
//   issues four m64nBNk32 wgmma a stage (BN = 64 or 128; integer wgmma stops
//   at N = 224). WG 2 is the producer: its first thread waits for a free slot
//   (`empty` mbarrier, one arrival a consumer warp once its wgmma reading the
//   slot retired) and issues the two TMA loads counted on the slot's `full`
//   barrier; setmaxnreg moves its registers to the consumers. Codes past k
//   and rows past m or n read as zeros.
//
// Epilogue, as epilogue_kernel of linear_int8_cuda.cu (and the CPU op):
// f16(fma(acc * row_stat * SCB, 1/127^2, bias)), + the outlier product
// rounded to f16 once more when there are outlier columns, in x's dtype.
// Memory traffic: the weight once per token tile (the repeats from L2: the
// token tiles of a weight tile run together), the codes once per weight tile
// (from L2), m x n outputs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "lowbit/core/cuda_check.h"
#include "ops/cuda/cuda_common.h"
#include "ops/cuda/gemm_int8_cuda.h"
#include "ops/cuda/hopper_cuda.h"
#include "ops/cuda/wgmma_sm90a.cuh"

namespace lowbit::ops::cuda {
namespace {

constexpr float kDequantScale = 6.200012e-05f;  // bitsandbytes' MM_DEQUANT_CONST
constexpr int kConsumerThreads = 256;
constexpr int kThreads = kConsumerThreads + 128;
constexpr int kConsumerWarps = kConsumerThreads / 32;
constexpr int kConsumerRegisters = 240, kProducerRegisters = 24;  // 2 x 240 + 24 <= 512 a lane
constexpr int kBlockRows = 128;
constexpr int kStageK = 128;

template <int BN_>
struct Config {
  static constexpr int BN = BN_;
  static constexpr int kABytes = kBlockRows * kStageK;
  static constexpr int kBBytes = BN * kStageK;
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr int kStages = BN == 128 ? 6 : 8;
  static constexpr int kBarriersOffset = kStages * kStageBytes;
  static constexpr size_t kSmemBytes = size_t(kBarriersOffset) + 2 * kStages * 8 + 1024;
  static_assert(kStageBytes % 1024 == 0, "stage slots keep the 1024-byte swizzle alignment");
  static_assert(kSmemBytes <= 227 * 1024, "the int8 wgmma GEMM's shared memory fits an SM");
};

struct Work {
  int64_t m_tiles, items;
  int k_tiles;
};

__device__ __forceinline__ float round_f16(float v) { return __half2float(__float2half_rn(v)); }

template <typename T, typename B, class C>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_int8_wgmma_kernel(const __grid_constant__ CUtensorMap w_map, const __grid_constant__ CUtensorMap codes_map,
                           const float* row_stats, const float* scb, const B* bias, const int32_t* outlier_count,
                           const float* outlier_product, T* out, const int64_t m, const int64_t n, const Work work) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t raw_addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  const uint32_t base = (raw_addr + 1023u) & ~1023u;
  const uint32_t full_bar = base + C::kBarriersOffset, empty_bar = full_bar + 8 * C::kStages;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  if (tid == 0) wgmma::init_stage_barriers(full_bar, empty_bar, C::kStages, 1, kConsumerWarps);
  __syncthreads();

  if (warp >= kConsumerWarps) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kProducerRegisters));
    if (tid != kConsumerThreads) return;
    wgmma::StageRing<C::kStages> ring{full_bar, empty_bar};
    for (int64_t item = blockIdx.x; item < work.items; item += gridDim.x) {
      const int m0 = int((item % work.m_tiles) * C::BN), n0 = int((item / work.m_tiles) * kBlockRows);
      for (int kt = 0; kt < work.k_tiles; ++kt) {
        ring.wait_empty();
        const uint32_t dst = base + uint32_t(ring.slot * C::kStageBytes), bar = ring.full();
        wgmma::barrier_arrive_expect(bar, C::kStageBytes);
        wgmma::tma_load_2d(dst, &w_map, kt * kStageK, n0, bar);
        wgmma::tma_load_2d(dst + C::kABytes, &codes_map, kt * kStageK, m0, bar);
        ring.advance();
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kConsumerRegisters));
  const bool add_product = outlier_count && *outlier_count > 0;
  const int wg = warp >> 2, t = lane & 3;
  const int row0 = wg * 64 + (warp & 3) * 16 + (lane >> 2), row1 = row0 + 8;
  wgmma::StageRing<C::kStages> ring{full_bar, empty_bar};
  for (int64_t item = blockIdx.x; item < work.items; item += gridDim.x) {
    const int64_t m0 = (item % work.m_tiles) * C::BN, n0 = (item / work.m_tiles) * kBlockRows;
    int32_t acc[C::BN / 2];
    for (int kt = 0; kt < work.k_tiles; ++kt) {
      ring.wait_full();
      const uint32_t a_addr = base + uint32_t(ring.slot * C::kStageBytes) + uint32_t(wg * 64 * kStageK);
      const uint32_t b_addr = base + uint32_t(ring.slot * C::kStageBytes + C::kABytes);
      uint64_t a_desc[4], b_desc[4];
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        a_desc[s] = wgmma::sw128_desc(a_addr + 32 * s);
        b_desc[s] = wgmma::sw128_desc(b_addr + 32 * s);
        wgmma::keep(a_desc[s]);
        wgmma::keep(b_desc[s]);
      }
#pragma unroll
      for (int j = 0; j < C::BN / 2; ++j) wgmma::keep(acc[j]);
      wgmma::fence();
#pragma unroll
      for (int s = 0; s < 4; ++s) wgmma::wgmma_ss_s8<C::BN>(acc, a_desc[s], b_desc[s], kt > 0 || s > 0);
      wgmma::commit();
      wgmma::wait<1>();
#pragma unroll
      for (int j = 0; j < C::BN / 2; ++j) wgmma::keep(acc[j]);
      // The stage before retired: its slot is free.
      if (kt > 0 && lane == 0) ring.release(1);
      ring.advance();
    }
    wgmma::wait<0>();
#pragma unroll
    for (int j = 0; j < C::BN / 2; ++j) wgmma::keep(acc[j]);
    if (lane == 0) ring.release(1);

    // Accumulator j: weight row (j & 2 ? row1 : row0), token 8 * (j / 4) + 2t + (j & 1).
    const int64_t r0 = n0 + row0, r1 = n0 + row1;
    const float s0 = r0 < n ? scb[r0] : 0.0f, s1 = r1 < n ? scb[r1] : 0.0f;
    const float b0 = bias && r0 < n ? round_f16(to_float(bias[r0])) : 0.0f;
    const float b1 = bias && r1 < n ? round_f16(to_float(bias[r1])) : 0.0f;
    // The outlier product's values first, all loads in flight together (one
    // at a time they cost a memory latency each).
    float extra[C::BN / 2];
#pragma unroll
    for (int j = 0; j < C::BN / 2; ++j) {
      const int64_t token = m0 + 8 * (j >> 2) + 2 * t + (j & 1);
      const int64_t row = (j & 2) ? r1 : r0;
      extra[j] = add_product && token < m && row < n ? __ldg(outlier_product + token * n + row) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < C::BN / 2; ++j) {
      const int64_t token = m0 + 8 * (j >> 2) + 2 * t + (j & 1);
      const int64_t row = (j & 2) ? r1 : r0;
      if (token >= m || row >= n) continue;
      const float scaled = __fmul_rn(__fmul_rn(float(acc[j]), row_stats[token]), (j & 2) ? s1 : s0);
      float v = round_f16(fmaf(scaled, kDequantScale, (j & 2) ? b1 : b0));
      if (add_product) v = round_f16(__fadd_rn(v, extra[j]));
      out[token * n + row] = from_float<T>(v);
    }
  }
#endif
}

template <typename T, typename B, class C>
void launch(const int8_t* codes, const float* row_stats, int64_t m, const int8_t* w, const float* scb, int64_t n,
            int64_t k, const B* bias, const int32_t* outlier_count, const float* outlier_product, T* out,
            cudaStream_t stream) {
  constexpr auto kernel = gemm_int8_wgmma_kernel<T, B, C>;
  static const bool attributes_set = [] {
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(C::kSmemBytes)));
    return true;
  }();
  (void)attributes_set;
  Work work;
  work.m_tiles = (m + C::BN - 1) / C::BN;
  work.items = work.m_tiles * ((n + kBlockRows - 1) / kBlockRows);
  work.k_tiles = int((k + kStageK - 1) / kStageK);
  const int64_t grid = std::min<int64_t>(work.items, hopper::sm_count());
  const CUtensorMap w_map =
      hopper::tensor_map_2d(w, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, n, k, kBlockRows, kStageK, CU_TENSOR_MAP_SWIZZLE_128B);
  const CUtensorMap codes_map =
      hopper::tensor_map_2d(codes, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, m, k, C::BN, kStageK, CU_TENSOR_MAP_SWIZZLE_128B);
  kernel<<<unsigned(grid), kThreads, C::kSmemBytes, stream>>>(w_map, codes_map, row_stats, scb, bias, outlier_count,
                                                                outlier_product, out, m, n, work);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

// 64 or 128 tokens a tile: the fewer waves of tiles over the SMs, a stage
// at 128 tokens costing ~1.4 times one at 64.
int pick_tokens(int64_t m, int64_t n) {
  const int64_t sms = hopper::sm_count(), n_tiles = (n + kBlockRows - 1) / kBlockRows;
  const auto waves = [&](int64_t bn) { return double((n_tiles * ((m + bn - 1) / bn) + sms - 1) / sms); };
  return waves(128) * 1.4 <= waves(64) ? 128 : 64;
}

int forced_int8_tokens = 0;

}  // namespace

void set_gemm_int8_wgmma_tokens(int tokens) { forced_int8_tokens = tokens; }

bool gemm_int8_wgmma_supports(int64_t k, const void* codes, const int8_t* w) {
  return k > 0 && k % 16 == 0 && reinterpret_cast<uintptr_t>(codes) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0 && hopper::device_is_sm90();
}

void gemm_int8_wgmma(DType dtype, const int8_t* codes, const float* row_stats, int64_t m, const int8_t* w,
                     const float* scb, int64_t n, int64_t k, DType bias_dtype, const void* bias,
                     const int32_t* outlier_count, const float* outlier_product, void* out, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const int tokens = forced_int8_tokens == 64 || forced_int8_tokens == 128 ? forced_int8_tokens : pick_tokens(m, n);
  dispatch_device_float(dtype, "linear_int8", [&](auto tag) {
    using T = decltype(tag);
    dispatch_device_float(bias_dtype, "linear_int8 bias", [&](auto btag) {
      using Bias = decltype(btag);
      if (tokens == 128)
        launch<T, Bias, Config<128>>(codes, row_stats, m, w, scb, n, k, static_cast<const Bias*>(bias),
                                     outlier_count, outlier_product, static_cast<T*>(out), stream);
      else
        launch<T, Bias, Config<64>>(codes, row_stats, m, w, scb, n, k, static_cast<const Bias*>(bias),
                                    outlier_count, outlier_product, static_cast<T*>(out), stream);
    });
  });
}

}  // namespace lowbit::ops::cuda
