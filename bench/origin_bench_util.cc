#include "bench/origin_bench_util.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::bench {
namespace {

using ::modeldist::testing::SwiftS3Server;

// Swift's s3api wants x-amz-content-sha256 on every request, which curl 7.88 does not send.
// The peer's PUT sends its body unsigned, as the server's multipart parts do (the server's
// single PUT signs the digest, which makes the store hash the bytes as well).
constexpr char kUnsignedPayload[] = "-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD'";

// SwiftS3Server's children are not bench children (it starts them with posix_spawn and stops
// them in its destructor, which a signal skips): their PIDs are kept here so that SIGINT or
// SIGTERM stops them too before the reaper's handler stops the rest and exits.
constexpr int kMaxSwiftPids = 16;
std::atomic<pid_t> g_swift_pids[kMaxSwiftPids];
struct sigaction g_previous[3];
constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};

void OnSignalStopSwift(int sig) {
  for (auto& slot : g_swift_pids) {
    const pid_t pid = slot.load();
    if (pid > 0) ::kill(pid, SIGKILL);
  }
  for (int i = 0; i < 3; ++i) {
    if (kSignals[i] == sig && g_previous[i].sa_handler != SIG_DFL &&
        g_previous[i].sa_handler != SIG_IGN) {
      g_previous[i].sa_handler(sig);
    }
  }
  ::_exit(128 + sig);
}

// The direct children of this process now.
std::vector<pid_t> ChildPids() {
  std::vector<pid_t> out;
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ignored)) {
    const std::string name = entry.path().filename().string();
    int pid = 0;
    if (!absl::SimpleAtoi(name, &pid)) continue;
    auto stat = ReadFileToString(entry.path().string() + "/stat");
    if (!stat.ok()) continue;
    const size_t paren = stat->rfind(')');
    if (paren == std::string::npos) continue;
    std::vector<std::string> fields = absl::StrSplit(stat->substr(paren + 2), ' ');
    int ppid = 0;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &ppid) && ppid == ::getpid()) {
      out.push_back(pid);
    }
  }
  return out;
}

// Started before any other child, so that the children present right after its start are

}  // namespace

absl::Status Swift::Start(const std::string& scratch_parent) {
  // The children this process has right after the start are taken to be Swift's.
  if (!ChildPids().empty()) return absl::InternalError("children running before Swift starts");
  // SwiftS3Server keeps its data in a ScratchDir under $TMPDIR: on the disk measured.
  ::setenv("TMPDIR", scratch_parent.c_str(), 1);
  server_ = std::make_unique<SwiftS3Server>();
  ::testing::AssertionResult started = server_->Start(kSwiftBucket);
  if (!started) return absl::UnavailableError(absl::StrCat("Swift: ", started.message()));
  pids_ = ChildPids();
  for (size_t i = 0; i < pids_.size() && i < kMaxSwiftPids; ++i) g_swift_pids[i] = pids_[i];
  struct sigaction action {};
  action.sa_handler = OnSignalStopSwift;
  sigemptyset(&action.sa_mask);
  for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &action, &g_previous[i]);
  return absl::OkStatus();
}

