// agent_bench: `modeldist-agent sync` vs nginx+curl+openssl, and the agent's peak RSS, in one run.
//
// Creates an incompressible GGUF artifact (default 1 GiB), publishes it to a modeldist-server
// bound to a tier, serves the same bytes from nginx (sendfile), and times, REPS times each,
// interleaved so that drift in the machine's load hits both sides alike:
//   peer  P_verify: `curl -s -o FILE URL && openssl dgst -sha256 FILE` (as in download_bench)
//   ours: `modeldist-agent sync --dir FRESH_DIR ...` (a new process and directory each rep:
//         trust root, signed manifest, chunk-by-chunk verified download, the whole-file
//         digest, fsync per its defaults, activation). The agent fsyncs; the peer does not.
// Secondary row (skip with --core-only): P_verify+fsync, the peer followed by `sync FILE`,
// for a durability-matched comparison.
// Peak RSS of the agent process: VmHWM of /proc/PID/status polled while it runs, and
// ru_maxrss from wait4 (an upper bound: Linux carries the pre-exec fork's high-water mark
// over into it). With --big the sync is also run once for a --big-size (8 GiB) artifact.
// Prints median (min-max) GB/s (10^9 B/s), ours/peer ratios and CPU seconds per GB of every
// process involved; the targets are >= 1.3x P_verify and a peak RSS < 64 MiB.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "modeldist/v1/manifest.grpc.pb.h"

