#include "tests/testing/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

extern char** environ;

namespace modeldist::testing {
namespace {

// Waits for `pid` until `deadline`; returns true (and the status) once it was reaped.
bool WaitUntil(pid_t pid, std::chrono::steady_clock::time_point deadline, int* status) {
  while (true) {
    pid_t r = ::waitpid(pid, status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped (status " + std::to_string(status) + ")";
}

}  // namespace

ServerProcess::ServerProcess(std::string binary, std::string data_dir, std::string token_file,
                             std::string work_dir, std::vector<std::string> extra_flags)
    : binary_(std::move(binary)),
      data_dir_(std::move(data_dir)),
      token_file_(std::move(token_file)),
      port_file_(work_dir + "/server.port"),
      log_path_(work_dir + "/server.log"),
      extra_flags_(std::move(extra_flags)) {}

ServerProcess::~ServerProcess() { Kill(); }

::testing::AssertionResult ServerProcess::Start(int timeout_seconds) {
  if (running()) return ::testing::AssertionFailure() << "server already running";
  // A port file left by the previous run would make us talk to a dead port.
  ::unlink(port_file_.c_str());
  port_ = 0;
  std::vector<std::string> args = {binary_,         "--listen",           "127.0.0.1:0",
                                   "--data-dir",    data_dir_,            "--admin-token-file",
                                   token_file_,     "--port-file",        port_file_};
  args.insert(args.end(), extra_flags_.begin(), extra_flags_.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // posix_spawn, not fork: the test process runs gRPC threads, and only exec is safe in a
  // forked child of a threaded process.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  int err = ::posix_spawn(&pid, binary_.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    return ::testing::AssertionFailure()
           << "cannot start " << binary_ << ": " << strerror(err)
           << " (build the modeldist-server target first)";
  }
  pid_ = pid;

  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return ::testing::AssertionFailure()
             << "modeldist-server " << DescribeExit(status) << " before serving; log:\n"
             << LogTail();
    }
    std::ifstream in(port_file_);
    int port = 0;
    // The server writes the file atomically, so a readable number is the whole number.
    if (in >> port && port > 0) {
      port_ = port;
      return ::testing::AssertionSuccess();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Kill();
  return ::testing::AssertionFailure() << "modeldist-server wrote no port file within "
                                       << timeout_seconds << " s; log:\n"
                                       << LogTail();
}

void ServerProcess::Kill() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

::testing::AssertionResult ServerProcess::Stop(int timeout_seconds) {
  if (!running()) return ::testing::AssertionFailure() << "server not running";
  ::kill(pid_, SIGTERM);
  int status = 0;
  if (!WaitUntil(pid_, std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds),
                 &status)) {
    Kill();
    return ::testing::AssertionFailure()
           << "modeldist-server ignored SIGTERM for " << timeout_seconds << " s; log:\n"
           << LogTail();
  }
  pid_ = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return ::testing::AssertionFailure()
           << "modeldist-server " << DescribeExit(status) << " on SIGTERM; log:\n"
           << LogTail();
  }
  return ::testing::AssertionSuccess();
}

std::string ServerProcess::LogTail(size_t max_bytes) const {
  std::ifstream in(log_path_, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string log = buffer.str();
  return log.size() > max_bytes ? "..." + log.substr(log.size() - max_bytes) : log;
}

}  // namespace modeldist::testing
