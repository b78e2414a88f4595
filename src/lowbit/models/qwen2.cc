// Qwen2: the Llama decoder with a bias on the q/k/v projections (none on
// o_proj or the MLP) and, when use_sliding_window is set, a sliding window.
#include "lowbit/models/decoder.h"
#include "models/architectures.h"

namespace lowbit::models {

Architecture qwen2_architecture() {
  return {"qwen2",
          {"Qwen2ForCausalLM"},
          [](const nlohmann::json& j) {
            ModelConfig c = parse_common_config(j);
            c.qkv_bias = true;
            if (j.value("use_sliding_window", false)) {
              if (auto it = j.find("sliding_window"); it != j.end() && it->is_number_integer())
                c.sliding_window = it->get<int64_t>();
              // Qwen2 applies the window only to layers from max_window_layers on.
              LOWBIT_CHECK(j.value("max_window_layers", int64_t(0)) == 0,
                           "qwen2: a sliding window on only some layers (max_window_layers) is not supported");
            }
            return c;
          },
          build_decoder};
}

}  // namespace lowbit::models
