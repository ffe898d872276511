// agent_bench: `modeldist-agent sync` vs the HTTP peers, and the agent's peak RSS, in one run.
//
// Creates an incompressible GGUF artifact (default 1 GiB), publishes it to a modeldist-server
// bound to a tier, serves the same bytes from nginx (sendfile) and from docker-registry (the
// blob pushed to it), and times, REPS times each, interleaved so that drift in the machine's
// load hits every side alike:
//   peers P_verify: `curl -s -o FILE URL && openssl dgst -sha256 FILE`, from each peer
//   ours: `modeldist-agent sync --dir FRESH_DIR ...` (a new process and directory each rep:
//         trust root, signed manifest, chunk-by-chunk verified download, the whole-file
//         digest, fsync per its defaults, activation). The agent fsyncs; the peers do not.
// Secondary row (skip with --core-only): nginx's P_verify followed by `sync FILE`, for a
// durability-matched comparison.
// Peak RSS of the agent process: VmHWM of /proc/PID/status polled while it runs, and
// ru_maxrss from wait4 (an upper bound: Linux carries the pre-exec fork's high-water mark
// over into it). With --big the sync is also run once for a --big-size (8 GiB) artifact.
// Prints median (min-max) GB/s (10^9 B/s), ratios and CPU seconds per GB of every process
// involved; the targets are agent sync >= 1.5x the faster peer of the run, and a peak RSS
// < 64 MiB.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/peers.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "modeldist/v1/manifest.grpc.pb.h"

