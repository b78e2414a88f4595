// Llama 2 and 3 (including Llama 3.1's rope scaling): the base decoder, with
// optional biases (attention_bias on q/k/v/o, mlp_bias).
#include "lowbit/models/decoder.h"
#include "models/architectures.h"

namespace lowbit::models {

Architecture llama_architecture() {
  return {"llama",
          {"LlamaForCausalLM"},
          [](const nlohmann::json& j) {
            ModelConfig c = parse_common_config(j);
            const bool attention_bias = j.value("attention_bias", false);
            c.qkv_bias = c.o_bias = attention_bias;
            c.mlp_bias = j.value("mlp_bias", false);
            return c;
          },
          build_decoder};
}

}  // namespace lowbit::models