namespace modeldist::bench {
namespace {

constexpr char kToken[] = "bench-admin-token-0123456789abcdef";
constexpr double kTargetRatio = 1.3;
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

// Everything started or created by the run, released in ~Resources whatever happens.
struct Resources {
  std::string dir;
  pid_t nginx = -1;
  pid_t server = -1;
  ~Resources() {
    StopChild(server);
    StopChild(nginx);
    if (!dir.empty()) RemoveTree(dir);
  }
};

// One timed run: wall-clock seconds, CPU seconds of every process involved (client and
// server), and for the agent its peak RSS.
struct Sample {
  double seconds = 0;
  double cpu_seconds = 0;
  int64_t hwm_kib = -1;     // VmHWM polled from /proc while the agent ran
  int64_t maxrss_kib = -1;  // wait4 ru_maxrss (upper bound, see the file comment)
};

// Runs one `modeldist-agent sync` into the fresh directory `agent_dir` and checks that it
// downloaded and activated `size` bytes. CPU counts the agent (wait4) and the server.
absl::StatusOr<Sample> TimeAgent(const Config& config, const std::string& server_address,
                                 pid_t server_pid, const std::string& tier,
                                 const std::string& root_file, const std::string& agent_dir,
                                 const std::string& log_dir, int64_t size) {
  RemoveTree(agent_dir);
  const std::string json_path = log_dir + "/agent.json";
  ::unlink(json_path.c_str());
  ::sync();  // no write-back left over from an earlier run lands in this one
  const std::vector<std::string> argv = {
      config.agent_bin, "sync",         "--server",     server_address, "--tier",
      tier,             "--dir",        agent_dir,      "--trust-root", root_file,
      "--platform",     "linux",        "--arch",       "x86_64",       "--json"};
  const double server_cpu_before = ProcessCpuSeconds(server_pid);
  const auto start = std::chrono::steady_clock::now();
  // stdout (the JSON) and stderr (empty unless it fails) both go to `json_path`.
  MD_ASSIGN_OR_RETURN(pid_t pid, Spawn(argv, json_path));
  // Poll VmHWM on a second thread; this one waits for the exit without reaping it, so that
  // the wall clock stops at the exit and wait4 can still return the child's rusage.
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
  while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0 &&
         errno == EINTR) {
  }
  Sample sample;
  sample.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  done.store(true);
  poller.join();
  sample.hwm_kib = hwm.load();
  int status = 0;
  rusage usage{};
  while (::wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  (void)ChildAlive(pid);  // the child is reaped: this only drops it from the reaper's list
  sample.maxrss_kib = usage.ru_maxrss;
  sample.cpu_seconds = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
                       (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6 +
                       ProcessCpuSeconds(server_pid) - server_cpu_before;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    auto output = ReadFileToString(json_path);
    return absl::InternalError(absl::StrCat("modeldist-agent sync failed (wait status ", status,
                                            "): ", output.ok() ? *output : ""));
  }
  MD_ASSIGN_OR_RETURN(std::string json, ReadFileToString(json_path));
  if (json.find("\"ok\":true") == std::string::npos ||
      json.find("\"action\":\"activated\"") == std::string::npos ||
      json.find(absl::StrCat("\"bytesReceived\":", size, "}")) == std::string::npos) {
    return absl::InternalError(absl::StrCat("unexpected agent result: ", json));
  }
  RemoveTree(agent_dir);
  return sample;
}

// Times one shell pipeline; its stdout must contain `expect_hex`. CPU counts the pipeline's
// processes and nginx's workers.
absl::StatusOr<Sample> TimePeer(const std::string& command, const std::string& stdout_path,
                                const std::string& expect_hex, const std::string& out,
                                pid_t nginx) {
  ::unlink(out.c_str());
  ::sync();
  const double cpu_before = ReapedChildrenCpuSeconds() + ProcessCpuSeconds(nginx, true);
  Sample sample;
  MD_ASSIGN_OR_RETURN(sample.seconds, TimeShell(command, stdout_path));
  sample.cpu_seconds = ReapedChildrenCpuSeconds() + ProcessCpuSeconds(nginx, true) - cpu_before;
  MD_ASSIGN_OR_RETURN(std::string printed, ReadFileToString(stdout_path));
  if (printed.find(expect_hex) == std::string::npos) {
    return absl::DataLossError(absl::StrCat("peer pipeline printed the wrong digest: ", printed));
  }
  ::unlink(out.c_str());
  return sample;
}

// Writes the pinned trust root the agent needs: SignedTrustRoot version 1, as an app ships it.
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

std::string Mib(int64_t kib) { return absl::StrFormat("%.1f MiB", kib / 1024.0); }

absl::Status Run(const Config& config) {
  Resources res;
  MD_ASSIGN_OR_RETURN(res.dir, MakeTempDir(config.tmp_parent, "agent"));
  // Source + the server's blob + the agent's copy (and the peer's, which is gone by then).
  MD_RETURN_IF_ERROR(CheckFreeSpace(res.dir, 3 * config.size));
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

  // nginx serves a hard link to the source file.
  MD_RETURN_IF_ERROR(MakeDirs(res.dir + "/www"));
  if (::link(art.c_str(), (res.dir + "/www/art.gguf").c_str()) != 0) {
    return ErrnoStatus(errno, "link art.gguf into www");
  }
  MD_ASSIGN_OR_RETURN(ServerProcess nginx, StartNginx(res.dir + "/nginx", res.dir + "/www"));
  res.nginx = nginx.pid;
  const std::string url = absl::StrCat("http://", nginx.address, "/art.gguf");
  std::cerr << "nginx pid " << nginx.pid << " on " << nginx.address << "\n";
  ::sync();

  std::map<std::string, std::vector<double>> gbps;        // row name -> GB/s per rep
  std::map<std::string, std::vector<double>> cpu_per_gb;  // row name -> CPU s per GB per rep
  std::vector<std::string> order;
  std::vector<int64_t> hwm_kib;
  std::vector<int64_t> maxrss_kib;
  auto record = [&](const std::string& row, const Sample& sample) {
    if (gbps.find(row) == gbps.end()) order.push_back(row);
    gbps[row].push_back(GBps(config.size, sample.seconds));
    cpu_per_gb[row].push_back(sample.cpu_seconds / (config.size / 1e9));
    std::string rss;
    if (sample.hwm_kib >= 0) {
      rss = absl::StrCat("  VmHWM ", Mib(sample.hwm_kib), ", ru_maxrss ", Mib(sample.maxrss_kib));
    }
    std::cerr << absl::StrFormat("  %-44s %6.3f s  %5.2f GB/s  CPU %5.2f s%s\n", row,
                                 sample.seconds, GBps(config.size, sample.seconds),
                                 sample.cpu_seconds, rss);
  };
  const std::string p_verify = "peer P_verify: curl -o FILE && openssl dgst";
  const std::string p_fsync = "peer P_verify + sync FILE (fsync)";
  const std::string ours = "ours modeldist-agent sync (fsync, activate)";

  for (int rep = 1; rep <= config.reps; ++rep) {
    std::cerr << "rep " << rep << "/" << config.reps << "\n";
    MD_ASSIGN_OR_RETURN(Sample t, TimePeer(absl::StrCat("curl -sf -o ", out, " ", url,
                                                        " && openssl dgst -sha256 ", out),
                                           dgst_out, digest.hex, out, nginx.pid));
    record(p_verify, t);
    MD_ASSIGN_OR_RETURN(t, TimeAgent(config, server.address, server.pid, "bench", root_file,
                                     agent_dir, res.dir, config.size));
    record(ours, t);
    hwm_kib.push_back(t.hwm_kib);
    maxrss_kib.push_back(t.maxrss_kib);
    if (!config.core_only) {
      MD_ASSIGN_OR_RETURN(t, TimePeer(absl::StrCat("curl -sf -o ", out, " ", url,
                                                   " && openssl dgst -sha256 ", out, " && sync ",
                                                   out),
                                      dgst_out, digest.hex, out, nginx.pid));
      record(p_fsync, t);
    }
  }

  const double peer = Median(gbps[p_verify]);
  std::cout << absl::StrFormat(
      "\nagent_bench: %d bytes (%.2f GiB) incompressible GGUF, loopback, server chunk %d, "
      "%d reps; GB/s = 10^9 B/s, median (min-max)\n",
      config.size, config.size / double(1 << 30), config.server_chunk, config.reps);
  std::cout << absl::StrFormat("%-46s %-20s %-18s %s\n", "pipeline", "GB/s", "ratio vs P_verify",
                               "CPU s per GB (all processes)");
  for (const std::string& row : order) {
    std::cout << absl::StrFormat("%-46s %-20s %-18s %s\n", row, MedianRange(gbps[row]),
                                 absl::StrFormat("%.2fx", Median(gbps[row]) / peer),
                                 MedianRange(cpu_per_gb[row]));
  }
  std::vector<double> paired;
  for (int i = 0; i < config.reps; ++i) paired.push_back(gbps[ours][i] / gbps[p_verify][i]);
  const double agent = Median(gbps[ours]);
  std::cout << absl::StrFormat(
      "RESULT agent sync: %.2f GB/s (with fsync) / P_verify %.2f GB/s (no fsync) = %.2fx "
      "(per-rep ratios %s; target >= %.1fx: %s)\n",
      agent, peer, agent / peer, MedianRange(paired), kTargetRatio,
      agent / peer >= kTargetRatio ? "MET" : "MISSED");
  if (!config.core_only) {
    std::cout << absl::StrFormat("RESULT agent sync vs P_verify+fsync: %.2fx\n",
                                 agent / Median(gbps[p_fsync]));
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
    StopChild(res.nginx);
    res.nginx = -1;
    ::unlink((res.dir + "/www/art.gguf").c_str());
    ::unlink(art.c_str());
    MD_RETURN_IF_ERROR(CheckFreeSpace(res.dir, 2 * config.big_size));
    const std::string big = res.dir + "/big.gguf";
    FileDigest big_digest;
    MD_ASSIGN_OR_RETURN(Published big_artifact, MakeAndPublish(big, config.big_size,
                                                               server.address, "bench-big",
                                                               &big_digest));
    (void)big_artifact;
    ::unlink(big.c_str());  // the server holds its own copy
    ::sync();
    std::cerr << "big: one sync of " << config.big_size << " bytes\n";
    MD_ASSIGN_OR_RETURN(Sample t, TimeAgent(config, server.address, server.pid, "bench-big",
                                            root_file, agent_dir, res.dir, config.big_size));
    std::cerr << absl::StrFormat(
        "  %-44s %6.3f s  %5.2f GB/s  CPU %5.2f s (%.2f s/GB)  VmHWM %s, ru_maxrss %s\n", ours,
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

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  using namespace modeldist;
  bench::InstallChildReaper();
  Flags flags;
  flags.Add("size", "BYTES", "1GiB", "artifact size for the throughput comparison and RSS");
  flags.Add("reps", "N", "3", "repetitions of every measurement (the median is reported)");
  flags.AddBool("big", "also measure the agent's peak RSS (and speed) once at --big-size");
  flags.Add("big-size", "BYTES", "8GiB", "artifact size of the --big run");
  flags.Add("server-chunk", "BYTES", "1MiB", "modeldist-server --chunk-size (Read messages)");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("agent-bin", "PATH", MODELDIST_AGENT_BIN, "modeldist-agent binary");
  flags.Add("tmp", "DIR", "/tmp", "where the artifacts and downloads go (deleted at the end)");
  flags.AddBool("core-only", "skip the P_verify + fsync row");
  flags.AddBool("help", "show this help");
  if (auto s = flags.Parse(argc, argv); !s.ok()) {
    std::cerr << s.message() << "\n";
    return 2;
  }
  if (flags.GetBool("help")) {
    std::cout << "agent_bench: modeldist-agent sync vs nginx+curl+openssl, and its peak RSS\n"
              << flags.Help();
    return 0;
  }
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
  absl::Status status = bench::Run(config);
  if (!status.ok()) {
    std::cerr << "agent_bench failed: " << status << "\n";
    return 1;
  }
  return 0;
}
