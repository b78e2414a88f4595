// Mistral: the Llama decoder with an optional sliding attention window.
#include "lowbit/models/decoder.h"
#include "models/architectures.h"

namespace lowbit::models {

Architecture mistral_architecture() {
  return {"mistral",
          {"MistralForCausalLM"},
          [](const nlohmann::json& j) {
            ModelConfig c = parse_common_config(j);
            if (auto it = j.find("sliding_window"); it != j.end() && it->is_number_integer())
              c.sliding_window = it->get<int64_t>();
            return c;
          },
          build_decoder};
}

}  // namespace lowbit::models
