#include "cli/model_options.h"

#include <fstream>
#include <sstream>

#include "lowbit/core/error.h"

namespace lowbit::cli {

void ModelOptions::add_to(CLI::App& app) {
  add_dtype_option(app, dtype, "compute dtype: auto (the checkpoint's), f32, bf16 or f16");
  add_quantization_options(app, quantization);
  app.add_option("--device", device, "where the model runs: cpu, cuda or cuda:N (default cpu)");
}

engine::LoadOptions ModelOptions::load_options() const {
  const io::QuantizationConfig q = quantization.resolve();
  engine::LoadOptions options;
  options.dtype = resolve_dtype(dtype);
  try {
    options.device = Device::parse(device);
  } catch (const Error& e) {
    fail("--device: {}", e.message());
  }
  if (const std::string reason = unavailable_reason(options.device); !reason.empty())
    fail("--device {}: {}", device, reason);
  if (!q.quantizes()) return options;
  engine::QuantizeOnLoad on_load;
  on_load.skip_modules = q.skip_modules();
  if (q.load_in_8bit) {
    on_load.kind = engine::QuantizeOnLoad::Kind::Int8;
    on_load.int8_threshold = float(q.llm_int8_threshold);
    // bitsandbytes' LLM.int8 computes in f16.
    if (!options.dtype) options.dtype = DType::F16;
  } else {
    on_load.kind = q.quant_type() == quant::QuantType::FP4 ? engine::QuantizeOnLoad::Kind::FP4
                                                           : engine::QuantizeOnLoad::Kind::NF4;
    on_load.double_quant = q.bnb_4bit_use_double_quant;
    // Given: as asked; not given: the model's dtype (activations stay in one dtype).
    if (!quantization.compute_dtype.empty()) on_load.compute_dtype = q.bnb_4bit_compute_dtype;
  }
  options.quantize = on_load;
  return options;
}

std::string read_utf8_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open the text file").with_file(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  // Validate UTF-8: lead byte, continuation bytes, no overlong forms or surrogates.
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len != 0 && i + len <= n;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (s[i + k] & 0xc0) == 0x80;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (ok) {
      static constexpr uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= min_cp[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    }
    if (!ok)
      throw Error(fmt::format("{} is not UTF-8 text: invalid byte 0x{:02x} at offset {}", path, c, i)).with_file(path);
    i += len;
  }
  return text;
}

}  // namespace lowbit::cli
