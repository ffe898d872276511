// download_bench: verified artifact download, modeldist vs nginx+curl+openssl, in one run.
//
// Creates an incompressible file (default 1 GiB), serves it from nginx (sendfile) and from
// modeldist-server, and times, REPS times each, interleaved so that drift in the machine's
// load hits both sides alike:
//   peer  P_verify: `curl -s -o FILE URL && openssl dgst -sha256 FILE` (the whole pipeline)
//   ours: DownloadArtifact (SHA-256 and write in one pass, no fsync) at several server chunk
//         sizes (the server is restarted with --chunk-size for each, so every such read is
//         the server's first and it hashes every chunk it sends), and a second read from one
//         server process (chunks it verified, sent from the page cache without hashing).
// Secondary rows (skip with --core-only): P_pipe `curl -s URL | openssl dgst -sha256`,
// transport-only `curl -s -o /dev/null URL`, and ours with fsync before the rename.
// Prints median (min-max) GB/s (10^9 B/s) and ours/peer ratios; the target is >= 1.3x P_verify
// at the default chunk size.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "client/download/artifact_download.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "modeldist/v1/artifact.grpc.pb.h"

namespace modeldist::bench {
namespace {

constexpr char kToken[] = "bench-admin-token-0123456789abcdef";
constexpr double kTargetRatio = 1.3;

struct Config {
  int64_t size = 0;
  int reps = 3;
  std::vector<int64_t> chunk_sizes;
  int64_t default_chunk = 0;
  bool core_only = false;
  std::string server_bin;
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

std::string SizeName(int64_t bytes) {
  if (bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, "MiB");
  return absl::StrCat(bytes >> 10, "KiB");
}

// One timed run: wall-clock seconds, and CPU seconds of every process involved (client and
// server), which shows the cost per byte even when other load on the machine skews the clock.
struct Sample {
  double seconds = 0;
  double cpu_seconds = 0;
  // Ours only: the server's part of cpu_seconds (the rest is the client's); -1 for peers.
  double server_cpu_seconds = -1;
};

// Times one DownloadArtifact from a server freshly started with `chunk`. The server checks
// every chunk it sends against the blob's chain; a fresh process has verified nothing, so
// this is the cost of a first read. With `second_read` one untimed download goes first, and
// the timed one gets chunks the process verified while their pages are still cached (which
// it sends without hashing them again, storage/served_bytes_check.h).
absl::StatusOr<Sample> TimeOurs(const Config& config, Resources& res, int64_t chunk,
                                const std::string& data_dir, const std::string& token_file,
                                const Published& artifact, const std::string& out, bool fsync,
                                bool second_read = false) {
  MD_ASSIGN_OR_RETURN(ServerProcess server,
                      StartModeldistServer(config.server_bin, data_dir, token_file, chunk,
                                           res.dir + "/server.log"));
  res.server = server.pid;
  std::shared_ptr<grpc::Channel> channel = Connect(server.address);
  auto stub = v1::ArtifactService::NewStub(channel);
  // Connect first, so that channel setup is not counted (curl's is, but it is < 1 ms).
  {
    grpc::ClientContext context;
    v1::StatRequest request;
    request.set_digest(artifact.digest);
    v1::StatResponse response;
    grpc::Status s = stub->Stat(&context, request, &response);
    if (!s.ok() || response.read_message_bytes() != chunk) {
      return absl::InternalError(
          absl::StrCat("Stat failed or wrong chunk size: ", s.error_message(), " ",
                       response.read_message_bytes()));
    }
  }
  ::unlink(out.c_str());
  client::DownloadOptions options;
  options.fsync = fsync;
  options.resume = false;
  if (second_read) {
    auto first =
        client::DownloadArtifact(channel, artifact.digest, artifact.size_bytes, out, options);
    MD_RETURN_IF_ERROR(first.status());
    ::unlink(out.c_str());
  }
  const double client_cpu_before = SelfCpuSeconds();
  const double server_cpu_before = ProcessCpuSeconds(server.pid);
  auto start = std::chrono::steady_clock::now();
  auto result =
      client::DownloadArtifact(channel, artifact.digest, artifact.size_bytes, out, options);
  Sample sample;
  sample.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  sample.server_cpu_seconds = ProcessCpuSeconds(server.pid) - server_cpu_before;
  sample.cpu_seconds = SelfCpuSeconds() - client_cpu_before + sample.server_cpu_seconds;
  MD_RETURN_IF_ERROR(result.status());
  if (result->bytes_received != artifact.size_bytes) {
    return absl::InternalError("DownloadArtifact received the wrong number of bytes");
  }
  ::unlink(out.c_str());
  StopChild(res.server);
  res.server = -1;
  return sample;
}

// Times one shell pipeline; when `expect_hex` is set its stdout must contain that digest. CPU
// counts the pipeline's processes and nginx's workers.
absl::StatusOr<Sample> TimePeer(const std::string& command, const std::string& stdout_path,
                                const std::string& expect_hex, const std::string& out,
                                pid_t nginx) {
  ::unlink(out.c_str());
  const double cpu_before = ReapedChildrenCpuSeconds() + ProcessCpuSeconds(nginx, true);
  Sample sample;
  MD_ASSIGN_OR_RETURN(sample.seconds, TimeShell(command, stdout_path));
  sample.cpu_seconds = ReapedChildrenCpuSeconds() + ProcessCpuSeconds(nginx, true) - cpu_before;
  if (!expect_hex.empty()) {
    MD_ASSIGN_OR_RETURN(std::string printed, ReadFileToString(stdout_path));
    if (printed.find(expect_hex) == std::string::npos) {
      return absl::DataLossError(absl::StrCat("peer pipeline printed the wrong digest: ", printed));
    }
  }
  ::unlink(out.c_str());
  return sample;
}

absl::Status Run(const Config& config) {
  Resources res;
  MD_ASSIGN_OR_RETURN(res.dir, MakeTempDir(config.tmp_parent, "download"));
  const std::string token_file = res.dir + "/token";
  MD_RETURN_IF_ERROR(WriteFileAtomically(token_file, kToken, 0600));
  const std::string art = res.dir + "/art.bin";
  const std::string out = res.dir + "/out.bin";
  const std::string dgst_out = res.dir + "/dgst.txt";

  std::cerr << "creating " << config.size << " incompressible bytes in " << art << "\n";
  MD_ASSIGN_OR_RETURN(FileDigest digest, MakeIncompressibleFile(art, config.size));

  // nginx serves a hard link to the same file, so both servers read the same cached pages.
  MD_RETURN_IF_ERROR(MakeDirs(res.dir + "/www"));
  if (::link(art.c_str(), (res.dir + "/www/art.bin").c_str()) != 0) {
    return ErrnoStatus(errno, "link art.bin into www");
  }
  MD_ASSIGN_OR_RETURN(ServerProcess nginx, StartNginx(res.dir + "/nginx", res.dir + "/www"));
  res.nginx = nginx.pid;
  const std::string url = absl::StrCat("http://", nginx.address, "/art.bin");
  std::cerr << "nginx pid " << nginx.pid << " on " << nginx.address << "\n";

  const std::string data_dir = res.dir + "/data";
  Published artifact;
  {
    MD_ASSIGN_OR_RETURN(ServerProcess server,
                        StartModeldistServer(config.server_bin, data_dir, token_file,
                                             config.default_chunk, res.dir + "/server.log"));
    res.server = server.pid;
    std::cerr << "modeldist-server pid " << server.pid << " on " << server.address
              << "; publishing\n";
    auto start = std::chrono::steady_clock::now();
    MD_ASSIGN_OR_RETURN(artifact, PublishFile(Connect(server.address), kToken, art, digest, "bench",
                                              "v1", "bench"));
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cerr << absl::StrFormat("published %s in %.2f s (%.2f GB/s upload+verify)\n",
                                 artifact.digest, seconds, GBps(config.size, seconds));
    StopChild(res.server);
    res.server = -1;
  }
  // The published blob is a copy; drop the source's dirty pages from the competition.
  ::sync();

  std::map<std::string, std::vector<double>> gbps;        // row name -> GB/s per rep
  std::map<std::string, std::vector<double>> cpu_per_gb;  // row name -> CPU s per GB per rep
  // Ours only: row name -> the server's CPU s per GB per rep (the client's is the rest).
  std::map<std::string, std::vector<double>> server_cpu_per_gb;
  std::vector<std::string> order;
  auto record = [&](const std::string& row, const Sample& sample) {
    if (gbps.find(row) == gbps.end()) order.push_back(row);
    gbps[row].push_back(GBps(config.size, sample.seconds));
    cpu_per_gb[row].push_back(sample.cpu_seconds / (config.size / 1e9));
    std::string split;
    if (sample.server_cpu_seconds >= 0) {
      server_cpu_per_gb[row].push_back(sample.server_cpu_seconds / (config.size / 1e9));
      split = absl::StrFormat(" (client %.2f s, server %.2f s)",
                              sample.cpu_seconds - sample.server_cpu_seconds,
                              sample.server_cpu_seconds);
    }
    std::cerr << absl::StrFormat("  %-44s %6.3f s  %5.2f GB/s  CPU %5.2f s%s\n", row,
                                 sample.seconds, GBps(config.size, sample.seconds),
                                 sample.cpu_seconds, split);
  };
  const std::string p_verify = "peer P_verify: curl -o FILE && openssl dgst";
  const std::string p_pipe = "peer P_pipe:   curl | openssl dgst";
  const std::string p_raw = "peer curl -o /dev/null (transport only)";
  auto ours_row = [](int64_t chunk) {
    return absl::StrCat("ours DownloadArtifact chunk=", SizeName(chunk));
  };
  const std::string ours_fsync =
      absl::StrCat("ours DownloadArtifact chunk=", SizeName(config.default_chunk), " +fsync");
  const std::string ours_second =
      absl::StrCat("ours DownloadArtifact chunk=", SizeName(config.default_chunk), " 2nd read");

  for (int rep = 1; rep <= config.reps; ++rep) {
    std::cerr << "rep " << rep << "/" << config.reps << "\n";
    MD_ASSIGN_OR_RETURN(Sample t, TimePeer(absl::StrCat("curl -sf -o ", out, " ", url,
                                                        " && openssl dgst -sha256 ", out),
                                           dgst_out, digest.hex, out, nginx.pid));
    record(p_verify, t);
    for (int64_t chunk : config.chunk_sizes) {
      MD_ASSIGN_OR_RETURN(t, TimeOurs(config, res, chunk, data_dir, token_file, artifact, out,
                                      /*fsync=*/false));
      record(ours_row(chunk), t);
    }
    MD_ASSIGN_OR_RETURN(t, TimeOurs(config, res, config.default_chunk, data_dir, token_file,
                                    artifact, out, /*fsync=*/false, /*second_read=*/true));
    record(ours_second, t);
    if (!config.core_only) {
      MD_ASSIGN_OR_RETURN(
          t, TimePeer(absl::StrCat("set -o pipefail; curl -sf ", url, " | openssl dgst -sha256"),
                      dgst_out, digest.hex, out, nginx.pid));
      record(p_pipe, t);
      MD_ASSIGN_OR_RETURN(
          t, TimePeer(absl::StrCat("curl -sf -o /dev/null ", url), dgst_out, "", out, nginx.pid));
      record(p_raw, t);
      MD_ASSIGN_OR_RETURN(t, TimeOurs(config, res, config.default_chunk, data_dir, token_file,
                                      artifact, out, /*fsync=*/true));
      record(ours_fsync, t);
    }
  }

  const double peer = Median(gbps[p_verify]);
  std::cout << absl::StrFormat(
      "\ndownload_bench: %d bytes (%.2f GiB) incompressible, loopback, %d reps; "
      "GB/s = 10^9 B/s, median (min-max)\n",
      config.size, config.size / double(1 << 30), config.reps);
  std::cout << absl::StrFormat("%-46s %-20s %-18s %s\n", "pipeline", "GB/s", "ratio vs P_verify",
                               "CPU s per GB (all processes)");
  for (const std::string& row : order) {
    std::cout << absl::StrFormat("%-46s %-20s %-18s %s\n", row, MedianRange(gbps[row]),
                                 absl::StrFormat("%.2fx", Median(gbps[row]) / peer),
                                 MedianRange(cpu_per_gb[row]));
  }
  for (const std::string& row : order) {
    if (server_cpu_per_gb.count(row) == 0) continue;
    std::vector<double> client;
    for (size_t i = 0; i < cpu_per_gb[row].size(); ++i) {
      client.push_back(cpu_per_gb[row][i] - server_cpu_per_gb[row][i]);
    }
    std::cout << absl::StrFormat("  %-44s CPU s per GB: client %s, server %s\n", row,
                                 MedianRange(client), MedianRange(server_cpu_per_gb[row]));
  }
  int64_t best_chunk = config.chunk_sizes.front();
  for (int64_t chunk : config.chunk_sizes) {
    if (Median(gbps[ours_row(chunk)]) > Median(gbps[ours_row(best_chunk)])) best_chunk = chunk;
  }
  const double ours = Median(gbps[ours_row(config.default_chunk)]);
  std::vector<double> paired;
  for (int i = 0; i < config.reps; ++i) {
    paired.push_back(gbps[ours_row(config.default_chunk)][i] / gbps[p_verify][i]);
  }
  std::cout << absl::StrFormat(
      "RESULT download: ours(chunk=%s) %.2f GB/s / P_verify %.2f GB/s = %.2fx "
      "(per-rep ratios %s; target >= %.1fx: %s); fastest chunk measured: %s\n",
      SizeName(config.default_chunk), ours, peer, ours / peer, MedianRange(paired), kTargetRatio,
      ours / peer >= kTargetRatio ? "MET" : "MISSED", SizeName(best_chunk));
  return absl::OkStatus();
}

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  using namespace modeldist;
  bench::InstallChildReaper();
  Flags flags;
  flags.Add("size", "BYTES", "1GiB", "artifact size");
  flags.Add("reps", "N", "3", "repetitions of every measurement (the median is reported)");
  flags.Add("chunk-sizes", "LIST", "64KiB,256KiB,1MiB", "server --chunk-size values to measure");
  flags.Add("default-chunk", "BYTES", "1MiB", "the chunk size the ratio target applies to");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("tmp", "DIR", "/tmp", "where the artifact and downloads go (deleted at the end)");
  flags.AddBool("core-only", "skip P_pipe, curl -o /dev/null and the fsync row");
  flags.AddBool("help", "show this help");
  if (auto s = flags.Parse(argc, argv); !s.ok()) {
    std::cerr << s.message() << "\n";
    return 2;
  }
  if (flags.GetBool("help")) {
    std::cout << "download_bench: verified download, modeldist vs nginx+curl+openssl\n"
              << flags.Help();
    return 0;
  }
  bench::Config config;
  auto size = flags.GetInt("size");
  auto reps = flags.GetInt("reps");
  auto default_chunk = flags.GetInt("default-chunk");
  if (!size.ok() || !reps.ok() || !default_chunk.ok() || *reps < 1 || *size < 1) {
    std::cerr << "bad --size, --reps or --default-chunk\n";
    return 2;
  }
  config.size = *size;
  config.reps = static_cast<int>(*reps);
  config.default_chunk = *default_chunk;
  for (absl::string_view part : absl::StrSplit(flags.Get("chunk-sizes"), ',')) {
    auto chunk = ParseSize(std::string(part));
    if (!chunk.ok()) {
      std::cerr << chunk.status().message() << "\n";
      return 2;
    }
    config.chunk_sizes.push_back(*chunk);
  }
  bool has_default = false;
  for (int64_t c : config.chunk_sizes) has_default |= c == config.default_chunk;
  if (!has_default) config.chunk_sizes.push_back(config.default_chunk);
  config.core_only = flags.GetBool("core-only");
  config.server_bin = flags.Get("server-bin");
  config.tmp_parent = flags.Get("tmp");
  absl::Status status = bench::Run(config);
  if (!status.ok()) {
    std::cerr << "download_bench failed: " << status << "\n";
    return 1;
  }
  return 0;
}
