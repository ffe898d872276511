// File: agent_cli.h
//
// The real modeldist-agent binary, for the tests that run it as a user would: where it is,
// running it to completion, and reading its one-line JSON report.
#ifndef MODELDIST_TESTS_CLIENT_AGENT_AGENT_CLI_H_
#define MODELDIST_TESTS_CLIENT_AGENT_AGENT_CLI_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace modeldist::testing {

// $BUILD/client/agent/modeldist-agent (the tests that use it depend on its target).
std::string AgentBinary();

struct AgentRun {
  int exit_code = -1;  // -1 when it did not exit by itself (killed, or timed out)
  std::string out;
  std::string err;
};

// Runs AgentBinary() with `args` (without argv[0]), its output in files under `work_dir`;
// a run longer than `timeout` is killed and fails the test.
AgentRun RunAgent(const std::vector<std::string>& args, const std::string& work_dir,
                  std::chrono::seconds timeout = std::chrono::seconds(60));

// The value of "key" in the agent's one-line JSON output (numbers and plain strings only).
std::optional<std::string> JsonField(const std::string& json, const std::string& key);
// JsonField as a number, -1 when absent or not a number.
int64_t JsonInt(const std::string& json, const std::string& key);

// The kill -9 trials' knobs (agent_kill_test, agent_trial_kill_test): the number of trials,
// MODELDIST_AGENT_KILL_TRIALS when it is a positive count, else `default_trials`; and the seed,
// MODELDIST_AGENT_KILL_SEED to replay a run, else a random one.
int KillTrialsFromEnv(int default_trials);
uint64_t KillSeedFromEnv();

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_CLIENT_AGENT_AGENT_CLI_H_
