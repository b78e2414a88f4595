// The verbs of the `lowbit` command. Each verb lives in its own file and adds
// itself to the table with a static CommandRegistration.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

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

}  // namespace lowbit::cli
