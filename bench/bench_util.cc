#include "bench/bench_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/registry.grpc.pb.h"

namespace modeldist::bench {
namespace {

// PIDs of running children. A fixed array of atomics because the signal handler reads it.
constexpr int kMaxChildren = 64;
std::atomic<pid_t> g_children[kMaxChildren];

void Track(pid_t pid) {
  for (auto& slot : g_children) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pid)) return;
  }
}

void Untrack(pid_t pid) {
  for (auto& slot : g_children) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

void OnFatalSignal(int sig) {
  // Only async-signal-safe calls here: kill and _exit. The children are servers that exit
  // promptly on SIGTERM; PR_SET_PDEATHSIG covers them too once we are gone.
  for (auto& slot : g_children) {
    pid_t pid = slot.load();
    if (pid > 0) ::kill(pid, SIGTERM);
  }
  ::_exit(128 + sig);
}

void StopAllChildren() {
  for (auto& slot : g_children) {
    pid_t pid = slot.load();
    if (pid > 0) StopChild(pid);
  }
}

cpu_set_t ToCpuSet(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) CPU_SET(cpu, &set);
  return set;
}

// `cpus`: the CPUs the child may use (empty = inherit the driver's).
absl::StatusOr<pid_t> SpawnImpl(const std::vector<std::string>& argv,
                                const std::string& stdout_path, const std::string& stderr_path,
                                bool append, const std::vector<int>& cpus = {}) {
  // Everything the child needs is prepared before fork: after fork only async-signal-safe
  // calls are allowed, since gRPC threads may hold locks.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
  int out_fd = -1;
  int err_fd = -1;
  if (!stdout_path.empty()) {
    out_fd = ::open(stdout_path.c_str(), flags, 0644);
    if (out_fd < 0) return ErrnoStatus(errno, stdout_path);
  }
  if (!stderr_path.empty()) {
    err_fd = stderr_path == stdout_path ? out_fd : ::open(stderr_path.c_str(), flags, 0644);
    if (err_fd < 0) return ErrnoStatus(errno, stderr_path);
  }
  const cpu_set_t cpu_set = ToCpuSet(cpus);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus(errno, "fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    if (out_fd >= 0) ::dup2(out_fd, STDOUT_FILENO);
    if (err_fd >= 0) ::dup2(err_fd, STDERR_FILENO);
    if (!cpus.empty() && ::sched_setaffinity(0, sizeof cpu_set, &cpu_set) != 0) ::_exit(126);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  if (out_fd >= 0) ::close(out_fd);
  if (err_fd >= 0 && err_fd != out_fd) ::close(err_fd);
  Track(pid);
  return pid;
}

// Waits for `pid`; returns its exit code (128+signal if killed).
int WaitChild(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  Untrack(pid);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int PickFreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string RandomToken() {
  unsigned char bytes[16];
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  urandom.read(reinterpret_cast<char*>(bytes), sizeof bytes);
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
}

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

}  // namespace

void InstallChildReaper() {
  struct sigaction action {};
  action.sa_handler = OnFatalSignal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGHUP, &action, nullptr);
  std::atexit(StopAllChildren);
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  return SpawnImpl(argv, log_path, log_path, /*append=*/true);
}

void StopChild(pid_t pid, int grace_ms) {
  if (pid <= 0) return;
  if (::kill(pid, SIGTERM) != 0 && errno == ESRCH) {
    Untrack(pid);
    return;
  }
  for (int waited = 0; waited < grace_ms; waited += 10) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
      Untrack(pid);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  WaitChild(pid);
}

bool ChildAlive(pid_t pid) {
  int status = 0;
  pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == 0) return true;
  Untrack(pid);
  return false;
}

absl::StatusOr<Placement> SplitPlacement() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return ErrnoStatus(errno, "sched_getaffinity");
  std::vector<int> allowed;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) allowed.push_back(cpu);
  }
  if (allowed.size() < 2) {
    return absl::FailedPreconditionError(
        absl::StrCat("a split placement needs 2 CPUs and this process may use ", allowed.size(),
                     "; use --placement shared"));
  }
  Placement placement;
  placement.server_cpus = {allowed.back()};
  placement.driver_cpus.assign(allowed.begin(), allowed.end() - 1);
  return placement;
}

