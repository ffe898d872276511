// manifest_bench: GetManifest throughput and latency, modeldist vs nginx static JSON + wrk.
//
// Starts modeldist-server with a small artifact bound to tier `bench`
// (StartServerWithSmallModel), then runs a closed-loop GetManifest load (bench/grpc_load.h):
// C channels (each its own TCP connection), driven by one CompletionQueue thread per driver CPU,
// with K calls always in flight on each, for --warmup seconds unmeasured and then --duration
// seconds measured. Prints QPS, p50/p99/p99.9 latency and the server's CPU per request for
// each C x K.
// Peer: nginx serving a static ~300 B JSON file to `wrk --latency` with the same number of
// keep-alive connections (and 64, as in docs/perf-baselines). Target: >= 40k QPS with
// p99 < 2 ms at 32 in flight; the ratio to the peer is printed.
//
// Placement: by default (`split`) the servers (modeldist-server, nginx) get the last CPU and
// the load generators (this driver, wrk) the others, as gRPC's benchmark driver does on one
// machine. On two cores a closed-loop load generator sharing the server's cores takes its time
// slices, and p99 then measures that contention; `--placement shared` measures it anyway.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "bench/grpc_load.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/registry.grpc.pb.h"

namespace modeldist::bench {
namespace {

constexpr char kToken[] = "bench-admin-token-0123456789abcdef";
constexpr double kTargetQps = 40000;
constexpr double kTargetP99Ms = 2.0;

// About the size of a signed manifest as JSON (a real one is ~300 B of protobuf).
constexpr char kStaticJson[] =
    R"({"tier":"bench","channel":"stable","platform":"PLATFORM_LINUX","arch":"ARCH_X86_64",)"
    R"("model":"models/bench","version":"models/bench/versions/v1","artifact":{"digest":)"
    R"("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",)"
    R"("size_bytes":4096,"chunk_size":262144},"sequence":1,"expires_at":"2026-12-01T00:00:00Z"})"
    "\n";

struct Figures {
  double qps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double p999_ms = 0;
  // CPU the server process (with its children: nginx's workers) spent per answered request
  // while measured: less sensitive to a busy machine than QPS.
  double server_cpu_us = 0;
  int64_t errors = 0;
};

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

// One closed-loop GetManifest load (grpc_load's RunLoads, one driving thread per CPU the
// driver may use, at most one per channel) in the figures the table prints.
Figures RunLoad(const std::string& address, pid_t server, const LoadShape& shape, int driver_cpus,
                double warmup_s, double duration_s) {
  LoadWindow w =
      RunLoads(address, server, {ManifestLoad(shape, driver_cpus)}, warmup_s, duration_s);
  const bench::LoadResult& load = w.loads[0];
  Figures result;
  result.qps = load.calls_per_s;
  result.p50_ms = load.p50_ms;
  result.p99_ms = load.p99_ms;
  result.p999_ms = load.p999_ms;
  if (load.calls > 0) result.server_cpu_us = w.server_cpu_s * 1e6 / load.calls;
  result.errors = load.ErrorCount();
  return result;
}

// Parses "123.45us" / "1.20ms" / "2.00s" into milliseconds.
double WrkDurationMs(const std::string& text) {
  double value = std::atof(text.c_str());
  if (absl::EndsWith(text, "us")) return value / 1000;
  if (absl::EndsWith(text, "ms")) return value;
  if (absl::EndsWith(text, "s")) return value * 1000;
  return value;
}

absl::StatusOr<Figures> RunWrk(const std::string& url, pid_t nginx, int threads, int connections,
                               double warmup_s, double duration_s, const std::string& out_path) {
  // wrk has no warm-up phase: a short unrecorded run first.
  MD_RETURN_IF_ERROR(TimeShell(absl::StrFormat("wrk -t%d -c%d -d%ds %s", threads, connections,
                                               std::max(1, static_cast<int>(warmup_s)), url))
                         .status());
  const double cpu_start = ProcessCpuSeconds(nginx, /*with_children=*/true);
  MD_RETURN_IF_ERROR(TimeShell(absl::StrFormat("wrk -t%d -c%d -d%ds --latency %s", threads,
                                               connections, static_cast<int>(duration_s), url),
                               out_path)
                         .status());
  const double cpu_used = ProcessCpuSeconds(nginx, /*with_children=*/true) - cpu_start;
  MD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(out_path));
  Figures result;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (f.size() == 2 && f[0] == "50%") result.p50_ms = WrkDurationMs(f[1]);
    if (f.size() == 2 && f[0] == "99%") result.p99_ms = WrkDurationMs(f[1]);
    if (f.size() == 2 && f[0] == "Requests/sec:") result.qps = std::atof(f[1].c_str());
    if (line.find("Non-2xx") != std::string::npos ||
        line.find("Socket errors") != std::string::npos) {
      result.errors = 1;
    }
  }
  if (result.qps == 0) return absl::InternalError(absl::StrCat("cannot parse wrk output:\n", text));
  result.server_cpu_us = cpu_used * 1e6 / (result.qps * static_cast<int>(duration_s));
  return result;
}

