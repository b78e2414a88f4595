// LOWBIT_CUDA_BODY(call): the CUDA branch an op front end hands to
// detail::on_device: the call in a CUDA build, an empty lambda otherwise
// (on_device then reports that the build has no CUDA).
#pragma once

#ifdef LOWBIT_WITH_CUDA
#include "ops/cuda/ops_cuda.h"
#define LOWBIT_CUDA_BODY(call) [&] { call; }
#else
#define LOWBIT_CUDA_BODY(call) [] {}
#endif