absl::Status PinThisProcess(const std::vector<int>& cpus) {
  if (cpus.empty()) return absl::OkStatus();
  const cpu_set_t set = ToCpuSet(cpus);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) {
    return ErrnoStatus(errno, absl::StrCat("sched_setaffinity ", CpuListText(cpus)));
  }
  return absl::OkStatus();
}

std::string CpuListText(const std::vector<int>& cpus) {
  if (cpus.empty()) return "any";
  std::string text;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    absl::StrAppend(&text, text.empty() ? "" : ",", cpus[i]);
    if (j > i) absl::StrAppend(&text, "-", cpus[j]);
    i = j + 1;
  }
  return text;
}

absl::StatusOr<double> TimeShell(const std::string& command, const std::string& stdout_path) {
  auto start = std::chrono::steady_clock::now();
  MD_ASSIGN_OR_RETURN(pid_t pid, SpawnImpl({"/bin/bash", "-c", command},
                                           stdout_path.empty() ? "/dev/null" : stdout_path, "",
                                           /*append=*/false));
  int code = WaitChild(pid);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (code != 0) {
    return absl::InternalError(absl::StrCat("`", command, "` exited with ", code));
  }
  return seconds;
}

absl::StatusOr<ServerProcess> StartOnFreePort(
    const std::string& what, const std::string& log, int wait_ms,
    const std::function<absl::StatusOr<pid_t>(int port)>& launch,
    const std::function<absl::StatusOr<bool>(const ServerProcess&)>& ready) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    ServerProcess server;
    server.port = PickFreeLoopbackPort();
    if (server.port == 0) return absl::UnavailableError("no free loopback port");
    server.address = absl::StrCat("127.0.0.1:", server.port);
    MD_ASSIGN_OR_RETURN(server.pid, launch(server.port));
    for (int waited = 0; waited < wait_ms && ChildAlive(server.pid); waited += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      absl::StatusOr<bool> up = ready(server);
      if (!up.ok()) break;
      if (*up) return server;
    }
    StopChild(server.pid);
  }
  return absl::UnavailableError(absl::StrCat(what, " did not come up on a free port; see ", log));
}

