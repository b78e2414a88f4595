// lowbit quantize IN OUT [--load-in-8bit | --load-in-4bit ...] [--config FILE.json]
//                        [--dtype auto|f32|f16|bf16] [--max-shard-size 5GB]
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/quant_options.h"
#include "lowbit/core/error.h"
#include "lowbit/io/convert.h"

namespace lowbit::cli {
namespace {

struct QuantizeArgs {
  std::string in, out, dtype, max_shard_size = "5GB";
  QuantOptions quant;
};

int run_quantize(const QuantizeArgs& a) {
  const io::QuantizationConfig config = a.quant.resolve();
  if (!config.quantizes())
    throw Error("nothing to quantize: give --load-in-8bit or --load-in-4bit (or a --config that sets one)")
        .with_option("--load-in-4bit");
  io::ConvertOptions options;
  options.dtype = resolve_dtype(a.dtype);
  options.max_shard_size = io::parse_size(a.max_shard_size);
  options.progress = terminal_progress("quantize");
  const auto start = std::chrono::steady_clock::now();
  const io::ConvertResult r = io::quantize_checkpoint(a.in, a.out, config, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: %d linear weights quantized to %s, %d shard(s), %llu bytes, %.2f s\n", a.out.c_str(), r.quantized,
              config.load_in_8bit ? "int8" : config.bnb_4bit_quant_type.c_str(), r.shards,
              (unsigned long long)r.bytes_written, seconds);
  return 0;
}

const CommandRegistration registration{Command{
    "quantize", "quantize a Hugging Face model directory to bitsandbytes 8-bit or 4-bit",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<QuantizeArgs>();
      sub.add_option("IN", a->in, "model directory (config.json + safetensors)")->required();
      sub.add_option("OUT", a->out, "output directory (created; must not hold files)")->required();
      add_quantization_options(sub, a->quant);
      add_dtype_option(sub, a->dtype, "dtype of the tensors kept in high precision: auto (the checkpoint's), f32, f16, bf16");
      sub.add_option("--max-shard-size", a->max_shard_size, "largest output shard (e.g. 5GB, 500MB)")->default_str("5GB");
      return [a] { return run_quantize(*a); };
    }}};

}  // namespace
}  // namespace lowbit::cli
