// File: server_process.h
//
// Runs the real modeldist-server binary as a child process for end-to-end tests: started on
// 127.0.0.1:0 with a port file, stopped only by its own PID (SIGTERM, or SIGKILL to simulate a
// crash), and always reaped, also when a test fails half way.
#ifndef MODELDIST_TESTS_TESTING_SERVER_PROCESS_H_
#define MODELDIST_TESTS_TESTING_SERVER_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/child_process.h"

namespace modeldist::testing {

class ServerProcess {
 public:
  // `binary` is the modeldist-server executable. Its stdout and stderr are appended to
  // `log_path`; `work_dir` holds the port file.
  ServerProcess(std::string binary, std::string data_dir, std::string token_file,
                std::string work_dir, std::vector<std::string> extra_flags = {});
  // Kills (SIGKILL) and reaps the server if it is still running.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // The harness starts the server with --no-model-checks, since most tests publish opaque
  // bytes labelled GGUF or CoreML zip; tests of the checks themselves call this first.
  void EnableModelChecks() { model_checks_ = true; }

  // Starts the server and waits (up to `timeout_seconds`) until it has written its port
  // file. Fails, with the end of the server log, when it exits or never gets there.
  ::testing::AssertionResult Start(int timeout_seconds = 60);
  // SIGKILL, then reaps: the crash the test is about. No-op when not running.
  void Kill();
  // SIGTERM; succeeds when the server exits with status 0 within `timeout_seconds`
  // (SIGKILL after that).
  ::testing::AssertionResult Stop(int timeout_seconds = 30);

  bool running() const { return process_.running(); }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The last `max_bytes` of the server log, for failure messages.
  std::string LogTail(size_t max_bytes = 4000) const;

 private:
  std::string binary_;
  std::string data_dir_;
  std::string token_file_;
  std::string port_file_;
  std::string log_path_;
  std::vector<std::string> extra_flags_;
  ChildProcess process_;
  int port_ = 0;
  bool model_checks_ = false;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_SERVER_PROCESS_H_