absl::StatusOr<ServerProcess> StartModeldistServer(const std::string& binary,
                                                   const std::string& data_dir,
                                                   const std::string& token_file,
                                                   int64_t chunk_size, const std::string& log_path,
                                                   const std::vector<int>& cpus,
                                                   const ModeldistExtras& extras) {
  const std::string port_file = data_dir + ".port";
  const std::string http_port_file = data_dir + ".http-port";
  ::unlink(port_file.c_str());
  ::unlink(http_port_file.c_str());
  // --no-model-checks: the benches publish random bytes labelled GGUF.
  std::vector<std::string> argv = {
      binary,        "--listen",           "127.0.0.1:0",  "--data-dir",
      data_dir,      "--admin-token-file", token_file,     "--port-file",
      port_file,     "--no-model-checks",  "--chunk-size", absl::StrCat(chunk_size),
      "--log-level", extras.log_level};
  if (!extras.log_file.empty()) argv.insert(argv.end(), {"--log-file", extras.log_file});
  if (extras.http) {
    argv.insert(argv.end(), {"--http-listen", "127.0.0.1:0", "--http-port-file", http_port_file});
  }
  ServerProcess server;
  MD_ASSIGN_OR_RETURN(server.pid, SpawnImpl(argv, log_path, log_path, /*append=*/true, cpus));
  auto read_port = [](const std::string& path) {
    absl::StatusOr<std::string> text = ReadFileToString(path);
    return text.ok() ? std::atoi(text->c_str()) : 0;
  };
  // The gRPC port file is written first, then the HTTP one.
  for (int waited = 0; waited < 30000; waited += 20) {
    if (!ChildAlive(server.pid)) {
      return absl::UnavailableError(
          absl::StrCat("modeldist-server exited at start; see ", log_path));
    }
    server.port = read_port(port_file);
    const int http_port = extras.http ? read_port(http_port_file) : 0;
    if (server.port > 0 && (!extras.http || http_port > 0)) {
      server.address = absl::StrCat("127.0.0.1:", server.port);
      if (extras.http) server.http_address = absl::StrCat("127.0.0.1:", http_port);
      return server;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  StopChild(server.pid);
  return absl::DeadlineExceededError("modeldist-server did not write its port files in 30 s");
}

absl::StatusOr<ServerProcess> StartNginx(const std::string& prefix, const std::string& root,
                                         int workers, const std::vector<int>& cpus,
                                         const NginxExtras& extras) {
  for (const char* sub : {"", "/logs", "/tmp"}) {
    MD_RETURN_IF_ERROR(MakeDirs(prefix + sub));
  }
  const std::string token = RandomToken();
  const std::string probe = ".probe-" + token;
  MD_RETURN_IF_ERROR(WriteFileAtomically(root + "/" + probe, token, 0644));
  const std::string error_log = prefix + "/logs/error.log";
  auto launch = [&](int port) -> absl::StatusOr<pid_t> {
    const std::string conf = absl::StrFormat(
        "worker_processes %d;\n"
        "daemon off;\n"
        "pid %s/nginx.pid;\n"
        "error_log %s warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "  access_log %s;\n"
        "  client_body_temp_path %s/tmp/body; proxy_temp_path %s/tmp/proxy;\n"
        "  fastcgi_temp_path %s/tmp/fcgi; uwsgi_temp_path %s/tmp/uwsgi;\n"
        "  scgi_temp_path %s/tmp/scgi;\n"
        "  sendfile on; tcp_nopush on; tcp_nodelay on;\n"
        "  keepalive_requests 1000000; keepalive_timeout 60s;\n"
        "  default_type application/octet-stream;\n"
        "  types { application/json json; }\n"
        "%s"
        "  server { listen 127.0.0.1:%d; root %s;\n%s  }\n"
        "}\n",
        workers, prefix, error_log, extras.access_log, prefix, prefix, prefix, prefix, prefix,
        extras.http, port, root, extras.server);
    MD_RETURN_IF_ERROR(WriteFileAtomically(prefix + "/nginx.conf", conf, 0644));
    const std::string stderr_log = prefix + "/logs/stderr.log";
    return SpawnImpl(
        {"/usr/sbin/nginx", "-p", prefix + "/", "-e", error_log, "-c", prefix + "/nginx.conf"},
        stderr_log, stderr_log, /*append=*/true, cpus);
  };
  // Up once it serves the token file that only this instance can serve.
  const std::string got = prefix + "/probe.out";
  auto ready = [&](const ServerProcess& server) -> absl::StatusOr<bool> {
    ::unlink(got.c_str());
    if (!TimeShell(absl::StrCat("curl -sf --max-time 2 http://", server.address, "/", probe), got)
             .ok()) {
      return false;
    }
    absl::StatusOr<std::string> text = ReadFileToString(got);
    if (text.ok() && *text == token) return true;
    return absl::AlreadyExistsError("another server answers on the port");
  };
  return StartOnFreePort("nginx", error_log, 5000, launch, ready);
}

absl::StatusOr<FileDigest> MakeIncompressibleFile(const std::string& path, int64_t size,
                                                  bool fresh) {
  unsigned char key[16] = {'m', 'o', 'd', 'e', 'l', 'd', 'i', 's',
                           't', '-', 'b', 'e', 'n', 'c', 'h', '!'};
  if (fresh && RAND_bytes(key, sizeof key) != 1) {
    return MakeError(absl::StatusCode::kInternal, "RAND_FAILED", "RAND_bytes failed");
  }
  const unsigned char iv[16] = {};
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, path);
  EVP_CIPHER_CTX* cipher = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(cipher, EVP_aes_128_ctr(), nullptr, key, iv);
  constexpr size_t kBlock = 4 << 20;
  std::vector<unsigned char> zeros(kBlock, 0);
  std::vector<unsigned char> out(kBlock);
  Sha256 hash;
  absl::Status status;
  for (int64_t done = 0; done < size && status.ok();) {
    int n = static_cast<int>(std::min<int64_t>(kBlock, size - done));
    int produced = 0;
    EVP_EncryptUpdate(cipher, out.data(), &produced, zeros.data(), n);
    hash.Update(out.data(), static_cast<size_t>(produced));
    status = WriteAll(fd, out.data(), static_cast<size_t>(produced));
    done += produced;
  }
  EVP_CIPHER_CTX_free(cipher);
  ::close(fd);
  MD_RETURN_IF_ERROR(status);
  return FileDigest{hash.FinishHex(), size};
}

absl::StatusOr<ChildRun> RunMeasured(const std::vector<std::string>& argv,
                                     const std::string& log_path) {
  const auto start = std::chrono::steady_clock::now();
  MD_ASSIGN_OR_RETURN(pid_t pid, Spawn(argv, log_path));
  std::atomic<bool> done{false};
  std::atomic<int64_t> hwm{-1};
  std::thread poller([&] {
    while (!done.load()) {
      const int64_t kib = ProcStatusKib(pid, "VmHWM");
      if (kib > hwm.load()) hwm.store(kib);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
  }
  ChildRun run;
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  done.store(true);
  poller.join();
  run.hwm_kib = hwm.load();
  rusage usage{};
  while (::wait4(pid, &run.wait_status, 0, &usage) < 0 && errno == EINTR) {
  }
  (void)ChildAlive(pid);  // reaped: this only drops it from the reaper's list
  run.maxrss_kib = usage.ru_maxrss;
  run.cpu_seconds = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
                    (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  return run;
}

absl::Status WriteTrustRoot(const std::string& address, const std::string& path) {
  auto stub = v1::ManifestService::NewStub(Connect(address));
  v1::GetTrustRootRequest request;
  request.set_version(1);
  v1::SignedTrustRoot root;
  grpc::ClientContext context;
  grpc::Status s = stub->GetTrustRoot(&context, request, &root);
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("GetTrustRoot: ", s.error_message()));
  return WriteFileAtomically(path, root.SerializeAsString(), 0644);
}

absl::StatusOr<ChildRun> RunAgentSync(const std::string& agent_bin, const std::string& server,
                                      const std::string& tier, const std::string& root_file,
                                      const std::string& dir, const std::string& json_path,
                                      int64_t size) {
  RemoveTree(dir);
  ::unlink(json_path.c_str());
  ::sync();  // no write-back left over from an earlier run lands in this one
  const std::vector<std::string> argv = {
      agent_bin,      "sync",    "--server",   server,  "--tier", tier,     "--dir", dir,
      "--trust-root", root_file, "--platform", "linux", "--arch", "x86_64", "--json"};
  // stdout (the JSON) and stderr (empty unless it fails) both go to `json_path`.
  MD_ASSIGN_OR_RETURN(ChildRun run, RunMeasured(argv, json_path));
  if (!WIFEXITED(run.wait_status) || WEXITSTATUS(run.wait_status) != 0) {
    auto output = ReadFileToString(json_path);
    return absl::InternalError(absl::StrCat("modeldist-agent sync failed (wait status ",
                                            run.wait_status, "): ", output.ok() ? *output : ""));
  }
  MD_ASSIGN_OR_RETURN(std::string json, ReadFileToString(json_path));
  if (json.find("\"ok\":true") == std::string::npos ||
      json.find("\"action\":\"activated\"") == std::string::npos ||
      json.find(absl::StrCat("\"bytesReceived\":", size, "}")) == std::string::npos) {
    return absl::InternalError(absl::StrCat("unexpected agent result: ", json));
  }
  RemoveTree(dir);
  return run;
}

std::shared_ptr<grpc::Channel> Connect(const std::string& address, bool unique) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  if (unique) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

absl::StatusOr<Published> PublishFile(const std::shared_ptr<grpc::Channel>& channel,
                                      const std::string& token, const std::string& path,
                                      const FileDigest& digest, const std::string& model,
                                      const std::string& version, const std::string& tier) {
  auto registry = v1::RegistryService::NewStub(channel);
  auto admin = [&token] {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + token);
    return context;
  };
  Published published;
  published.digest = FormatDigest(digest.hex);
  published.size_bytes = digest.size;
  published.version = absl::StrCat("models/", model, "/versions/", version);
  {
    v1::CreateModelRequest request;
    request.set_model_id(model);
    v1::Model response;
    grpc::Status s = registry->CreateModel(admin().get(), request, &response);
    if (!s.ok() && s.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
      return FromGrpc(s, "CreateModel");
    }
  }
  {
    v1::CreateVersionRequest request;
    request.set_parent("models/" + model);
    request.set_version_id(version);
    v1::Artifact* artifact = request.add_artifacts();
    artifact->set_platform(v1::PLATFORM_LINUX);
    artifact->set_arch(v1::ARCH_X86_64);
    artifact->set_format(v1::FORMAT_GGUF);
    artifact->set_digest(published.digest);
    artifact->set_size_bytes(digest.size);
    v1::Version response;
    grpc::Status s = registry->CreateVersion(admin().get(), request, &response);
    if (!s.ok()) return FromGrpc(s, "CreateVersion");
  }
  {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, path);
    auto context = admin();
    v1::WriteArtifactResponse response;
    auto writer = registry->WriteArtifact(context.get(), &response);
    constexpr size_t kMessageBytes = 4 << 20;  // the API's per-message maximum
    v1::WriteArtifactRequest request;
    int64_t offset = 0;
    absl::Status local;
    for (;;) {
      request.set_digest(published.digest);
      request.set_write_offset(offset);
      std::string* data = request.mutable_data();
      data->resize(kMessageBytes);
      absl::StatusOr<size_t> n = PreadAll(fd, data->data(), kMessageBytes, offset, path);
      if (!n.ok()) {
        local = n.status();
        break;
      }
      data->resize(*n);
      offset += static_cast<int64_t>(*n);
      request.set_finish_write(offset == digest.size);
      if (!writer->Write(request) || *n == 0 || offset == digest.size) break;
    }
    ::close(fd);
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    MD_RETURN_IF_ERROR(local);
    if (!s.ok()) return FromGrpc(s, "WriteArtifact");
  }
  {
    v1::PublishVersionRequest request;
    request.set_name(published.version);
    v1::Version response;
    grpc::Status s = registry->PublishVersion(admin().get(), request, &response);
    if (!s.ok()) return FromGrpc(s, "PublishVersion");
  }
  if (!tier.empty()) {
    v1::SetTierRequest request;
    request.set_tier(tier);
    request.set_version(published.version);
    v1::TierBinding response;
    grpc::Status s = registry->SetTier(admin().get(), request, &response);
    if (!s.ok()) return FromGrpc(s, "SetTier");
  }
  return published;
}

std::string DropPageCache(const std::string& file) {
  ::sync();
  {
    std::ofstream drop("/proc/sys/vm/drop_caches");
    drop << "3" << std::flush;
    if (drop.good()) return "drop_caches";
  }
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  return "fadvise";
}

bool OnTmpfs(const std::string& dir) {
  struct statfs st {};
  return ::statfs(dir.c_str(), &st) == 0 && st.f_type == TMPFS_MAGIC;
}

absl::StatusOr<std::string> MakeTempDir(const std::string& parent, const std::string& tag) {
  std::string pattern = absl::StrCat(parent, "/modeldist-bench-", tag, "-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) return ErrnoStatus(errno, pattern);
  // nginx started as root serves as `nobody`, which must be able to reach the files in here.
  if (::chmod(pattern.c_str(), 0755) != 0) return ErrnoStatus(errno, pattern);
  return pattern;
}

void RemoveTree(const std::string& path) {
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
}

int64_t ProcStatusKib(pid_t pid, const std::string& key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  const std::string prefix = key + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::atoll(line.c_str() + prefix.size());
  }
  return -1;
}

namespace {

// Parses /proc/PID/stat: returns utime+stime in seconds and sets *ppid.
double StatCpuSeconds(const std::string& path, pid_t* ppid) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces; the fields after it are fixed.
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 4 && ppid != nullptr) *ppid = static_cast<pid_t>(std::atoll(field.c_str()));
    if (i == 14) utime = std::atoll(field.c_str());
    if (i == 15) stime = std::atoll(field.c_str());
  }
  return static_cast<double>(utime + stime) / ::sysconf(_SC_CLK_TCK);
}

