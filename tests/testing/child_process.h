// File: child_process.h
//
// One child process of a test (the real modeldist-server, modeldist-agent or modeldistctl
// binary): started with posix_spawn — the test process runs gRPC threads, and only exec is safe
// in a forked child of a threaded process — with stdin from /dev/null and stdout/stderr in
// files, and always reaped: the destructor SIGKILLs it by its own PID if a failed assertion
// left it running. A child that exited is a zombie until reaped, so its PID cannot have been
// reused and a kill cannot hit another process.
#ifndef MODELDIST_TESTS_TESTING_CHILD_PROCESS_H_
#define MODELDIST_TESTS_TESTING_CHILD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace modeldist::testing {

struct SpawnOptions {
  std::string stdout_path;
  // Empty: stderr goes to stdout_path too.
  std::string stderr_path;
  // Append to the output files instead of truncating them (a server log across restarts).
  bool append = false;
  // Variables set (or replaced) in the child's environment, which is otherwise the test's;
  // `unset` names variables the child must not inherit.
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> unset;
};

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() { KillAndReap(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts args[0] (a path) with `args`.
  ::testing::AssertionResult Start(const std::vector<std::string>& args,
                                   const SpawnOptions& options);
  // SIGKILL and reap; returns the wait status (0 when not running).
  int KillAndReap();
  // Sends `signal` to the running child; false when it is not running.
  bool Signal(int signal);
  // Waits up to `timeout` for the child to exit and returns its wait status; on timeout kills
  // it and returns nullopt.
  std::optional<int> Wait(std::chrono::steady_clock::duration timeout);
  // The wait status if the child has exited (and reaps it), nullopt while it runs.
  std::optional<int> Poll();

  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

// "exited with status 3", "killed by signal 9", for failure messages.
std::string DescribeExit(int wait_status);

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_CHILD_PROCESS_H_
