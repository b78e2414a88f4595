// The one error type of lowbit: a message plus the file, tensor and option it
// concerns, so that a user can act on it.
#pragma once

#include <stdexcept>
#include <string>

#ifndef __CUDACC__
#include <fmt/format.h>  // nvcc cannot compile fmt's compile-time format checks
#endif

namespace lowbit {

struct ErrorContext {
  std::string file;
  std::string tensor;
  std::string option;
};

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, ErrorContext context = {});

  const std::string& message() const { return message_; }
  const ErrorContext& context() const { return context_; }

  // Returns a copy with more context filled in (existing fields are kept).
  Error with_file(std::string file) const;
  Error with_tensor(std::string tensor) const;
  Error with_option(std::string option) const;

 private:
  std::string message_;
  ErrorContext context_;
};

// Throws Error with a plain message (usable from CUDA files too).
[[noreturn]] void throw_error(std::string message);
// Throws Error for a failed CUDA or cuBLAS call.
[[noreturn]] void throw_cuda_error(const char* what, const char* expr, const char* file, int line);

#ifndef __CUDACC__
// Throws Error with a formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

#endif

}  // namespace lowbit

#ifndef __CUDACC__
// Checks a precondition; the message says what was expected.
#define LOWBIT_CHECK(cond, ...)                 \
  do {                                          \
    if (!(cond)) ::lowbit::fail(__VA_ARGS__);   \
  } while (0)
#endif
