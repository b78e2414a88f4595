// Host helpers of the Hopper (sm_90a) kernels: whether the current device
// runs them, its SM count, and TMA tensor maps.
#pragma once

#include <cuda.h>

#include <cstdint>

namespace lowbit::ops::cuda::hopper {

// Compute capability 9.0 exactly (sm_90a code runs nowhere else); false
// without a device.
bool device_is_sm90();
// A row-major [rows, cols] tensor of `element_bytes`-byte elements at `data`,
// read in boxes of box_rows x box_cols (rows past the end read as zeros).
CUtensorMap tensor_map_2d(const void* data, CUtensorMapDataType type, int element_bytes, int64_t rows, int64_t cols,
                          int box_rows, int box_cols, CUtensorMapSwizzle swizzle);
// A tensor of `rank` (<= 5) dimensions at `data`, innermost first: dims[i]
// elements along dimension i, strides[i] the bytes between steps of
// dimension i + 1 (multiples of 16), read in boxes of box[i] elements.
CUtensorMap tensor_map(const void* data, CUtensorMapDataType type, int rank, const int64_t* dims,
                       const int64_t* strides, const int* box, CUtensorMapSwizzle swizzle);

}  // namespace lowbit::ops::cuda::hopper