double RusageSeconds(int who) {
  rusage usage{};
  ::getrusage(who, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

double ProcessCpuSeconds(pid_t pid, bool with_children) {
  double total = StatCpuSeconds(absl::StrCat("/proc/", pid, "/stat"), nullptr);
  if (!with_children) return total;
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ignored)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] < '0' || name[0] > '9') continue;
    pid_t ppid = 0;
    double cpu = StatCpuSeconds(entry.path().string() + "/stat", &ppid);
    if (ppid == pid) total += cpu;
  }
  return total;
}

double SelfCpuSeconds() { return RusageSeconds(RUSAGE_SELF); }
double ReapedChildrenCpuSeconds() { return RusageSeconds(RUSAGE_CHILDREN); }

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

double Min(const std::vector<double>& values) {
  return values.empty() ? 0 : *std::min_element(values.begin(), values.end());
}

double Max(const std::vector<double>& values) {
  return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
}

std::string Mib(int64_t kib) { return absl::StrFormat("%.1f MiB", kib / 1024.0); }

std::optional<int> ParseDriverFlags(Flags& flags, int argc, char** argv, const std::string& about) {
  if (absl::Status s = flags.Parse(argc, argv); !s.ok()) {
    std::cerr << s.message() << "\n";
    return 2;
  }
  if (flags.GetBool("help")) {
    std::cout << about << "\n" << flags.Help();
    return 0;
  }
  return std::nullopt;
}

