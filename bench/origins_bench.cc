// origins_bench: the two figures of issue 11, each against a peer measured in the same run.
//
// Starts OpenStack Swift with its S3 API on loopback (tests/testing/swift_s3_server.h, a real
// SigV4-checking store; bucket "models"), nginx, and the modeldist-server binary of the same
// build with an origins file (docs/origins.md), and times REPS times each, interleaved so that
// drift in the machine's load hits both sides alike:
//
// 1. Replication of a --size file (default 1 GiB) to Swift's S3 API.
//      peer  `curl --aws-sigv4 aws:amz:auto:s3 --user test:tester:testing -T FILE
//            <swift>/models/peer/<hex>`: one PUT of the file, timed to curl's exit.
//      ours  the server's replicator (origin "swift", `replicate: true`, its default part
//            size unless --part-size): the file is published with the RegistryService rpcs,
//            untimed; the clock runs from the end of PublishVersion until GetVersion (polled
//            every 20 ms) shows the artifact's replica CONFIRMED.
//    Every rep has a new file of random bytes, so both sides really upload a new object; both
//    objects are deleted after the rep. The order of the two alternates from rep to rep.
// 2. Agent sync from a CDN mirror. A second server's origin is an s3 origin on Swift with
//    `replicate: true` and `cdn { base_url: <nginx> }`, so GetManifest hands devices
//    <nginx>/cdn/sha256/<hex>; nginx serves that path from a hard link of the published file
//    (a CDN that already pulled the object). Once the replica is CONFIRMED and the manifest
//    names the nginx URL as its mirror:
//      peer  `curl -sf -o OUT URL && openssl dgst -sha256 OUT` from the same URL (P_verify);
//      ours  `modeldist-agent sync` into a fresh directory (signed manifest, the mirror read
//            first, every chunk checked against the chain, fsync, activation), with its peak
//            RSS (VmHWM polled, and ru_maxrss).
//    Each side runs once unmeasured first, so that both start with the same page cache.
//    Each rep also times, as information, `dd oflag=direct conv=fsync` of the same size to the
//    disk under --tmp: the ceiling of a download that must be durable there.
//
// Prints median (min-max) GB/s (10^9 B/s), the ratios and CPU seconds per GB of every process
// involved. The targets: replication >= 0.8x curl's PUT; agent sync >= 1.3x P_verify, with a
// peak RSS < 64 MiB.
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "bench/peers.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "tests/testing/swift_s3_server.h"

namespace modeldist::bench {
namespace {

using ::modeldist::testing::SwiftS3Server;

constexpr char kToken[] = "bench-admin-token-0123456789abcdef";
constexpr char kBucket[] = "models";
constexpr char kOrigin[] = "swift";
// Swift's s3api wants x-amz-content-sha256 on every request, which curl 7.88 does not send.
// The peer's PUT sends its body unsigned, as the server's multipart parts do (the server's
// single PUT signs the digest, which makes the store hash the bytes as well).
constexpr char kUnsignedPayload[] = "-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD'";
constexpr double kReplicationTarget = 0.8;
constexpr double kAgentTarget = 1.3;
constexpr int64_t kTargetRssKib = 64 * 1024;

struct Config {
  int64_t size = 0;
  int reps = 3;
  int64_t part_size = 0;
  std::string server_bin;
  std::string agent_bin;
  std::string tmp_parent;
};

// ---- Swift's processes on a signal ---------------------------------------------------------

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
// exactly Swift's (memcached, the account, container and object servers, the proxy).
class Swift {
 public:
  absl::Status Start(const std::string& scratch_parent) {
    // SwiftS3Server keeps its data in a ScratchDir under $TMPDIR: on the disk measured.
    ::setenv("TMPDIR", scratch_parent.c_str(), 1);
    server_ = std::make_unique<SwiftS3Server>();
    ::testing::AssertionResult started = server_->Start(kBucket);
    if (!started) return absl::UnavailableError(absl::StrCat("Swift: ", started.message()));
    pids_ = ChildPids();
    for (size_t i = 0; i < pids_.size() && i < kMaxSwiftPids; ++i) g_swift_pids[i] = pids_[i];
    struct sigaction action {};
    action.sa_handler = OnSignalStopSwift;
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &action, &g_previous[i]);
    return absl::OkStatus();
  }
  ~Swift() {
    server_.reset();
    for (auto& slot : g_swift_pids) slot.store(0);
  }