struct Config {
  double warmup_s = 1;
  double duration_s = 5;
  int reps = 3;
  std::vector<LoadShape> shapes;
  std::vector<int> wrk_connections;
  std::string server_bin;
  std::string tmp_parent;
  // The driver is already pinned to placement.driver_cpus (see main).
  Placement placement;
  std::string placement_name;
  int driver_cpus = 1;  // CPUs the driver may use
  // Publish a second version and start a 50 % rollout to it before measuring.
  bool rollout = false;
};

struct Row {
  std::string name;
  std::vector<double> qps, p50, p99, p999, cpu_us;
  int64_t errors = 0;
  void Add(const Figures& r) {
    qps.push_back(r.qps);
    cpu_us.push_back(r.server_cpu_us);
    p50.push_back(r.p50_ms);
    p99.push_back(r.p99_ms);
    p999.push_back(r.p999_ms);
    errors += r.errors;
  }
};

// wrk's threads follow the same rule as ours: one per driver CPU.
int WrkThreads(const Config& config, size_t i) {
  return std::clamp(config.driver_cpus, 1, config.wrk_connections[i]);
}

absl::Status Run(const Config& config) {
  Resources res;
  MD_ASSIGN_OR_RETURN(res.dir, MakeTempDir(config.tmp_parent, "manifest"));
  MD_ASSIGN_OR_RETURN(
      SmallModelServer small,
      StartServerWithSmallModel(config.server_bin, res.dir, kToken, config.placement.server_cpus));
  res.server = small.server.pid;
  const ServerProcess& server = small.server;
  if (config.rollout) {
    const std::string art2 = res.dir + "/small2.bin";
    MD_ASSIGN_OR_RETURN(FileDigest digest2, MakeIncompressibleFile(art2, 4096));
    MD_RETURN_IF_ERROR(
        PublishFile(Connect(server.address), kToken, art2, digest2, "bench", "v2", "").status());
    auto registry = v1::RegistryService::NewStub(Connect(server.address));
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
    v1::StartRolloutRequest start;
    start.set_tier("bench");
    start.set_to_version("models/bench/versions/v2");
    start.set_basis_points(5000);
    v1::Rollout rollout;
    grpc::Status s = registry->StartRollout(&context, start, &rollout);
    if (!s.ok()) return absl::InternalError(absl::StrCat("StartRollout: ", s.error_message()));
    std::cerr << "rollout " << rollout.id() << " active: 50 % of devices on v2\n";
  }
  {
    grpc::ByteBuffer response;
    grpc::Status s = CallOnce(server.address, kGetManifestMethod,
                              ManifestLoad(LoadShape(), 1).request(0), &response);
    if (!s.ok()) return absl::InternalError(absl::StrCat("GetManifest: ", s.error_message()));
    std::cerr << "modeldist-server pid " << server.pid << " on " << server.address
              << "; SignedManifest is " << response.Length() << " bytes\n";
  }

  const bool have_wrk = ::access("/usr/bin/wrk", X_OK) == 0;
  std::string url;
  if (have_wrk) {
    MD_RETURN_IF_ERROR(MakeDirs(res.dir + "/www"));
    MD_RETURN_IF_ERROR(WriteFileAtomically(res.dir + "/www/manifest.json", kStaticJson, 0644));
    const std::vector<int>& cpus = config.placement.server_cpus;
    const int workers = cpus.empty() ? 2 : static_cast<int>(cpus.size());
    MD_ASSIGN_OR_RETURN(ServerProcess nginx,
                        StartNginx(res.dir + "/nginx", res.dir + "/www", workers, cpus));
    res.nginx = nginx.pid;
    url = absl::StrCat("http://", nginx.address, "/manifest.json");
    std::cerr << "nginx pid " << nginx.pid << " on " << nginx.address << " serving "
              << sizeof(kStaticJson) - 1 << " B JSON\n";
  }

  std::vector<Row> ours(config.shapes.size());
  std::vector<Row> peers(config.wrk_connections.size());
  for (size_t i = 0; i < config.shapes.size(); ++i) {
    ours[i].name = absl::StrFormat("ours gRPC GetManifest %d ch x %d in flight",
                                   config.shapes[i].channels, config.shapes[i].in_flight);
  }
  for (size_t i = 0; i < config.wrk_connections.size(); ++i) {
    peers[i].name = absl::StrFormat("peer nginx+wrk -t%d -c%d", WrkThreads(config, i),
                                    config.wrk_connections[i]);
  }
  // Interleaved repetitions, so that load drift on the shared machine hits both sides.
  for (int rep = 1; rep <= config.reps; ++rep) {
    for (size_t i = 0; i < config.shapes.size(); ++i) {
      Figures r = RunLoad(server.address, server.pid, config.shapes[i], config.driver_cpus,
                          config.warmup_s, config.duration_s);
      std::cerr << absl::StrFormat(
          "rep %d %-44s %8.0f QPS p50 %.3f p99 %.3f ms, server CPU %.1f us/req\n", rep,
          ours[i].name, r.qps, r.p50_ms, r.p99_ms, r.server_cpu_us);
      ours[i].Add(r);
    }
    for (size_t i = 0; have_wrk && i < config.wrk_connections.size(); ++i) {
      MD_ASSIGN_OR_RETURN(Figures r,
                          RunWrk(url, res.nginx, WrkThreads(config, i), config.wrk_connections[i],
                                 config.warmup_s, config.duration_s, res.dir + "/wrk.txt"));
      std::cerr << absl::StrFormat(
          "rep %d %-44s %8.0f QPS p50 %.3f p99 %.3f ms, server CPU %.1f us/req\n", rep,
          peers[i].name, r.qps, r.p50_ms, r.p99_ms, r.server_cpu_us);
      peers[i].Add(r);
    }
  }

  std::cout << absl::StrFormat(
      "\nmanifest_bench: %d reps x %.0f s measured after %.0f s warm-up; median (min-max)\n"
      "placement %s: servers on CPU %s, load generators on CPU %s\n",
      config.reps, config.duration_s, config.warmup_s, config.placement_name,
      CpuListText(config.placement.server_cpus), CpuListText(config.placement.driver_cpus));
  std::cout << absl::StrFormat("%-44s %-24s %-22s %-22s %-20s %s\n", "load", "QPS", "p50 ms",
                               "p99 ms", "server CPU us/req", "errors");
  auto print = [](const Row& row, bool with_p999) {
    std::cout << absl::StrFormat(
        "%-44s %-24s %-22s %-22s %-20s %d%s\n", row.name, MedianRange(row.qps, 0),
        MedianRange(row.p50, 3), MedianRange(row.p99, 3), MedianRange(row.cpu_us, 1), row.errors,
        with_p999 ? absl::StrFormat("  (p99.9 %.3f ms)", Median(row.p999)) : "");
  };
  for (const Row& row : ours) print(row, true);
  if (!have_wrk) {
    std::cout << "peer skipped: /usr/bin/wrk not installed (apt-get install -y wrk)\n";
  }
  for (const Row& row : peers) {
    if (!row.qps.empty()) print(row, false);
  }
  for (const Row& row : ours) {
    double qps = Median(row.qps);
    double p99 = Median(row.p99);
    std::string ratio = "n/a";
    if (have_wrk && !peers.empty() && !peers[0].qps.empty()) {
      ratio = absl::StrFormat("%.2fx of %s (%.0f QPS)", qps / Median(peers[0].qps), peers[0].name,
                              Median(peers[0].qps));
    }
    std::cout << absl::StrFormat(
        "RESULT manifest %s, placement %s: %.0f QPS (target >= %.0f: %s), p99 %.3f ms "
        "(target < %.1f: %s), ratio %s\n",
        row.name, config.placement_name, qps, kTargetQps, qps >= kTargetQps ? "MET" : "MISSED", p99,
        kTargetP99Ms, p99 < kTargetP99Ms ? "MET" : "MISSED", ratio);
  }
  return absl::OkStatus();
}

