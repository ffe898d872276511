#include "tests/testing/varnish_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

constexpr char kReadyPath[] = "/.varnish-server/ready";

// True once 127.0.0.1:<port> answers kReadyPath with 200 (a synthetic answer of the VCL, which
// never reaches the origin): the manager binds the port before the child that serves it is up,
// so a connection alone does not tell that varnishd is ready.
bool AnswersReady(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval timeout{};
  timeout.tv_sec = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = absl::StrCat("GET ", kReadyPath,
                                             " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                             "Connection: close\r\n\r\n");
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buf[64];
      ssize_t n;
      while (response.size() < 12 && (n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
        response.append(buf, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  return absl::StartsWith(response, "HTTP/1.1 200");
}

// Runs `args` (args[0] a path) for at most 30 s, and puts what it writes to stdout (and to
// stderr with `with_stderr`) in *out. Returns its exit code, -1 when it could not run or was
// killed.
int RunAndCapture(const std::vector<std::string>& args, bool with_stderr, std::string* out) {
  ScratchDir dir;
  SpawnOptions options;
  options.stdout_path = dir.Join("out");
  options.stderr_path = with_stderr ? "" : "/dev/null";  // "": with stdout
  ChildProcess child;
  std::optional<int> status;
  if (child.Start(args, options)) status = child.Wait(std::chrono::seconds(30));
  *out = ReadFileToString(options.stdout_path).value_or("");
  return status.has_value() && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

// SIGTERM (varnishd's manager stops its child, then exits), then SIGKILL if it has not exited
// after 10 s; always reaped.
void Stop(ChildProcess& varnishd) {
  varnishd.Signal(SIGTERM);
  varnishd.Wait(std::chrono::seconds(10));
}

}  // namespace

VarnishServer::VarnishServer(const std::string& prefix, int origin_port)
    // Absolute: the manager changes into its working directory before it reads the VCL.
    : prefix_(std::filesystem::absolute(prefix).string()), origin_port_(origin_port) {
  EXPECT_TRUE(MakeDirs(prefix_).ok()) << prefix_;
  const std::string vcl = absl::StrCat(
      "vcl 4.1;\n"
      "\n"
      "# Written by VarnishServer (tests/testing/varnish_server.cc). The builtin VCL runs after\n"
      "# these subroutines: on a miss it fetches the whole object with a plain GET (no Range,\n"
      "# If-Range, If-None-Match or If-Modified-Since; HEAD becomes GET) and answers those\n"
      "# from the object.\n"
      "backend origin {\n"
      "  .host = \"127.0.0.1\";\n"
      "  .port = \"",
      origin_port_,
      "\";\n"
      "}\n"
      "\n"
      "sub vcl_recv {\n"
      "  # The harness's readiness probe, answered without the origin.\n"
      "  if (req.url == \"",
      kReadyPath,
      "\") {\n"
      "    return (synth(200, \"ready\"));\n"
      "  }\n"
      "}\n"
      "\n"
      "sub vcl_backend_response {\n"
      "  # Send the bytes on while they arrive (the default, said out loud); nothing stripped.\n"
      "  set beresp.do_stream = true;\n"
      "}\n"
      "\n"
      "sub vcl_deliver {\n"
      "  if (obj.hits > 0) {\n"
      "    set resp.http.X-Cache = \"HIT\";\n"
      "  } else {\n"
      "    set resp.http.X-Cache = \"MISS\";\n"
      "  }\n"
      "}\n");
  EXPECT_TRUE(WriteFileAtomically(prefix_ + "/varnish.vcl", vcl, 0644).ok());
  // A port free a moment ago may be taken before varnishd binds it: try again on new ones.
  for (int attempt = 0; attempt < 5 && port_ == 0; ++attempt) TryStart(FreePort());
}

VarnishServer::~VarnishServer() { Stop(varnishd_); }

std::string VarnishServer::Url(const std::string& path) const {
  return absl::StrCat("http://127.0.0.1:", port_, path);
}

std::string VarnishServer::Log() const {
  std::string log = absl::StrCat("varnishd output (", prefix_, "/varnishd.log):\n",
                                 ReadFileToString(prefix_ + "/varnishd.log").value_or(""));
  if (varnishd_.running()) {
    std::string requests;
    RunAndCapture({"/usr/bin/varnishlog", "-n", workdir(), "-t", "1", "-d", "-g", "request"},
                  /*with_stderr=*/true, &requests);
    constexpr size_t kMax = 64 * 1024;
    if (requests.size() > kMax) {
      requests = absl::StrCat("[... the older ", requests.size() - kMax, " bytes left out]\n",
                              requests.substr(requests.size() - kMax));
    }
    absl::StrAppend(&log, "varnishlog -d -g request:\n", requests);
  }
  return log;
}

int64_t VarnishServer::Counter(const std::string& name) const {
  if (!varnishd_.running()) return -1;
  std::string out;
  if (RunAndCapture({"/usr/bin/varnishstat", "-n", workdir(), "-t", "1", "-1", "-I", name},
                    /*with_stderr=*/false, &out) != 0) {
    return -1;
  }
  // Lines of "<name> <value> <rate per second> <description>".
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string field, value;
    int64_t parsed = 0;
    if (fields >> field >> value && field == name && absl::SimpleAtoi(value, &parsed)) {
      return parsed;
    }
  }
  return -1;
}

void VarnishServer::TryStart(int port) {
  if (port == 0) return;
  const std::string workdir = this->workdir();
  const std::string listen = absl::StrCat("127.0.0.1:", port);
  const std::string vcl = prefix_ + "/varnish.vcl";
  SpawnOptions options;
  options.stdout_path = prefix_ + "/varnishd.log";  // stderr too
  options.append = true;
  if (!varnishd_.Start(
          {"/usr/sbin/varnishd",
           "-F",  // the manager stays in the foreground: its PID is ours
           "-n", workdir, "-a", listen, "-T", "none", "-f", vcl, "-s", "malloc,256m", "-j", "none"},
          options)) {
    return;
  }
  // Ready once the child answers; if varnishd exits first, the bind failed (port taken) or the
  // VCL did not compile (see Log()). Compiling the VCL takes a C compiler run.
  for (int i = 0; i < 300; ++i) {
    if (varnishd_.Poll().has_value()) return;
    if (AnswersReady(port)) {
      port_ = port;
      return;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  Stop(varnishd_);
}

}  // namespace modeldist::testing
