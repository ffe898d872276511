#include "tests/client/agent/agent_cli.h"

#include <sys/wait.h>

#include <cstdlib>
#include <random>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {

std::string AgentBinary() { return BuildDir() + "/client/agent/modeldist-agent"; }

AgentRun RunAgent(const std::vector<std::string>& args, const std::string& work_dir,
                  std::chrono::seconds timeout) {
  std::vector<std::string> argv = {AgentBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string out_path = work_dir + "/agent.out";
  const std::string err_path = work_dir + "/agent.err";
  AgentRun run;
  ChildProcess agent;
  if (!agent.Start(argv, {.stdout_path = out_path, .stderr_path = err_path})) {
    ADD_FAILURE() << "cannot start " << argv[0];
    return run;
  }
  std::optional<int> status = agent.Wait(timeout);
  if (!status.has_value()) {
    ADD_FAILURE() << "modeldist-agent " << args[0] << " did not finish within " << timeout.count()
                  << " s";
  } else if (WIFEXITED(*status)) {
    run.exit_code = WEXITSTATUS(*status);
  }
  absl::StatusOr<std::string> out = ReadFileToString(out_path);
  absl::StatusOr<std::string> err = ReadFileToString(err_path);
  run.out = out.ok() ? *out : "";
  run.err = err.ok() ? *err : "";
  return run;
}

std::optional<std::string> JsonField(const std::string& json, const std::string& key) {
  const std::string needle = absl::StrCat("\"", key, "\":");
  const size_t at = json.find(needle);
  if (at == std::string::npos) return std::nullopt;
  size_t begin = at + needle.size();
  if (begin < json.size() && json[begin] == '"') {
    const size_t end = json.find('"', begin + 1);
    if (end == std::string::npos) return std::nullopt;
    return json.substr(begin + 1, end - begin - 1);
  }
  const size_t end = json.find_first_of(",}", begin);
  if (end == std::string::npos) return std::nullopt;
  return json.substr(begin, end - begin);
}

int64_t JsonInt(const std::string& json, const std::string& key) {
  int64_t value = -1;
  std::optional<std::string> text = JsonField(json, key);
  if (!text.has_value() || !absl::SimpleAtoi(*text, &value)) return -1;
  return value;
}

int KillTrialsFromEnv(int default_trials) {
  const char* env = std::getenv("MODELDIST_AGENT_KILL_TRIALS");
  const int trials = env != nullptr ? std::atoi(env) : 0;
  return trials > 0 ? trials : default_trials;
}

uint64_t KillSeedFromEnv() {
  if (const char* env = std::getenv("MODELDIST_AGENT_KILL_SEED"); env != nullptr && *env != 0) {
    return std::strtoull(env, nullptr, 10);
  }
  return std::random_device()();
}

}  // namespace modeldist::testing
