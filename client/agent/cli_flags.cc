#include "client/agent/cli_flags.h"

#include <iostream>

#include "absl/status/status.h"
#include "common/enum_names.h"

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

void AddCommonFlags(Flags& flags) {
  flags.Add("dir", "DIR", "", "where models and agent state live (required)");
  flags.AddBool("json", "print the result as one JSON object on stdout");
  flags.AddBool("help", "show this help");
}

bool ParseTargetFlags(const std::string& command, const Flags& flags, v1::Platform* platform,
                      v1::Arch* arch) {
  if (!flags.Get("platform").empty() && !ParsePlatformName(flags.Get("platform"), platform)) {
    std::cerr << "modeldist-agent " << command
              << ": --platform must be macos, ios, linux, windows or android\n";
    return false;
  }
  if (!flags.Get("arch").empty() && !ParseArchName(flags.Get("arch"), arch)) {
    std::cerr << "modeldist-agent " << command << ": --arch must be arm64 or x86_64\n";
    return false;
  }
  return true;
}

}  // namespace modeldist::agent