  std::string endpoint() const { return server_->endpoint(); }
  // CPU seconds used so far by all of Swift's processes.
  double CpuSeconds() const {
    double total = 0;
    for (pid_t pid : pids_) total += ProcessCpuSeconds(pid);
    return total;
  }

  // Writes the credentials curl signs with to `netrc` (0600). They go there rather than in
  // `--user test:tester:testing`: curl splits --user at the first colon, which would make the
  // access key "test" (Swift answers SignatureDoesNotMatch), and a netrc login may hold one.
  absl::Status WriteNetrc(const std::string& netrc) {
    netrc_ = netrc;
    return WriteFileAtomically(netrc,
                               absl::StrCat("machine 127.0.0.1 login ", SwiftS3Server::kAccessKey,
                                            " password ", SwiftS3Server::kSecret, "\n"),
                               0600);
  }

  // `curl --aws-sigv4 aws:amz:auto:s3` with those credentials, `args`, and the URL of object
  // `key` of the bucket.
  std::string Curl(const std::string& args, const std::string& key) const {
    return absl::StrCat("curl -sS --fail-with-body --aws-sigv4 'aws:amz:", SwiftS3Server::kRegion,
                        ":s3' --netrc-file ", netrc_, " ", kUnsignedPayload, " ", args, " ",
                        endpoint(), "/", kBucket, "/", key);
  }