// The driver's own flags (DriverMain adds --help).
void AddFlags(Flags& flags) {
  flags.Add("shapes", "LIST", "1x32,2x16", "CHANNELSxIN_FLIGHT loads to run");
  flags.Add("wrk-connections", "LIST", "32,64", "wrk -c values for the peer (first = ratio base)");
  flags.Add("warmup", "SECONDS", "1", "unmeasured seconds before each measurement");
  flags.Add("duration", "SECONDS", "5", "measured seconds");
  flags.Add("reps", "N", "3", "repetitions (the median is reported)");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("tmp", "DIR", "/tmp", "scratch parent directory (deleted at the end)");
  flags.Add("placement", "split|shared", "split",
            "split: servers on the last CPU, load generators on the others; shared: anywhere");
  flags.AddBool("rollout", "measure with a 50 % rollout active (devices vary per call)");
}

int RunWithFlags(const Flags& flags) {
  bench::Config config;
  config.warmup_s = std::atof(flags.Get("warmup").c_str());
  config.duration_s = std::atof(flags.Get("duration").c_str());
  config.reps = std::max(1, std::atoi(flags.Get("reps").c_str()));
  for (absl::string_view part : absl::StrSplit(flags.Get("shapes"), ',')) {
    std::optional<bench::LoadShape> shape = bench::ParseLoadShape(std::string(part));
    if (!shape) {
      std::cerr << "bad --shapes entry \"" << part << "\" (want e.g. 2x16)\n";
      return 2;
    }
    config.shapes.push_back(*shape);
  }
  for (absl::string_view part : absl::StrSplit(flags.Get("wrk-connections"), ',')) {
    int c = 0;
    if (!absl::SimpleAtoi(part, &c) || c < 2) {
      std::cerr << "bad --wrk-connections entry \"" << part << "\"\n";
      return 2;
    }
    config.wrk_connections.push_back(c);
  }
  if (config.duration_s < 1) {
    std::cerr << "--duration must be >= 1\n";
    return 2;
  }
  config.server_bin = flags.Get("server-bin");
  config.tmp_parent = flags.Get("tmp");
  config.rollout = flags.GetBool("rollout");
  // Before any gRPC use, so that gRPC's threads in this process inherit the CPU set.
  if (!bench::PlaceDriverByFlag(flags, &config.placement_name, &config.placement,
                                &config.driver_cpus)) {
    return 2;
  }
  return bench::DriverExit("manifest_bench", bench::Run(config));
}

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  return modeldist::bench::DriverMain(argc, argv,
                                      "manifest_bench: GetManifest QPS/latency vs nginx+wrk",
                                      modeldist::bench::AddFlags, modeldist::bench::RunWithFlags);
}