int DriverExit(const std::string& driver, const absl::Status& status) {
  if (status.ok()) return 0;
  std::cerr << driver << " failed: " << status << "\n";
  return 1;
}

int DriverMain(int argc, char** argv, const std::string& about,
               const std::function<void(Flags&)>& add_flags,
               const std::function<int(const Flags&)>& run) {
  InstallChildReaper();
  Flags flags;
  add_flags(flags);
  flags.AddBool("help", "show this help");
  if (std::optional<int> code = ParseDriverFlags(flags, argc, argv, about)) return *code;
  return run(flags);
}

absl::Status CheckFreeSpace(const std::string& dir, int64_t need) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return ErrnoStatus(errno, dir);
  const int64_t free_bytes = static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
  const int64_t slack = int64_t{1} << 30;
  if (free_bytes < need + slack) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s has %.1f GiB free; this phase needs %.1f GiB (+1 GiB slack)", dir,
                        free_bytes / double(1 << 30), need / double(1 << 30)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Placement> PlaceDriver(const std::string& name, int* driver_cpus) {
  if (name == "shared") {
    *driver_cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return Placement();
  }
  if (name != "split") return absl::InvalidArgumentError("--placement must be split or shared");
  MD_ASSIGN_OR_RETURN(Placement placement, SplitPlacement());
  MD_RETURN_IF_ERROR(PinThisProcess(placement.driver_cpus));
  *driver_cpus = static_cast<int>(placement.driver_cpus.size());
  return placement;
}

