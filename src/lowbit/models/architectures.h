// The architecture files' entry points. A static library drops object files
// nothing references, so the registry calls these instead of relying on
// static initializers in each file.
#pragma once

#include "lowbit/models/registry.h"

namespace lowbit::models {

Architecture llama_architecture();
Architecture mistral_architecture();
Architecture qwen2_architecture();

}  // namespace lowbit::models