namespace modeldist::bench {
namespace {

constexpr char kToken[] = "bench-admin-token-0123456789abcdef";
constexpr double kTargetRatio = 1.5;
constexpr int64_t kTargetRssKib = 64 * 1024;

struct Config {
  int64_t size = 0;
  int64_t big_size = 0;
  bool big = false;
  int reps = 3;
  int64_t server_chunk = 0;
  bool core_only = false;
  std::string server_bin;
  std::string agent_bin;
  std::string tmp_parent;
};

// Runs one `modeldist-agent sync` into the fresh directory `agent_dir` and checks that it
// downloaded and activated `size` bytes. CPU counts the agent (wait4) and the server.
absl::StatusOr<Sample> TimeAgent(const Config& config, const std::string& server_address,
                                 pid_t server_pid, const std::string& tier,
                                 const std::string& root_file, const std::string& agent_dir,
                                 const std::string& log_dir, int64_t size) {
  const double server_cpu_before = ProcessCpuSeconds(server_pid);
  MD_ASSIGN_OR_RETURN(ChildRun run, RunAgentSync(config.agent_bin, server_address, tier, root_file,
                                                 agent_dir, log_dir + "/agent.json", size));
  Sample sample;
  sample.seconds = run.seconds;
  sample.hwm_kib = run.hwm_kib;
  sample.maxrss_kib = run.maxrss_kib;
  sample.cpu_seconds = run.cpu_seconds + ProcessCpuSeconds(server_pid) - server_cpu_before;
  return sample;
}

absl::StatusOr<Published> MakeAndPublish(const std::string& path, int64_t size,
                                         const std::string& address, const std::string& model,
                                         FileDigest* digest) {
  std::cerr << "creating " << size << " incompressible bytes in " << path << "\n";
  MD_ASSIGN_OR_RETURN(*digest, MakeIncompressibleFile(path, size));
  auto start = std::chrono::steady_clock::now();
  MD_ASSIGN_OR_RETURN(Published published,
                      PublishFile(Connect(address), kToken, path, *digest, model, "v1", model));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << absl::StrFormat("published %s (tier %s) in %.2f s\n", published.digest, model,
                               seconds);
  return published;
}

absl::Status Run(const Config& config) {
  Scratch res;
  MD_ASSIGN_OR_RETURN(res.dir, MakeTempDir(config.tmp_parent, "agent"));
  // Source + the server's blob + the registry's + the agent's copy (the peers' are gone by
  // then).
  MD_RETURN_IF_ERROR(CheckFreeSpace(res.dir, 4 * config.size));
  const std::string token_file = res.dir + "/token";
  MD_RETURN_IF_ERROR(WriteFileAtomically(token_file, kToken, 0600));
  const std::string art = res.dir + "/art.gguf";
  const std::string out = res.dir + "/out.gguf";
  const std::string dgst_out = res.dir + "/dgst.txt";
  const std::string root_file = res.dir + "/root.bin";
  const std::string agent_dir = res.dir + "/agent";

  MD_ASSIGN_OR_RETURN(ServerProcess server,
                      StartModeldistServer(config.server_bin, res.dir + "/data", token_file,
                                           config.server_chunk, res.dir + "/server.log"));
  res.server = server.pid;
  std::cerr << "modeldist-server pid " << server.pid << " on " << server.address << "\n";
  MD_RETURN_IF_ERROR(WriteTrustRoot(server.address, root_file));
  FileDigest digest;
  MD_ASSIGN_OR_RETURN(Published artifact,
                      MakeAndPublish(art, config.size, server.address, "bench", &digest));
  (void)artifact;
  MD_ASSIGN_OR_RETURN(std::unique_ptr<HttpPeers> peers,
                      HttpPeers::Start(res.dir + "/peers", art, digest.hex));
  ::sync();

  ResultTable table(config.size);
  std::vector<int64_t> hwm_kib;
  std::vector<int64_t> maxrss_kib;
  std::vector<std::string> peer_rows;
  for (const Peer& peer : peers->peers()) {
    peer_rows.push_back(absl::StrCat("peer ", peer.name, ": curl -o && openssl dgst"));
  }
  const std::string p_fsync = "peer nginx: curl -o && openssl dgst && sync FILE";
  const std::string ours = "ours modeldist-agent sync (fsync, activate)";

  for (int rep = 1; rep <= config.reps; ++rep) {
    std::cerr << "rep " << rep << "/" << config.reps << "\n";
    for (size_t i = 0; i < peers->peers().size(); ++i) {
      const Peer& peer = peers->peers()[i];
      MD_ASSIGN_OR_RETURN(Sample t,
                          TimePeer(peer, VerifyPipeline(peer.url, out), dgst_out, digest.hex, out));
      table.Record(peer_rows[i], t);
    }
    MD_ASSIGN_OR_RETURN(Sample t, TimeAgent(config, server.address, server.pid, "bench", root_file,
                                            agent_dir, res.dir, config.size));
    table.Record(ours, t,
                 absl::StrCat("  VmHWM ", Mib(t.hwm_kib), ", ru_maxrss ", Mib(t.maxrss_kib)));
    hwm_kib.push_back(t.hwm_kib);
    maxrss_kib.push_back(t.maxrss_kib);
    if (!config.core_only) {
      const Peer& nginx = peers->peers().front();
      MD_ASSIGN_OR_RETURN(
          t, TimePeer(nginx, absl::StrCat(VerifyPipeline(nginx.url, out), " && sync ", out),
                      dgst_out, digest.hex, out));
      table.Record(p_fsync, t);
    }
  }

  const std::string best = table.Fastest(peer_rows);
  table.Print(
      absl::StrFormat("agent_bench: %d bytes (%.2f GiB) incompressible GGUF, loopback, "
                      "server chunk %d, %d reps; GB/s = 10^9 B/s, median (min-max)",
                      config.size, config.size / double(1 << 30), config.server_chunk, config.reps),
      best);
  const double agent = Median(table.Gbps(ours));
  const double peer = Median(table.Gbps(best));
  const double ratio = agent / peer;
  std::cout << absl::StrFormat(
      "RESULT agent sync: %.2f GB/s (with fsync) / best peer %.2f GB/s (%s, no fsync) = %.2fx "
      "(per-rep ratios to that rep's faster peer %s; target >= %.1fx: %s)\n",
      agent, peer, best, ratio, MedianRange(table.RatioToBestPerRep(ours, peer_rows)), kTargetRatio,
      ratio >= kTargetRatio ? "MET" : "MISSED");
  if (!config.core_only) {
    std::cout << absl::StrFormat("RESULT agent sync vs nginx P_verify+fsync: %.2fx\n",
                                 agent / Median(table.Gbps(p_fsync)));
  }
  std::vector<std::string> rss_lines;
  auto rss_result = [&](int64_t size, int64_t hwm, int64_t maxrss) {
    rss_lines.push_back(absl::StrFormat(
        "RESULT agent peak RSS, %.2f GiB: VmHWM %s (ru_maxrss %s; target < 64 MiB: %s)",
        size / double(1 << 30), Mib(hwm), Mib(maxrss),
        std::max(hwm, maxrss) < kTargetRssKib ? "MET" : "MISSED"));
  };
  rss_result(config.size, *std::max_element(hwm_kib.begin(), hwm_kib.end()),
             *std::max_element(maxrss_kib.begin(), maxrss_kib.end()));

  if (config.big) {
    // Free the small case first: only the big source, its blob and the agent's copy remain.
    peers->Stop();
    ::unlink(art.c_str());
    MD_RETURN_IF_ERROR(CheckFreeSpace(res.dir, 2 * config.big_size));
    const std::string big = res.dir + "/big.gguf";
    FileDigest big_digest;
    MD_ASSIGN_OR_RETURN(Published big_artifact, MakeAndPublish(big, config.big_size, server.address,
                                                               "bench-big", &big_digest));
    (void)big_artifact;
    ::unlink(big.c_str());  // the server holds its own copy
    ::sync();
    std::cerr << "big: one sync of " << config.big_size << " bytes\n";
    MD_ASSIGN_OR_RETURN(Sample t, TimeAgent(config, server.address, server.pid, "bench-big",
                                            root_file, agent_dir, res.dir, config.big_size));
    std::cerr << absl::StrFormat(
        "  %-48s %6.3f s  %5.2f GB/s  CPU %5.2f s (%.2f s/GB)  VmHWM %s, ru_maxrss %s\n", ours,
        t.seconds, GBps(config.big_size, t.seconds), t.cpu_seconds,
        t.cpu_seconds / (config.big_size / 1e9), Mib(t.hwm_kib), Mib(t.maxrss_kib));
    std::cout << absl::StrFormat("agent sync %.2f GiB (1 run): %.2f GB/s, CPU %.2f s per GB\n",
                                 config.big_size / double(1 << 30),
                                 GBps(config.big_size, t.seconds),
                                 t.cpu_seconds / (config.big_size / 1e9));
    rss_result(config.big_size, t.hwm_kib, t.maxrss_kib);
  }
  for (const std::string& line : rss_lines) std::cout << line << "\n";
  return absl::OkStatus();
}

// The driver's own flags (DriverMain adds --help).
void AddFlags(Flags& flags) {
  flags.Add("size", "BYTES", "1GiB", "artifact size for the throughput comparison and RSS");
  flags.Add("reps", "N", "3", "repetitions of every measurement (the median is reported)");
  flags.AddBool("big", "also measure the agent's peak RSS (and speed) once at --big-size");
  flags.Add("big-size", "BYTES", "8GiB", "artifact size of the --big run");
  flags.Add("server-chunk", "BYTES", "1MiB", "modeldist-server --chunk-size (Read messages)");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("agent-bin", "PATH", MODELDIST_AGENT_BIN, "modeldist-agent binary");
  flags.Add("tmp", "DIR", "/tmp", "where the artifacts and downloads go (deleted at the end)");
  flags.AddBool("core-only", "skip the nginx P_verify + fsync row");
}

int RunWithFlags(const Flags& flags) {
  bench::Config config;
  auto size = flags.GetInt("size");
  auto big_size = flags.GetInt("big-size");
  auto reps = flags.GetInt("reps");
  auto chunk = flags.GetInt("server-chunk");
  if (!size.ok() || !big_size.ok() || !reps.ok() || !chunk.ok() || *reps < 1 || *size < 1 ||
      *big_size < 1 || *chunk < 1) {
    std::cerr << "bad --size, --big-size, --reps or --server-chunk\n";
    return 2;
  }
  config.size = *size;
  config.big_size = *big_size;
  config.big = flags.GetBool("big");
  config.reps = static_cast<int>(*reps);
  config.server_chunk = *chunk;
  config.core_only = flags.GetBool("core-only");
  config.server_bin = flags.Get("server-bin");
  config.agent_bin = flags.Get("agent-bin");
  config.tmp_parent = flags.Get("tmp");
  return bench::DriverExit("agent_bench", bench::Run(config));
}

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  return modeldist::bench::DriverMain(
      argc, argv,
      "agent_bench: modeldist-agent sync vs nginx and docker-registry "
      "(curl + openssl), and its peak RSS",
      modeldist::bench::AddFlags, modeldist::bench::RunWithFlags);
}
