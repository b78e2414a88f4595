#include "support/test_support.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <unistd.h>

#include "lowbit/core/half.h"

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

}  // namespace lowbit::testing
