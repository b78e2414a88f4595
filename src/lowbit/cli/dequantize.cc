// lowbit dequantize IN OUT [--dtype auto|f32|f16|bf16] [--max-shard-size 5GB]
#include <cstdio>

#include "cli/command.h"
#include "cli/quant_options.h"
#include "lowbit/io/convert.h"

namespace lowbit::cli {
namespace {

struct DequantizeArgs {
  std::string in, out, dtype, max_shard_size = "5GB";
};

int run_dequantize(const DequantizeArgs& a) {
  io::ConvertOptions options;
  options.dtype = resolve_dtype(a.dtype);
  options.max_shard_size = io::parse_size(a.max_shard_size);
  options.progress = terminal_progress("dequantize");
  const io::ConvertResult r = io::dequantize_checkpoint(a.in, a.out, options);
  std::printf("%s: %d shard(s), %llu bytes\n", a.out.c_str(), r.shards, (unsigned long long)r.bytes_written);
  return 0;
}

const CommandRegistration registration{Command{
    "dequantize", "write a quantized model directory back with dense weights",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<DequantizeArgs>();
      sub.add_option("IN", a->in, "model directory (8-bit, 4-bit or dense)")->required();
      sub.add_option("OUT", a->out, "output directory (created; must not hold files)")->required();
      add_dtype_option(sub, a->dtype, "dtype of the written weights: auto (the checkpoint's), f32, f16, bf16");
      sub.add_option("--max-shard-size", a->max_shard_size, "largest output shard (e.g. 5GB, 500MB)")->default_str("5GB");
      return [a] { return run_dequantize(*a); };
    }}};

}  // namespace
}  // namespace lowbit::cli