bool PlaceDriverByFlag(const Flags& flags, std::string* name, Placement* placement,
                       int* driver_cpus) {
  *name = flags.Get("placement");
  absl::StatusOr<Placement> placed = PlaceDriver(*name, driver_cpus);
  if (!placed.ok()) {
    std::cerr << placed.status().message() << "\n";
    return false;
  }
  *placement = *std::move(placed);
  return true;
}

absl::StatusOr<SmallModelServer> StartServerWithSmallModel(const std::string& binary,
                                                           const std::string& dir,
                                                           const std::string& token,
                                                           const std::vector<int>& cpus,
                                                           const ModeldistExtras& extras) {
  const std::string token_file = dir + "/token";
  MD_RETURN_IF_ERROR(WriteFileAtomically(token_file, token, 0600));
  const std::string art = dir + "/small.bin";
  MD_ASSIGN_OR_RETURN(FileDigest digest, MakeIncompressibleFile(art, 4096));
  SmallModelServer result;
  MD_ASSIGN_OR_RETURN(result.server,
                      StartModeldistServer(binary, dir + "/data", token_file, 1024 * 1024,
                                           dir + "/server.log", cpus, extras));
  absl::StatusOr<Published> published =
      PublishFile(Connect(result.server.address), token, art, digest, "bench", "v1", "bench");
  if (!published.ok()) {
    StopChild(result.server.pid);
    return published.status();
  }
  result.published = *std::move(published);
  return result;
}

std::string MedianRange(const std::vector<double>& values, int precision) {
  return absl::StrFormat("%.*f (%.*f-%.*f)", precision, Median(values), precision, Min(values),
                         precision, Max(values));
}

}  // namespace modeldist::bench
