// File: cli_flags.h
//
// What every `modeldist-agent COMMAND` does with its command line before its own work, so that
// the commands agree on it: argv[2...] parsed into the command's flags, a bad flag reported
// with the command's name (exit 2), --help answered with the usage and the flags (exit 0).
#ifndef MODELDIST_CLIENT_AGENT_CLI_FLAGS_H_
#define MODELDIST_CLIENT_AGENT_CLI_FLAGS_H_

#include <optional>
#include <string>

#include "common/flags.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::agent {

// Parses argv[2...] into `flags` (which declares "help"). Returns the exit code when the
// command should stop now: 2 after a bad flag (the error on stderr), 0 after --help (`usage`
// and the flags on stdout); nullopt to go on.
std::optional<int> ParseCommandFlags(const std::string& command, const std::string& usage,
                                     Flags& flags, int argc, char** argv);

// --dir, --json and --help, which every command has.
void AddCommonFlags(Flags& flags);

// Reads --platform and --arch (each optional: unset leaves `platform`/`arch` as they are).
// False, after saying which value is wrong, when one does not parse.
bool ParseTargetFlags(const std::string& command, const Flags& flags, v1::Platform* platform,
                      v1::Arch* arch);

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_CLI_FLAGS_H_
