// Host helpers of the Hopper (sm_90a) kernels (hopper_cuda.h).
#include "ops/cuda/hopper_cuda.h"

#include <cudaTypedefs.h>

#include <string>

#include "core/cuda/per_device.h"
#include "lowbit/core/cuda_check.h"

namespace lowbit::ops::cuda::hopper {
namespace {

// cuTensorMapEncodeTiled from the driver, found through the runtime (no
// link against libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess || !fn)
      throw_error("Hopper kernels: the CUDA driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

}  // namespace

bool device_is_sm90() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();  // no device: not an error for the caller
    return false;
  }
  static ::lowbit::detail::PerDevice<bool> is_sm90;
  return is_sm90.get(device, [device] {
    int major = 0, minor = 0;
    LOWBIT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    LOWBIT_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return major == 9 && minor == 0;
  });
}

CUtensorMap tensor_map(const void* data, CUtensorMapDataType type, int rank, const int64_t* dims,
                       const int64_t* strides, const int* box, CUtensorMapSwizzle swizzle) {
  CUtensorMap map;
  cuuint64_t d[5], st[4];
  cuuint32_t b[5], element_strides[5];
  for (int i = 0; i < rank; ++i) {
    d[i] = cuuint64_t(dims[i]);
    b[i] = cuuint32_t(box[i]);
    element_strides[i] = 1;
    if (i + 1 < rank) st[i] = cuuint64_t(strides[i]);
  }
  const CUresult r = tensor_map_encoder()(&map, type, cuuint32_t(rank), const_cast<void*>(data), d, st, b,
                                          element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                                          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::string shape;  // outermost first
    for (int i = 0; i < rank; ++i) shape = std::to_string(dims[i]) + (i ? ", " : "") + shape;
    throw_error("TMA tensor map: cuTensorMapEncodeTiled failed (error " + std::to_string(int(r)) + ") for a [" +
                shape + "] tensor");
  }
  return map;
}

CUtensorMap tensor_map_2d(const void* data, CUtensorMapDataType type, int element_bytes, int64_t rows, int64_t cols,
                          int box_rows, int box_cols, CUtensorMapSwizzle swizzle) {
  const int64_t dims[2] = {cols, rows}, strides[1] = {cols * element_bytes};
  const int box[2] = {box_cols, box_rows};
  return tensor_map(data, type, 2, dims, strides, box, swizzle);
}

}  // namespace lowbit::ops::cuda::hopper