 private:
  std::unique_ptr<SwiftS3Server> server_;
  std::vector<pid_t> pids_;
  std::string netrc_;
};

// ---- Steps ---------------------------------------------------------------------------------

// CPU seconds of every process involved in a replication so far: this driver (which polls
// GetVersion) and its live children (Swift, modeldist-server), and the children it has reaped
// (curl).
double AllCpuSeconds() {
  return ProcessCpuSeconds(::getpid(), /*with_children=*/true) + ReapedChildrenCpuSeconds();
}

// Starts modeldist-server on 127.0.0.1:0 with `origins` and waits for its port file.
absl::StatusOr<ServerProcess> StartServer(const Config& config, const std::string& data_dir,
                                          const std::string& token_file, const std::string& origins,
                                          const std::string& log) {
  const std::string port_file = data_dir + ".port";
  ::unlink(port_file.c_str());
  ServerProcess server;
  MD_ASSIGN_OR_RETURN(server.pid, Spawn({config.server_bin, "--listen", "127.0.0.1:0", "--data-dir",
                                         data_dir, "--admin-token-file", token_file, "--port-file",
                                         port_file, "--origins", origins},
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

// The origins file: one s3 origin on Swift that replicates, with `extra` inside it (a cdn).
absl::Status WriteOrigins(const std::string& path, const std::string& dir, const Swift& swift,
                          const std::string& key_prefix, int64_t part_size,
                          const std::string& extra) {
  // Secrets come from files the owner only can read (the server refuses others).
  MD_RETURN_IF_ERROR(WriteFileAtomically(dir + "/s3-key-id", SwiftS3Server::kAccessKey, 0600));
  MD_RETURN_IF_ERROR(WriteFileAtomically(dir + "/s3-secret", SwiftS3Server::kSecret, 0600));
  const std::string text = absl::StrFormat(
      "origins {\n"
      "  name: \"%s\"\n"
      "  s3 {\n"
      "    endpoint: \"%s\"\n"
      "    region: \"%s\"\n"
      "    bucket: \"%s\"\n"
      "    access_key_id { file: \"%s/s3-key-id\" }\n"
      "    secret_access_key { file: \"%s/s3-secret\" }\n"
      "    part_size_bytes: %d\n"
      "  }\n"
      "  key_prefix: \"%s\"\n"
      "  replicate: true\n"
      "%s"
      "}\n",
      kOrigin, swift.endpoint(), SwiftS3Server::kRegion, kBucket, dir, dir, part_size, key_prefix,
      extra);
  return WriteFileAtomically(path, text, 0600);
}

grpc::Status GetVersion(v1::RegistryService::Stub& registry, const std::string& name,
                        v1::Version* version) {
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
  v1::GetVersionRequest request;
  request.set_name(name);
  return registry.GetVersion(&context, request, version);
}

// Polls GetVersion every 20 ms until the artifact's replica on kOrigin is CONFIRMED (up to
// `timeout`). A FAILING replica is an error: the next attempt would only start after 5 s.
absl::Status WaitConfirmed(v1::RegistryService::Stub& registry, const std::string& version_name,
                           absl::Duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoSeconds(timeout);
  std::string last = "no replica row yet";
  while (std::chrono::steady_clock::now() < deadline) {
    v1::Version version;
    grpc::Status s = GetVersion(registry, version_name, &version);
    if (!s.ok()) return absl::UnavailableError(absl::StrCat("GetVersion: ", s.error_message()));
    for (const v1::Artifact& artifact : version.artifacts()) {
      for (const v1::Replica& replica : artifact.replicas()) {
        if (replica.origin() != kOrigin) continue;
        if (replica.state() == v1::Replica::CONFIRMED) return absl::OkStatus();
        if (replica.state() == v1::Replica::FAILING) {
          return absl::UnavailableError(
              absl::StrCat("replication to ", kOrigin, " failed: ", replica.last_error()));
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

// Runs `swift.Curl(args, key)` with the response body in `body`, timed; an error with the body
// (Swift's XML error) when curl fails.
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

// `curl -I` of `key`: the object must be there with `size` bytes.
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

// Runs one `modeldist-agent sync` into the fresh directory `agent_dir` and checks that it
// downloaded and activated `size` bytes. VmHWM is polled from /proc while it runs.
// `agent_cpu` gets the agent process's own CPU seconds.
absl::StatusOr<Sample> TimeAgent(const Config& config, const ServerProcess& server, pid_t nginx,
                                 const std::string& tier, const std::string& root_file,
                                 const std::string& agent_dir, const std::string& log_dir,
                                 int64_t size, double* agent_cpu) {
  // CPU as TimePeer counts the peer's: the client (reaped), the HTTP server (nginx and its
  // workers), and here also modeldist-server (manifest).
  auto cpu_now = [&] {
    return ReapedChildrenCpuSeconds() + ProcessCpuSeconds(nginx, /*with_children=*/true) +
           ProcessCpuSeconds(server.pid);
  };
  const double cpu_before = cpu_now();
  const double server_before = ProcessCpuSeconds(server.pid);
  MD_ASSIGN_OR_RETURN(ChildRun run, RunAgentSync(config.agent_bin, server.address, tier, root_file,
                                                 agent_dir, log_dir + "/agent.json", size));
  Sample sample;
  sample.seconds = run.seconds;
  sample.hwm_kib = run.hwm_kib;
  sample.maxrss_kib = run.maxrss_kib;
  *agent_cpu = run.cpu_seconds;
  // The agent is reaped, so the reaped children's CPU now includes its own.
  sample.cpu_seconds = cpu_now() - cpu_before;
  sample.server_cpu_seconds = ProcessCpuSeconds(server.pid) - server_before;
  return sample;
}

// Waits (up to 30 s) until GetManifest for `tier` names `url` as a mirror: the agent will read
// from nginx, not from the server.
absl::Status WaitForMirror(const std::string& address, const std::string& tier,
                           const std::string& url) {
  auto stub = v1::ManifestService::NewStub(Connect(address));
  std::string seen;
  for (int waited = 0; waited < 30000; waited += 100) {
    v1::GetManifestRequest request;
    request.set_tier(tier);
    request.set_platform(v1::PLATFORM_LINUX);
    request.set_arch(v1::ARCH_X86_64);
    v1::SignedManifest manifest;
    grpc::ClientContext context;
    grpc::Status s = stub->GetManifest(&context, request, &manifest);
    if (!s.ok()) return absl::UnavailableError(absl::StrCat("GetManifest: ", s.error_message()));
    seen.clear();
    for (const v1::Source& mirror : manifest.mirrors()) {
      if (mirror.http_url() == url) return absl::OkStatus();
      absl::StrAppend(&seen, " ", mirror.http_url());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("GetManifest does not name ", url, " as a mirror (mirrors:", seen, ")"));
}

// ---- The two figures -----------------------------------------------------------------------

struct Figure {
  std::vector<std::string> lines;  // RESULT lines, printed at the end
};

absl::Status Replication(const Config& config, const Swift& swift, const std::string& dir,
                         Figure* figure) {
  const std::string token_file = dir + "/token";
  const std::string origins = dir + "/origins-replicate.textproto";
  MD_RETURN_IF_ERROR(WriteOrigins(origins, dir, swift, "", config.part_size, ""));
  Scratch server_scope;  // stops the server whatever happens
  MD_ASSIGN_OR_RETURN(ServerProcess server, StartServer(config, dir + "/data-replicate", token_file,
                                                        origins, dir + "/server.log"));
  server_scope.server = server.pid;
  std::cerr << "modeldist-server pid " << server.pid << " on " << server.address << " (origins "
            << origins << ")\n";
  auto channel = Connect(server.address);
  auto registry = v1::RegistryService::NewStub(channel);

  ResultTable table(config.size);
  const std::string peer = "peer curl --aws-sigv4 -T FILE (one PUT)";
  const std::string ours = "ours replication: publish end -> CONFIRMED";
  const std::string file = dir + "/replicate.bin";
  for (int rep = 1; rep <= config.reps; ++rep) {
    std::cerr << "replication rep " << rep << "/" << config.reps << "\n";
    MD_ASSIGN_OR_RETURN(FileDigest digest,
                        MakeIncompressibleFile(file, config.size, /*fresh=*/true));
    const std::string peer_key = absl::StrCat("peer/sha256/", digest.hex);
    const std::string our_key = absl::StrCat("sha256/", digest.hex);
    ::sync();

    auto run_peer = [&]() -> absl::Status {
      ::sync();
      const double cpu_before = AllCpuSeconds();
      const double swift_before = swift.CpuSeconds();
      Sample t;
      MD_ASSIGN_OR_RETURN(t.seconds,
                          S3Request(swift, absl::StrCat("-T ", file), peer_key, dir + "/put.txt"));
      t.cpu_seconds = AllCpuSeconds() - cpu_before;
      table.Record(peer, t,
                   absl::StrFormat("  (Swift CPU %.2f s)", swift.CpuSeconds() - swift_before));
      MD_RETURN_IF_ERROR(CheckObject(swift, peer_key, config.size, dir));
      return S3Request(swift, "-X DELETE", peer_key, dir + "/delete.txt").status();
    };
    auto run_ours = [&]() -> absl::Status {
      ::sync();
      const std::string version = absl::StrCat("r", rep);
      // Published untimed; no tier, so that PublishVersion (which wakes the replicator) is the
      // last rpc and the clock starts at its answer.
      MD_RETURN_IF_ERROR(
          PublishFile(channel, kToken, file, digest, "replicate", version, "").status());
      const double cpu_before = AllCpuSeconds();
      const double server_before = ProcessCpuSeconds(server.pid);
      const double swift_before = swift.CpuSeconds();
      const auto start = std::chrono::steady_clock::now();
      MD_RETURN_IF_ERROR(WaitConfirmed(
          *registry, absl::StrCat("models/replicate/versions/", version), absl::Minutes(10)));
      Sample t;
      t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      t.cpu_seconds = AllCpuSeconds() - cpu_before;
      t.server_cpu_seconds = ProcessCpuSeconds(server.pid) - server_before;
      table.Record(ours, t,
                   absl::StrFormat("  (modeldist-server CPU %.2f s, Swift CPU %.2f s)",
                                   t.server_cpu_seconds, swift.CpuSeconds() - swift_before));
      MD_RETURN_IF_ERROR(CheckObject(swift, our_key, config.size, dir));
      return S3Request(swift, "-X DELETE", our_key, dir + "/delete.txt").status();
    };
    // Alternate which side goes first, so that neither always runs after the other's writes.
    if (rep % 2 == 1) {
      MD_RETURN_IF_ERROR(run_peer());
      MD_RETURN_IF_ERROR(run_ours());
    } else {
      MD_RETURN_IF_ERROR(run_ours());
      MD_RETURN_IF_ERROR(run_peer());
    }
    ::unlink(file.c_str());
  }

  table.Print(absl::StrFormat("origins_bench replication: %d bytes (%.2f GiB) random, to Swift's "
                              "S3 API on loopback, part size %s, %d reps; GB/s = 10^9 B/s, "
                              "median (min-max)",
                              config.size, config.size / double(1 << 30),
                              config.part_size == 0 ? std::string("default (64 MiB)")
                                                    : absl::StrCat(config.part_size, " B"),
                              config.reps),
              peer);
  const double ratio = Median(table.Gbps(ours)) / Median(table.Gbps(peer));
  figure->lines.push_back(absl::StrFormat(
      "RESULT replication: %.2f GB/s / curl PUT %.2f GB/s = %.2fx (per-rep ratios %s; target >= "
      "%.1fx: %s)",
      Median(table.Gbps(ours)), Median(table.Gbps(peer)), ratio,
      MedianRange(table.RatioToBestPerRep(ours, {peer})), kReplicationTarget,
      ratio >= kReplicationTarget ? "MET" : "MISSED"));
  return absl::OkStatus();
}

absl::Status CdnSync(const Config& config, const Swift& swift, const std::string& dir,
                     Figure* figure) {
  constexpr char kPrefix[] = "cdn/";
  const std::string token_file = dir + "/token";
  const std::string www = dir + "/www";
  MD_RETURN_IF_ERROR(MakeDirs(absl::StrCat(www, "/", kPrefix, "sha256")));
  MD_ASSIGN_OR_RETURN(ServerProcess nginx, StartNginx(dir + "/nginx", www));
  Scratch nginx_scope;
  nginx_scope.server = nginx.pid;
  std::cerr << "nginx pid " << nginx.pid << " on " << nginx.address << "\n";
  const std::string base_url = absl::StrCat("http://", nginx.address);

  const std::string origins = dir + "/origins-cdn.textproto";
  MD_RETURN_IF_ERROR(WriteOrigins(origins, dir, swift, kPrefix, config.part_size,
                                  absl::StrCat("  cdn { base_url: \"", base_url, "\" }\n")));
  Scratch server_scope;
  MD_ASSIGN_OR_RETURN(ServerProcess server, StartServer(config, dir + "/data-cdn", token_file,
                                                        origins, dir + "/server.log"));
  server_scope.server = server.pid;
  std::cerr << "modeldist-server pid " << server.pid << " on " << server.address << " (origins "
            << origins << ")\n";
  const std::string root_file = dir + "/root.bin";
  MD_RETURN_IF_ERROR(WriteTrustRoot(server.address, root_file));

  const std::string file = dir + "/cdn.gguf";
  MD_ASSIGN_OR_RETURN(FileDigest digest, MakeIncompressibleFile(file, config.size, /*fresh=*/true));
  auto start = std::chrono::steady_clock::now();
  MD_RETURN_IF_ERROR(
      PublishFile(Connect(server.address), kToken, file, digest, "cdn", "v1", "cdn").status());
  auto registry = v1::RegistryService::NewStub(Connect(server.address));
  MD_RETURN_IF_ERROR(WaitConfirmed(*registry, "models/cdn/versions/v1", absl::Minutes(10)));
  std::cerr << absl::StrFormat(
      "published sha256:%s (tier cdn) and replicated it to Swift in %.2f s\n", digest.hex,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  // The CDN has pulled the object: nginx serves the very pages of the published file.
  const std::string path = absl::StrCat(kPrefix, "sha256/", digest.hex);
  if (::link(file.c_str(), absl::StrCat(www, "/", path).c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("link ", file, " into ", www));
  }
  const std::string url = absl::StrCat(base_url, "/", path);
  MD_RETURN_IF_ERROR(WaitForMirror(server.address, "cdn", url));
  std::cerr << "GetManifest names the mirror " << url << "\n";
  ::sync();

  const Peer nginx_peer{"nginx", url, nginx.pid, /*workers=*/true};
  const std::string out = dir + "/out.gguf";
  const std::string dgst_out = dir + "/dgst.txt";
  const std::string agent_dir = dir + "/agent";
  ResultTable table(config.size);
  const std::string peer = "peer nginx: curl -o && openssl dgst";
  const std::string ours = "ours modeldist-agent sync (CDN mirror, fsync)";
  auto run_peer = [&](bool record) -> absl::Status {
    MD_ASSIGN_OR_RETURN(Sample t,
                        TimePeer(nginx_peer, VerifyPipeline(url, out), dgst_out, digest.hex, out));
    if (record) table.Record(peer, t);
    return absl::OkStatus();
  };
  std::vector<int64_t> hwm_kib;
  std::vector<int64_t> maxrss_kib;
  auto run_ours = [&](bool record) -> absl::Status {
    double agent_cpu = 0;
    MD_ASSIGN_OR_RETURN(Sample t, TimeAgent(config, server, nginx.pid, "cdn", root_file, agent_dir,
                                            dir, config.size, &agent_cpu));
    const std::string extra =
        absl::StrFormat("  agent CPU %.2f s, VmHWM %s, ru_maxrss %s, modeldist-server CPU %.2f s",
                        agent_cpu, Mib(t.hwm_kib), Mib(t.maxrss_kib), t.server_cpu_seconds);
    if (!record) {
      std::cerr << "  warm-up agent sync " << absl::StrFormat("%.3f s", t.seconds) << extra << "\n";
      return absl::OkStatus();
    }
    table.Record(ours, t, extra);
    hwm_kib.push_back(t.hwm_kib);
    maxrss_kib.push_back(t.maxrss_kib);
    return absl::OkStatus();
  };
  // Not a peer: how fast the disk under --tmp takes a durable sequential write of the same
  // size in 1 MiB direct writes, the ceiling of a download that must land on it (the peer's
  // never leaves the page cache).
  const std::string info = "info dd oflag=direct conv=fsync (disk)";
  const std::string dd_out = dir + "/dd.bin";
  auto run_dd = [&]() -> absl::Status {
    ::sync();
    const double cpu_before = ReapedChildrenCpuSeconds();
    Sample t;
    MD_ASSIGN_OR_RETURN(t.seconds, TimeShell(absl::StrCat("dd if=/dev/zero of=", dd_out,
                                                          " bs=1M count=", config.size >> 20,
                                                          " oflag=direct conv=fsync status=none")));
    t.cpu_seconds = ReapedChildrenCpuSeconds() - cpu_before;
    table.Record(info, t);
    ::unlink(dd_out.c_str());
    return absl::OkStatus();
  };
  std::cerr << "warm-up (unmeasured): one run of each side\n";
  MD_RETURN_IF_ERROR(run_peer(false));
  MD_RETURN_IF_ERROR(run_ours(false));
  for (int rep = 1; rep <= config.reps; ++rep) {
    std::cerr << "agent rep " << rep << "/" << config.reps << "\n";
    MD_RETURN_IF_ERROR(run_peer(true));
    MD_RETURN_IF_ERROR(run_ours(true));
    MD_RETURN_IF_ERROR(run_dd());
  }

  table.Print(absl::StrFormat("origins_bench agent sync from a CDN mirror: %d bytes (%.2f GiB) "
                              "random, nginx on loopback, %d reps; GB/s = 10^9 B/s, median "
                              "(min-max)",
                              config.size, config.size / double(1 << 30), config.reps),
              peer);
  const double ratio = Median(table.Gbps(ours)) / Median(table.Gbps(peer));
  figure->lines.push_back(absl::StrFormat(
      "RESULT agent sync from the CDN mirror: %.2f GB/s (with fsync) / curl + openssl %.2f GB/s "
      "(no fsync) = %.2fx (per-rep ratios %s; target >= %.1fx: %s)",
      Median(table.Gbps(ours)), Median(table.Gbps(peer)), ratio,
      MedianRange(table.RatioToBestPerRep(ours, {peer})), kAgentTarget,
      ratio >= kAgentTarget ? "MET" : "MISSED"));
  const int64_t hwm = *std::max_element(hwm_kib.begin(), hwm_kib.end());
  const int64_t maxrss = *std::max_element(maxrss_kib.begin(), maxrss_kib.end());
  figure->lines.push_back(absl::StrFormat(
      "RESULT agent peak RSS: VmHWM %s (ru_maxrss %s; target < 64 MiB: %s)", Mib(hwm), Mib(maxrss),
      std::max(hwm, maxrss) < kTargetRssKib ? "MET" : "MISSED"));
  return absl::OkStatus();
}

absl::Status Run(const Config& config) {
  Scratch res;
  MD_ASSIGN_OR_RETURN(res.dir, MakeTempDir(config.tmp_parent, "origins"));
  // The file, the server's blobs (one per rep, and figure 2's), and Swift's two objects.
  MD_RETURN_IF_ERROR(CheckFreeSpace(res.dir, (config.reps + 5) * config.size));
  MD_RETURN_IF_ERROR(WriteFileAtomically(res.dir + "/token", kToken, 0600));
  // Swift first: the children this process has right after are Swift's.
  if (!ChildPids().empty()) return absl::InternalError("children running before Swift starts");
  Swift swift;
  auto start = std::chrono::steady_clock::now();
  MD_RETURN_IF_ERROR(swift.Start(res.dir));
  MD_RETURN_IF_ERROR(swift.WriteNetrc(res.dir + "/netrc"));
  std::cerr << absl::StrFormat(
      "Swift's S3 API on %s in %.1f s\n", swift.endpoint(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());

  Figure figure;
  MD_RETURN_IF_ERROR(Replication(config, swift, res.dir, &figure));
  MD_RETURN_IF_ERROR(CdnSync(config, swift, res.dir, &figure));
  std::cout << "\n";
  for (const std::string& line : figure.lines) std::cout << line << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  using namespace modeldist;
  bench::InstallChildReaper();
  Flags flags;
  flags.Add("size", "BYTES", "1GiB", "size of the replicated and downloaded files");
  flags.Add("reps", "N", "3", "repetitions of every measurement (the median is reported)");
  flags.Add("part-size", "BYTES", "0",
            "the origin's part_size_bytes (0: the server's default, 64 MiB)");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("agent-bin", "PATH", MODELDIST_AGENT_BIN, "modeldist-agent binary");
  flags.Add("tmp", "DIR", "/tmp", "where the files, Swift's data and downloads go (deleted)");
  flags.AddBool("help", "show this help");
  if (std::optional<int> exit = bench::ParseDriverFlags(
          flags, argc, argv,
          "origins_bench: replication to Swift's S3 API vs curl's PUT, and modeldist-agent sync "
          "from a CDN mirror vs curl + openssl")) {
    return *exit;
  }
  bench::Config config;
  auto size = flags.GetInt("size");
  auto reps = flags.GetInt("reps");
  auto part_size = flags.GetInt("part-size");
  if (!size.ok() || !reps.ok() || !part_size.ok() || *reps < 1 || *size < 1 || *part_size < 0) {
    std::cerr << "bad --size, --reps or --part-size\n";
    return 2;
  }
  config.size = *size;
  config.reps = static_cast<int>(*reps);
  config.part_size = *part_size;
  config.server_bin = flags.Get("server-bin");
  config.agent_bin = flags.Get("agent-bin");
  config.tmp_parent = flags.Get("tmp");
  return bench::DriverExit("origins_bench", bench::Run(config));
}
