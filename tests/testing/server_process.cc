#include "tests/testing/server_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

namespace modeldist::testing {

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
  std::vector<std::string> args = {binary_,      "--listen",    "127.0.0.1:0",
                                   "--data-dir", data_dir_,     "--admin-token-file",
                                   token_file_,  "--port-file", port_file_};
  if (!model_checks_) args.push_back("--no-model-checks");
  args.insert(args.end(), extra_flags_.begin(), extra_flags_.end());
  ::testing::AssertionResult started =
      process_.Start(args, {.stdout_path = log_path_, .append = true});
  if (!started) return started;

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::optional<int> status = process_.Poll(); status.has_value()) {
      return ::testing::AssertionFailure()
             << "modeldist-server " << DescribeExit(*status) << " before serving; log:\n"
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
  return ::testing::AssertionFailure()
         << "modeldist-server wrote no port file within " << timeout_seconds << " s; log:\n"
         << LogTail();
}

void ServerProcess::Kill() { process_.KillAndReap(); }

::testing::AssertionResult ServerProcess::Stop(int timeout_seconds) {
  if (!running()) return ::testing::AssertionFailure() << "server not running";
  process_.Signal(SIGTERM);
  std::optional<int> status = process_.Wait(std::chrono::seconds(timeout_seconds));
  if (!status.has_value()) {
    return ::testing::AssertionFailure()
           << "modeldist-server ignored SIGTERM for " << timeout_seconds << " s; log:\n"
           << LogTail();
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return ::testing::AssertionFailure()
           << "modeldist-server " << DescribeExit(*status) << " on SIGTERM; log:\n"
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
