// Where a step's tokens start in the sequence.
#pragma once

#include <cstdint>

#include "lowbit/core/tensor.h"

namespace lowbit::ops {

// `value` is the host's position (argument checks, CPU bodies). A CUDA graph
// replays frozen kernel arguments, so a captured decoding step reads its
// position from `on_device` instead: an i32 [1] tensor on the GPU that the
// caller updates before each replay (value is then what it held at capture
// and only bounds-checked). Converts implicitly from a plain position.
struct Position {
  Position(int64_t position) : value(position) {}  // NOLINT(google-explicit-constructor)
  Position(int64_t position, Tensor device_position) : value(position), on_device(std::move(device_position)) {}

  int64_t value = 0;
  Tensor on_device;
};

}  // namespace lowbit::ops
