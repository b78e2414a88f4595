// Whether this GPU runs the 4-bit wgmma GEMM (compute capability 9.0), for
// the ops tests that force it or expect it. Include from *_cuda_test.cc.
#pragma once

#include <cstdint>

#include "lowbit/core/tensor.h"
#include "ops/cuda/gemm_4bit_kernels.h"

namespace lowbit {

inline bool wgmma_4bit_runs_here() {
  ops::cuda::Packed4bit probe;
  const Tensor packed = Tensor::zeros({64 * 64 / 2}, DType::U8, Device::cuda(0));
  probe.packed = packed.data<uint8_t>();
  probe.n = 64;
  probe.k = 64;
  return ops::cuda::fused4::wgmma_supported(DType::BF16, probe, 1, packed.raw_data());
}

}  // namespace lowbit
