// The verbs of the `lowbit` command. Each verb lives in its own file and adds
// itself to the table with a static CommandRegistration.
#pragma once

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace lowbit::cli {

struct Command {
  std::string name;
  std::string help;
  // Adds options to `sub` and returns the action to run when it is chosen.
  std::function<std::function<int()>(CLI::App& sub)> setup;
};

std::vector<Command>& command_table();

struct CommandRegistration {
  explicit CommandRegistration(Command c) { command_table().push_back(std::move(c)); }
};

// Numeric option checks whose messages name the range wanted ("expected a
// number >= 0, got -1"); CLI11's own spell out DBL_MAX as an upper bound.
inline CLI::Validator number_in(double lo, double hi, bool lo_open = false) {
  const bool unbounded = hi == std::numeric_limits<double>::infinity();
  std::string want = unbounded ? fmt::format("a number {} {}", lo_open ? ">" : ">=", lo)
                               : fmt::format("a number in {}{}, {}]", lo_open ? "(" : "[", lo, hi);
  std::string name = unbounded ? fmt::format("{} {}", lo_open ? ">" : ">=", lo)
                               : fmt::format("in {}{}, {}]", lo_open ? "(" : "[", lo, hi);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v) || std::isnan(v))
          return fmt::format("expected {}, got '{}'", want, text);
        if (v < lo || (lo_open && v == lo) || v > hi) return fmt::format("expected {}, got {}", want, text);
        return {};
      },
      std::move(name));
}
inline CLI::Validator non_negative() { return number_in(0, std::numeric_limits<double>::infinity()); }
inline CLI::Validator positive() { return number_in(0, std::numeric_limits<double>::infinity(), true); }

}  // namespace lowbit::cli
