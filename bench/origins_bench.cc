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
#include "bench/origin_bench_util.h"
#include "bench/peers.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/registry.grpc.pb.h"

namespace modeldist::bench {
namespace {

constexpr char kToken[] = "bench-admin-token-0123456789abcdef";
constexpr char kOrigin[] = "swift";
constexpr double kReplicationTarget = 0.8;
constexpr double kAgentTarget = 1.3;
constexpr int64_t kTargetRssKib = 64 * 1024;

struct Config {
  int64_t size = 0;
  int reps = 3;
  int64_t part_size = 0;
  bool tls = false;
  std::string server_bin;
  std::string agent_bin;
  std::string tmp_parent;
};

// ---- Steps ---------------------------------------------------------------------------------

// CPU seconds of every process involved in a replication so far: this driver (which polls
// GetVersion) and its live children (Swift, modeldist-server), and the children it has reaped
// (curl).
double AllCpuSeconds() {
  return ProcessCpuSeconds(::getpid(), /*with_children=*/true) + ReapedChildrenCpuSeconds();
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
  MD_ASSIGN_OR_RETURN(std::string entry,
                      SwiftOriginEntry(kOrigin, dir, swift, "", config.part_size, ""));
  MD_RETURN_IF_ERROR(WriteFileAtomically(origins, entry, 0600));
  Scratch server_scope;  // stops the server whatever happens
  MD_ASSIGN_OR_RETURN(ServerProcess server,
                      StartServerWithOrigins(config.server_bin, dir + "/data-replicate", token_file,
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
      MD_RETURN_IF_ERROR(WaitConfirmed(*registry, kToken,
                                       absl::StrCat("models/replicate/versions/", version), kOrigin,
                                       absl::Minutes(10)));
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
                              "S3 API on loopback%s, part size %s, %d reps; GB/s = 10^9 B/s, "
                              "median (min-max)",
                              config.size, config.size / double(1 << 30),
                              config.tls ? " over HTTPS (nginx TLS front)" : "",
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
  MD_ASSIGN_OR_RETURN(std::string entry,
                      SwiftOriginEntry(kOrigin, dir, swift, kPrefix, config.part_size,
                                       absl::StrCat("  cdn { base_url: \"", base_url, "\" }\n")));
  MD_RETURN_IF_ERROR(WriteFileAtomically(origins, entry, 0600));
  Scratch server_scope;
  MD_ASSIGN_OR_RETURN(ServerProcess server,
                      StartServerWithOrigins(config.server_bin, dir + "/data-cdn", token_file,
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
  MD_RETURN_IF_ERROR(
      WaitConfirmed(*registry, kToken, "models/cdn/versions/v1", kOrigin, absl::Minutes(10)));
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
  Swift swift;
  auto start = std::chrono::steady_clock::now();
  MD_RETURN_IF_ERROR(swift.Start(res.dir));
  MD_RETURN_IF_ERROR(swift.WriteNetrc(res.dir + "/netrc"));
  if (config.tls) MD_RETURN_IF_ERROR(swift.StartTlsFront(res.dir + "/tls-front"));
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

// The driver's own flags (DriverMain adds --help).
void AddFlags(Flags& flags) {
  flags.Add("size", "BYTES", "1GiB", "size of the replicated and downloaded files");
  flags.Add("reps", "N", "3", "repetitions of every measurement (the median is reported)");
  flags.Add("part-size", "BYTES", "0",
            "the origin's part_size_bytes (0: the server's default, 64 MiB)");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("agent-bin", "PATH", MODELDIST_AGENT_BIN, "modeldist-agent binary");
  flags.Add("tmp", "DIR", "/tmp", "where the files, Swift's data and downloads go (deleted)");
  flags.AddBool("tls",
                "reach Swift over HTTPS through an nginx TLS front, as S3 and R2 are reached "
                "(both sides)");
}

int RunWithFlags(const Flags& flags) {
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
  config.tls = flags.GetBool("tls");
  config.server_bin = flags.Get("server-bin");
  config.agent_bin = flags.Get("agent-bin");
  config.tmp_parent = flags.Get("tmp");
  return bench::DriverExit("origins_bench", bench::Run(config));
}

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  return modeldist::bench::DriverMain(
      argc, argv,
      "origins_bench: replication to Swift's S3 API vs curl's PUT, and modeldist-agent sync "
      "from a CDN mirror vs curl + openssl",
      modeldist::bench::AddFlags, modeldist::bench::RunWithFlags);
}
