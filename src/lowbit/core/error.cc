#include "lowbit/core/error.h"

namespace lowbit {
namespace {

std::string render(const std::string& message, const ErrorContext& c) {
  std::string out = message;
  std::string ctx;
  auto add = [&](const char* label, const std::string& v) {
    if (v.empty()) return;
    ctx += ctx.empty() ? "" : ", ";
    ctx += label;
    ctx += v;
  };
  add("file: ", c.file);
  add("tensor: ", c.tensor);
  add("option: ", c.option);
  if (!ctx.empty()) out += " (" + ctx + ")";
  return out;
}

}  // namespace

Error::Error(std::string message, ErrorContext context)
    : std::runtime_error(render(message, context)), message_(std::move(message)), context_(std::move(context)) {}

void throw_error(std::string message) { throw Error(std::move(message)); }

void throw_cuda_error(const char* what, const char* expr, const char* file, int line) {
  throw Error(fmt::format("CUDA error in {}: {} ({}:{})", expr, what, file, line));
}

Error Error::with_file(std::string file) const {
  ErrorContext c = context_;
  if (c.file.empty()) c.file = std::move(file);
  return Error(message_, c);
}
Error Error::with_tensor(std::string tensor) const {
  ErrorContext c = context_;
  if (c.tensor.empty()) c.tensor = std::move(tensor);
  return Error(message_, c);
}
Error Error::with_option(std::string option) const {
  ErrorContext c = context_;
  if (c.option.empty()) c.option = std::move(option);
  return Error(message_, c);
}

}  // namespace lowbit
