#include "support/test_support.h"

#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <random>
#include <unistd.h>

#include "lowbit/core/half.h"
#include "lowbit/quant/blockwise.h"

namespace lowbit::testing {

std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("LOWBIT_SHARED")) return env;
  return std::filesystem::path(LOWBIT_SHARED_DIR).lexically_normal();
}

std::filesystem::path golden_dir() { return shared_dir() / "golden"; }
std::filesystem::path models_dir() { return shared_dir() / "models"; }

std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("lowbit-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<float> to_floats(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  std::vector<float> out(size_t(h.numel()));
  switch (h.dtype()) {
    case DType::F32: std::copy_n(h.data<float>(), out.size(), out.begin()); break;
    case DType::F16: for (size_t i = 0; i < out.size(); ++i) out[i] = f16_to_f32(h.data<f16>()[i]); break;
    case DType::BF16: for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(h.data<bf16>()[i]); break;
    default: fail("to_floats: {} is not a floating tensor", h.describe());
  }
  return out;
}

std::vector<int32_t> token_ids(const Tensor& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t(t.data<int64_t>()[i]);
  return v;
}

Tensor random_normal(Shape shape, DType dtype, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& e : v) e = dist(rng);
  return Tensor::from_vector(v, shape).cast(dtype);
}

CliRun run_lowbit(const std::string& args) {
  const char* env = std::getenv("LOWBIT_CLI");
  const std::string binary = env && *env ? env : std::string(LOWBIT_BINARY_DIR) + "/bin/lowbit";
  const std::string command = binary + " " + args + " 2>&1";
  CliRun r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {-1, "popen failed: " + command};
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) r.output.append(buffer, n);
  r.status = pclose(pipe);
  return r;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  return ha.nbytes() == hb.nbytes() && std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) == 0;
}

ops::Blockwise4bitWeight quantize_4bit_weight(const Tensor& w, quant::QuantType type, int blocksize,
                                              bool double_quant) {
  quant::QuantState state;
  ops::Blockwise4bitWeight q;
  q.type = type;
  q.packed = quant::quantize_4bit(w, type, blocksize, double_quant, state);
  q.absmax = quant::dequantize_nested_absmax(state);
  q.code = state.code;
  q.blocksize = blocksize;
  q.dtype = w.dtype();
  q.out_features = w.dim(0);
  q.in_features = w.dim(1);
  return q;
}

ops::Blockwise4bitWeight weight_on(ops::Blockwise4bitWeight q, Device device) {
  q.packed = q.packed.to(device);
  q.absmax = q.absmax.to(device);
  q.code = q.code.to(device);
  if (q.nested) {
    q.nested->nested_absmax = q.nested->nested_absmax.to(device);
    q.nested->nested_code = q.nested->nested_code.to(device);
  }
  return q;
}

ops::Blockwise4bitWeight double_quantized_stack(const std::vector<Tensor>& parts, quant::QuantType type,
                                                int blocksize) {
  ops::Blockwise4bitWeight out;
  out.type = type;
  out.blocksize = blocksize;
  out.dtype = parts.front().dtype();
  out.in_features = parts.front().dim(1);
  std::vector<uint8_t> packed, absmax;
  std::vector<float> nested_absmax;
  ops::Blockwise4bitWeight::Nested nested;
  for (const Tensor& w : parts) {
    quant::QuantState state;
    const Tensor p = quant::quantize_4bit(w, type, blocksize, true, state);
    if (!packed.empty()) nested.part_starts.push_back(int64_t(absmax.size()));
    packed.insert(packed.end(), p.data<uint8_t>(), p.data<uint8_t>() + p.numel());
    absmax.insert(absmax.end(), state.absmax.data<uint8_t>(), state.absmax.data<uint8_t>() + state.absmax.numel());
    const Tensor& scales = state.nested->nested_absmax;
    nested_absmax.insert(nested_absmax.end(), scales.data<float>(), scales.data<float>() + scales.numel());
    nested.offsets.push_back(state.nested->offset);
    nested.nested_blocksize = state.nested->blocksize;
    nested.nested_code = state.nested->nested_code;
    out.code = state.code;
    out.out_features += w.dim(0);
  }
  out.packed = Tensor::from_vector(packed);
  out.absmax = Tensor::from_vector(absmax);
  nested.nested_absmax = Tensor::from_vector(nested_absmax);
  out.nested = std::move(nested);
  return out;
}

}  // namespace lowbit::testing
