// File: trial_cli.h
//
// `modeldist-agent current` and `modeldist-agent confirm`: the trial calls of trial.h for apps
// that run the agent as a command rather than linking the C ABI.
#ifndef MODELDIST_CLIENT_AGENT_TRIAL_CLI_H_
#define MODELDIST_CLIENT_AGENT_TRIAL_CLI_H_

#include <string>

#include "absl/status/status.h"

namespace modeldist::agent {

// Runs `command` ("current" or "confirm") with argv[2...] as its flags; returns the exit code.
// `fail` prints an error the way every modeldist-agent command does and returns its code.
int RunTrialCommand(const std::string& command, int argc, char** argv,
                    int (*fail)(const absl::Status& status, bool json));

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_TRIAL_CLI_H_