absl::Status Swift::StartTlsFront(const std::string& prefix) {
  for (const char* sub : {"", "/logs", "/tmp"}) MD_RETURN_IF_ERROR(MakeDirs(prefix + sub));
  const std::string cert = prefix + "/cert.pem";
  const std::string key = prefix + "/key.pem";
  MD_RETURN_IF_ERROR(
      TimeShell(
          absl::StrCat("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                       "-nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
                       " -keyout ",
                       key, " -out ", cert, " 2>/dev/null"))
          .status());
  const std::string error_log = prefix + "/logs/error.log";
  auto launch = [&](int port) -> absl::StatusOr<pid_t> {
    const std::string conf = absl::StrFormat(
        "worker_processes 1;\n"
        "daemon off;\n"
        "pid %s/nginx.pid;\n"
        "error_log %s warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "  access_log off;\n"
        "  client_body_temp_path %s/tmp/body; proxy_temp_path %s/tmp/proxy;\n"
        "  fastcgi_temp_path %s/tmp/fcgi; uwsgi_temp_path %s/tmp/uwsgi;\n"
        "  scgi_temp_path %s/tmp/scgi;\n"
        "  server {\n"
        "    listen 127.0.0.1:%d ssl;\n"
        "    ssl_certificate %s; ssl_certificate_key %s;\n"
        "    client_max_body_size 0;\n"
        "    proxy_request_buffering off; proxy_buffering off; proxy_http_version 1.1;\n"
        "    location / {\n"
        "      proxy_pass http://127.0.0.1:%d;\n"
        "      proxy_set_header Host $http_host;\n"  // the host the request was signed for
        "    }\n"
        "  }\n"
        "}\n",
        prefix, error_log, prefix, prefix, prefix, prefix, prefix, port, cert, key,
        server_->port());
    MD_RETURN_IF_ERROR(WriteFileAtomically(prefix + "/nginx.conf", conf, 0644));
    return Spawn(
        {"/usr/sbin/nginx", "-p", prefix + "/", "-e", error_log, "-c", prefix + "/nginx.conf"},
        prefix + "/logs/stderr.log");
  };
  // Ours once a request verifies against this run's fresh certificate and reaches Swift.
  auto ready = [&](const ServerProcess& front) -> absl::StatusOr<bool> {
    const std::string out = prefix + "/probe.txt";
    const bool answered =
        TimeShell(absl::StrCat("curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert ",
                               cert, " https://", front.address, "/"),
                  out)
            .ok();
    return answered && ReadFileToString(out).value_or("000") != "000";
  };
  MD_ASSIGN_OR_RETURN(ServerProcess front,
                      StartOnFreePort("nginx (TLS front)", error_log, 5000, launch, ready));
  tls_front_ = front.pid;
  tls_port_ = front.port;
  ca_file_ = cert;
  return absl::OkStatus();
}

std::string Swift::endpoint() const {
  return tls_port_ == 0 ? server_->endpoint() : absl::StrCat("https://127.0.0.1:", tls_port_);
}

Swift::~Swift() {
  if (tls_front_ > 0) StopChild(tls_front_);
  server_.reset();
  for (auto& slot : g_swift_pids) slot.store(0);
}

double Swift::CpuSeconds() const {
  double total = 0;
  for (pid_t pid : pids_) total += ProcessCpuSeconds(pid);
  return total;
}

absl::Status Swift::WriteNetrc(const std::string& netrc) {
  netrc_ = netrc;
  return WriteFileAtomically(netrc,
                             absl::StrCat("machine 127.0.0.1 login ", SwiftS3Server::kAccessKey,
                                          " password ", SwiftS3Server::kSecret, "\n"),
                             0600);
}

std::string Swift::Curl(const std::string& args, const std::string& key) const {
  return absl::StrCat("curl -sS --fail-with-body --aws-sigv4 'aws:amz:", SwiftS3Server::kRegion,
                      ":s3' --netrc-file ", netrc_, " ", kUnsignedPayload, " ",
                      ca_file_.empty() ? "" : absl::StrCat("--cacert ", ca_file_, " "), args, " ",
                      endpoint(), "/", kSwiftBucket, "/", key);
}

absl::StatusOr<double> S3Request(const Swift& swift, const std::string& args,
                                 const std::string& key, const std::string& body) {
  ::unlink(body.c_str());
  absl::StatusOr<double> seconds = TimeShell(swift.Curl(absl::StrCat("-o ", body, " ", args), key));
  if (!seconds.ok()) {
    return absl::Status(seconds.status().code(),
                        absl::StrCat(seconds.status().message(), ": ",
                                     ReadFileToString(body).value_or("(no body)")));
  }
  return seconds;
}

