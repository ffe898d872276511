#include "tests/testing/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace modeldist::testing {
namespace {

// The test's environment with `options.env` set and `options.unset` removed.
std::vector<std::string> ChildEnvironment(const SpawnOptions& options) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    bool dropped = false;
    for (const std::string& name : options.unset) {
      dropped = dropped || absl::StartsWith(*e, name + "=");
    }
    for (const auto& [name, value] : options.env) {
      dropped = dropped || absl::StartsWith(*e, name + "=");
    }
    if (!dropped) out.push_back(*e);
  }
  for (const auto& [name, value] : options.env) out.push_back(absl::StrCat(name, "=", value));
  return out;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

::testing::AssertionResult ChildProcess::Start(const std::vector<std::string>& args,
                                               const SpawnOptions& options) {
  if (running()) return ::testing::AssertionFailure() << args[0] << " is already running";
  std::vector<std::string> arg_strings = args;
  std::vector<std::string> env_strings = ChildEnvironment(options);
  std::vector<char*> argv = Pointers(arg_strings);
  std::vector<char*> envp = Pointers(env_strings);
  const int flags = O_WRONLY | O_CREAT | (options.append ? O_APPEND : O_TRUNC);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, options.stdout_path.c_str(), flags,
                                   0644);
  if (options.stderr_path.empty()) {
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, options.stderr_path.c_str(), flags,
                                     0644);
  }
  const int err = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    pid_ = -1;
    return ::testing::AssertionFailure()
           << "cannot start " << args[0] << ": " << strerror(err) << " (build its target first)";
  }
  return ::testing::AssertionSuccess();
}

int ChildProcess::KillAndReap() {
  if (pid_ <= 0) return 0;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return status;
}

bool ChildProcess::Signal(int signal) { return pid_ > 0 && ::kill(pid_, signal) == 0; }

std::optional<int> ChildProcess::Poll() {
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
  pid_ = -1;
  return status;
}

std::optional<int> ChildProcess::Wait(std::chrono::steady_clock::duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (pid_ > 0) {
    if (std::optional<int> status = Poll(); status.has_value()) return status;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  KillAndReap();
  return std::nullopt;
}

std::string DescribeExit(int wait_status) {
  if (WIFEXITED(wait_status)) return absl::StrCat("exited with status ", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return absl::StrCat("killed by signal ", WTERMSIG(wait_status));
  return absl::StrCat("stopped (status ", wait_status, ")");
}

}  // namespace modeldist::testing
