#include "tests/testing/nginx_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

extern char** environ;

namespace modeldist::testing {
namespace {

bool CanConnect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

NginxServer::NginxServer(const std::string& prefix, bool tls) : prefix_(prefix), tls_(tls) {
  for (const char* dir : {"www", "logs", "tmp"}) {
    EXPECT_TRUE(MakeDirs(prefix_ + "/" + dir).ok()) << dir;
  }
  if (tls_) {
    const std::string command = absl::StrCat(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout ",
        prefix_, "/key.pem -out ", ca_file(), " 2>/dev/null");
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
  }
  // A port free a moment ago may be taken before nginx binds it: try again on new ones.
  for (int attempt = 0; attempt < 5 && port_ == 0; ++attempt) {
    TryStart(FreePort(), tls_ ? FreePort() : 0);
  }
}

NginxServer::~NginxServer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

std::string NginxServer::Url(const std::string& path) const {
  return absl::StrCat("http://127.0.0.1:", port_, path);
}

std::string NginxServer::ErrorLog() const {
  return ReadFileToString(prefix_ + "/logs/error.log").value_or("");
}

void NginxServer::TryStart(int port, int tls_port) {
  const std::string& p = prefix_;
  const std::string http = absl::StrCat(
      "  access_log ", p, "/logs/access.log;\n  default_type application/octet-stream;\n",
      "  server {\n    listen 127.0.0.1:", port, ";\n    root ", p,
      "/www;\n    location /norange/ { alias ", p, "/www/; max_ranges 0; }\n  }\n",
      tls_port == 0 ? ""
                    : absl::StrCat("  server {\n    listen 127.0.0.1:", tls_port,
                                   " ssl;\n    root ", p, "/www;\n    ssl_certificate ", ca_file(),
                                   ";\n    ssl_certificate_key ", p, "/key.pem;\n  }\n"));
  std::vector<int> ports = {port};
  if (tls_port != 0) ports.push_back(tls_port);
  const pid_t pid = SpawnNginx(p, http, ports);
  if (pid <= 0) return;
  pid_ = pid;
  port_ = port;
  tls_port_ = tls_port;
}

pid_t SpawnNginx(const std::string& prefix, const std::string& http_block,
                 const std::vector<int>& ports) {
  const std::string& p = prefix;
  const std::string config = absl::StrCat(
      ::geteuid() == 0 ? "user root;\n" : "", "worker_processes 1;\ndaemon off;\npid ", p,
      "/nginx.pid;\nerror_log ", p, "/logs/error.log warn;\nevents { worker_connections 256; }\n",
      "http {\n  client_body_temp_path ", p, "/tmp/body;\n  proxy_temp_path ", p,
      "/tmp/proxy;\n  fastcgi_temp_path ", p, "/tmp/fcgi;\n  uwsgi_temp_path ", p,
      "/tmp/uwsgi;\n  scgi_temp_path ", p, "/tmp/scgi;\n", http_block, "}\n");
  if (!WriteFileAtomically(p + "/nginx.conf", config, 0644).ok()) return -1;
  const std::string conf = p + "/nginx.conf";
  const std::string dir = p + "/";
  const std::string log = p + "/logs/error.log";
  std::vector<const char*> argv = {"nginx",      "-p", dir.c_str(), "-c",
                                   conf.c_str(), "-e", log.c_str(), nullptr};
  pid_t pid = 0;
  if (::posix_spawn(&pid, "/usr/sbin/nginx", nullptr, nullptr,
                    const_cast<char* const*>(argv.data()), environ) != 0) {
    return -1;
  }
  // Ready once the ports answer; if nginx exits first, a bind failed (a port taken).
  for (int i = 0; i < 100; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return -1;
    bool all = true;
    for (const int port : ports) all = all && CanConnect(port);
    if (all) return pid;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

}  // namespace modeldist::testing