absl::Status CheckObject(const Swift& swift, const std::string& key, int64_t size,
                         const std::string& scratch) {
  const std::string headers = scratch + "/head.txt";
  MD_RETURN_IF_ERROR(TimeShell(swift.Curl("-I", key), headers).status());
  MD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(headers));
  if (!absl::StrContains(absl::AsciiStrToLower(text), absl::StrCat("content-length: ", size))) {
    return absl::DataLossError(
        absl::StrCat("Swift's object ", key, " is not ", size, " bytes long: ", text));
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerProcess> StartServerWithOrigins(const std::string& server_bin,
                                                     const std::string& data_dir,
                                                     const std::string& token_file,
                                                     const std::string& origins,
                                                     const std::string& log) {
  const std::string port_file = data_dir + ".port";
  ::unlink(port_file.c_str());
  ServerProcess server;
  MD_ASSIGN_OR_RETURN(server.pid, Spawn({server_bin, "--listen", "127.0.0.1:0", "--data-dir",
                                         data_dir, "--admin-token-file", token_file, "--port-file",
                                         port_file, "--origins", origins, "--no-model-checks"},
                                        log));
  for (int waited = 0; waited < 30000; waited += 20) {
    if (!ChildAlive(server.pid)) {
      return absl::UnavailableError(absl::StrCat("modeldist-server exited at start; see ", log));
    }
    auto text = ReadFileToString(port_file);
    int port = 0;
    if (text.ok() && absl::SimpleAtoi(*text, &port) && port > 0) {
      server.port = port;
      server.address = absl::StrCat("127.0.0.1:", port);
      return server;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  StopChild(server.pid);
  return absl::DeadlineExceededError("modeldist-server did not write its port file in 30 s");
}

absl::StatusOr<std::string> SwiftOriginEntry(const std::string& name, const std::string& dir,
                                             const Swift& swift, const std::string& key_prefix,
                                             int64_t part_size, const std::string& extra) {
  // Secrets come from files the owner only can read (the server refuses others).
  MD_RETURN_IF_ERROR(WriteFileAtomically(dir + "/s3-key-id", SwiftS3Server::kAccessKey, 0600));
  MD_RETURN_IF_ERROR(WriteFileAtomically(dir + "/s3-secret", SwiftS3Server::kSecret, 0600));
  return absl::StrFormat(
      "origins {\n"
      "  name: \"%s\"\n"
      "  s3 {\n"
      "    endpoint: \"%s\"\n"
      "    region: \"%s\"\n"
      "    bucket: \"%s\"\n"
      "    access_key_id { file: \"%s/s3-key-id\" }\n"
      "    secret_access_key { file: \"%s/s3-secret\" }\n"
      "    part_size_bytes: %d\n"
      "%s"
      "  }\n"
      "  key_prefix: \"%s\"\n"
      "  replicate: true\n"
      "%s"
      "}\n",
      name, swift.endpoint(), SwiftS3Server::kRegion, kSwiftBucket, dir, dir, part_size,
      swift.ca_file().empty() ? "" : absl::StrCat("    ca_file: \"", swift.ca_file(), "\"\n"),
      key_prefix, extra);
}

grpc::Status GetVersion(v1::RegistryService::Stub& registry, const std::string& token,
                        const std::string& name, v1::Version* version) {
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  v1::GetVersionRequest request;
  request.set_name(name);
  return registry.GetVersion(&context, request, version);
}

absl::Status WaitConfirmed(v1::RegistryService::Stub& registry, const std::string& token,
                           const std::string& version_name, const std::string& origin,
                           absl::Duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoSeconds(timeout);
  std::string last = "no replica row yet";
  while (std::chrono::steady_clock::now() < deadline) {
    v1::Version version;
    grpc::Status s = GetVersion(registry, token, version_name, &version);
    if (!s.ok()) return absl::UnavailableError(absl::StrCat("GetVersion: ", s.error_message()));
    for (const v1::Artifact& artifact : version.artifacts()) {
      for (const v1::Replica& replica : artifact.replicas()) {
        if (replica.origin() != origin) continue;
        if (replica.state() == v1::Replica::CONFIRMED) return absl::OkStatus();
        if (replica.state() == v1::Replica::FAILING) {
          return absl::UnavailableError(
              absl::StrCat("replication to ", origin, " failed: ", replica.last_error()));
        }
        last = absl::StrCat(v1::Replica::State_Name(replica.state()), " ", replica.bytes_done(),
                            " bytes");
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the replica of ", version_name, " is not CONFIRMED: ", last));
}

}  // namespace modeldist::bench
