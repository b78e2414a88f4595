#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "lowbit/core/error.h"
#include "lowbit/core/thread_pool.h"

namespace lowbit::cli {
std::vector<Command>& command_table() {
  static std::vector<Command> table;
  return table;
}
}  // namespace lowbit::cli

int main(int argc, char** argv) {
  using namespace lowbit::cli;
  CLI::App app{"lowbit: quantize, load, run and train large language models in 8 and 4 bits"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lowbit 0.1.0");
  int threads = 0;
  app.add_option("--threads", threads, "CPU threads (default: all cores)")->check(non_negative());

  auto& table = command_table();
  std::sort(table.begin(), table.end(), [](const Command& a, const Command& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> actions;
  for (const auto& c : table) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    actions.emplace_back(sub, c.setup(*sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (threads > 0) lowbit::set_num_threads(threads);
  try {
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const lowbit::Error& e) {
    std::fprintf(stderr, "lowbit: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lowbit: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
