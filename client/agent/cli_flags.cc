#include "client/agent/cli_flags.h"

#include <iostream>

#include "absl/status/status.h"

namespace modeldist::agent {

std::optional<int> ParseCommandFlags(const std::string& command, const std::string& usage,
                                     Flags& flags, int argc, char** argv) {
  if (absl::Status s = flags.Parse(argc, argv, 2); !s.ok()) {
    std::cerr << "modeldist-agent " << command << ": " << s.message() << "\n";
    return 2;
  }
  if (flags.GetBool("help")) {
    std::cout << usage << flags.Help();
    return 0;
  }
  return std::nullopt;
}

}  // namespace modeldist::agent
