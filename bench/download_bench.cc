// download_bench: the agent's verified download, modeldist vs the HTTP peers, in one run.
//
// Creates an incompressible file (default 1 GiB), publishes it to modeldist-server bound to a
// tier, serves the same bytes from nginx (sendfile) and docker-registry, and times, REPS times
// each, interleaved so that drift in the machine's load hits every side alike:
//   peers P_verify: `curl -s -o FILE URL && openssl dgst -sha256 FILE`, from each peer
//   ours: DownloadChunks (client/agent/chunk_downloader.h, the agent's download: every chunk
//         checked against the manifest's chunk chain, so the whole file's SHA-256, as it
//         arrives; written with O_DIRECT; no fsync) from the gRPC source, at several server
//         Read message sizes (the server is restarted with --chunk-size for each, so every
//         such read is the server's first and it checks every chunk it sends), and a second
//         read from one server process (chunks it verified, sent from the page cache without
//         hashing them again).
// Without the agent's process start, manifest checks and activation (agent_bench has those).
// Secondary rows (skip with --core-only): P_pipe `curl -s URL | openssl dgst -sha256` and
// transport-only `curl -s -o /dev/null URL` from nginx, and ours with the fdatasync the agent
// does.
// Prints median (min-max) GB/s (10^9 B/s) and ratios; the target is >= 1.3x the faster peer at
// the default message size.
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "bench/peers.h"
#include "client/agent/chunk_downloader.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "modeldist/v1/manifest.grpc.pb.h"

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

std::string SizeName(int64_t bytes) {
  if (bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, "MiB");
  return absl::StrCat(bytes >> 10, "KiB");
}

// The artifact as a device's manifest names it (chunk chain included); the signature is the
// agent's business, not this driver's.
absl::StatusOr<v1::ManifestArtifact> FetchArtifact(const std::string& address) {
  auto stub = v1::ManifestService::NewStub(Connect(address));
  v1::GetManifestRequest request;
  request.set_tier("bench");
  request.set_platform(v1::PLATFORM_LINUX);
  request.set_arch(v1::ARCH_X86_64);
  v1::SignedManifest signed_manifest;
  grpc::ClientContext context;
  grpc::Status s = stub->GetManifest(&context, request, &signed_manifest);
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("GetManifest: ", s.error_message()));
  v1::Manifest manifest;
  if (!manifest.ParseFromString(signed_manifest.manifest())) {
    return absl::DataLossError("GetManifest returned a manifest that does not parse");
  }
  return manifest.artifact();
}

// Times one DownloadChunks from a server freshly started with `chunk`. A fresh process has
// verified nothing, so this is the cost of a first read. With `second_read` one untimed
// download goes first, and the timed one gets chunks the process verified while their pages
// are still cached.
absl::StatusOr<Sample> TimeOurs(const Config& config, Scratch& res, int64_t chunk,
                                const std::string& data_dir, const std::string& token_file,
                                const std::string& partial, bool fsync, bool second_read = false) {
  MD_ASSIGN_OR_RETURN(ServerProcess server,
                      StartModeldistServer(config.server_bin, data_dir, token_file, chunk,
                                           res.dir + "/server.log"));
  res.server = server.pid;
  MD_ASSIGN_OR_RETURN(v1::ManifestArtifact artifact, FetchArtifact(server.address));
  MD_ASSIGN_OR_RETURN(std::unique_ptr<agent::ByteSource> source,
                      agent::NewGrpcSource(server.address, ""));
  agent::ChunkDownloadOptions options;
  options.fsync = fsync;
  auto download = [&]() -> absl::StatusOr<agent::ChunkDownloadStats> {
    ::unlink(partial.c_str());  // no resume: every byte from the server
    return agent::DownloadChunks(artifact, {source.get()}, partial, options);
  };
  if (second_read) MD_RETURN_IF_ERROR(download().status());
  ::unlink(partial.c_str());
  ::sync();
  const double client_cpu_before = SelfCpuSeconds();
  const double server_cpu_before = ProcessCpuSeconds(server.pid);
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<agent::ChunkDownloadStats> stats = download();
  Sample sample;
  sample.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  sample.server_cpu_seconds = ProcessCpuSeconds(server.pid) - server_cpu_before;
  sample.cpu_seconds = SelfCpuSeconds() - client_cpu_before + sample.server_cpu_seconds;
  MD_RETURN_IF_ERROR(stats.status());
  if (stats->bytes_received != config.size) {
    return absl::InternalError("DownloadChunks received the wrong number of bytes");
  }
  ::unlink(partial.c_str());
  StopChild(res.server);
  res.server = -1;
  return sample;
}

absl::Status Run(const Config& config) {
  Scratch res;
  MD_ASSIGN_OR_RETURN(res.dir, MakeTempDir(config.tmp_parent, "download"));
  // Source + the server's blob + the registry's + one download.
  MD_RETURN_IF_ERROR(CheckFreeSpace(res.dir, 4 * config.size));
  const std::string token_file = res.dir + "/token";
  MD_RETURN_IF_ERROR(WriteFileAtomically(token_file, kToken, 0600));
  const std::string art = res.dir + "/art.bin";
  const std::string out = res.dir + "/out.bin";
  const std::string dgst_out = res.dir + "/dgst.txt";

  std::cerr << "creating " << config.size << " incompressible bytes in " << art << "\n";
  MD_ASSIGN_OR_RETURN(FileDigest digest, MakeIncompressibleFile(art, config.size));

  const std::string data_dir = res.dir + "/data";
  {
    MD_ASSIGN_OR_RETURN(ServerProcess server,
                        StartModeldistServer(config.server_bin, data_dir, token_file,
                                             config.default_chunk, res.dir + "/server.log"));
    res.server = server.pid;
    std::cerr << "modeldist-server pid " << server.pid << " on " << server.address
              << "; publishing\n";
    auto start = std::chrono::steady_clock::now();
    MD_ASSIGN_OR_RETURN(Published artifact, PublishFile(Connect(server.address), kToken, art,
                                                        digest, "bench", "v1", "bench"));
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cerr << absl::StrFormat("published %s in %.2f s (%.2f GB/s upload+verify)\n",
                                 artifact.digest, seconds, GBps(config.size, seconds));
    StopChild(res.server);
    res.server = -1;
  }
  MD_ASSIGN_OR_RETURN(std::unique_ptr<HttpPeers> peers,
                      HttpPeers::Start(res.dir + "/peers", art, digest.hex));
  // The published blob and the registry's are copies; drop the source's dirty pages from the
  // competition.
  ::sync();

  ResultTable table(config.size);
  std::vector<std::string> peer_rows;
  for (const Peer& peer : peers->peers()) {
    peer_rows.push_back(absl::StrCat("peer ", peer.name, ": curl -o && openssl dgst"));
  }
  const Peer& nginx = peers->peers().front();
  const std::string p_pipe = "peer nginx: curl | openssl dgst";
  const std::string p_raw = "peer nginx: curl -o /dev/null (transport only)";
  auto ours_row = [](int64_t chunk) {
    return absl::StrCat("ours DownloadChunks msg=", SizeName(chunk));
  };
  const std::string ours_fsync =
      absl::StrCat("ours DownloadChunks msg=", SizeName(config.default_chunk), " +fsync");
  const std::string ours_second =
      absl::StrCat("ours DownloadChunks msg=", SizeName(config.default_chunk), " 2nd read");
  const std::string partial = res.dir + "/download.partial";
  auto split = [](const Sample& t) {
    return absl::StrFormat(" (client %.2f s, server %.2f s)", t.cpu_seconds - t.server_cpu_seconds,
                           t.server_cpu_seconds);
  };

  for (int rep = 1; rep <= config.reps; ++rep) {
    std::cerr << "rep " << rep << "/" << config.reps << "\n";
    for (size_t i = 0; i < peers->peers().size(); ++i) {
      const Peer& peer = peers->peers()[i];
      MD_ASSIGN_OR_RETURN(Sample t,
                          TimePeer(peer, VerifyPipeline(peer.url, out), dgst_out, digest.hex, out));
      table.Record(peer_rows[i], t);
    }
    for (int64_t chunk : config.chunk_sizes) {
      MD_ASSIGN_OR_RETURN(
          Sample t, TimeOurs(config, res, chunk, data_dir, token_file, partial, /*fsync=*/false));
      table.Record(ours_row(chunk), t, split(t));
    }
    MD_ASSIGN_OR_RETURN(Sample t, TimeOurs(config, res, config.default_chunk, data_dir, token_file,
                                           partial, /*fsync=*/false,
                                           /*second_read=*/true));
    table.Record(ours_second, t, split(t));
    if (!config.core_only) {
      MD_ASSIGN_OR_RETURN(t, TimePeer(nginx,
                                      absl::StrCat("set -o pipefail; curl -sf ", nginx.url,
                                                   " | openssl dgst -sha256"),
                                      dgst_out, digest.hex, out));
      table.Record(p_pipe, t);
      MD_ASSIGN_OR_RETURN(
          t, TimePeer(nginx, absl::StrCat("curl -sf -o /dev/null ", nginx.url), dgst_out, "", out));
      table.Record(p_raw, t);
      MD_ASSIGN_OR_RETURN(t, TimeOurs(config, res, config.default_chunk, data_dir, token_file,
                                      partial, /*fsync=*/true));
      table.Record(ours_fsync, t, split(t));
    }
  }

  const std::string best = table.Fastest(peer_rows);
  table.Print(absl::StrFormat("download_bench: %d bytes (%.2f GiB) incompressible, loopback, "
                              "%d reps; GB/s = 10^9 B/s, median (min-max)",
                              config.size, config.size / double(1 << 30), config.reps),
              best);
  int64_t best_chunk = config.chunk_sizes.front();
  for (int64_t chunk : config.chunk_sizes) {
    if (Median(table.Gbps(ours_row(chunk))) > Median(table.Gbps(ours_row(best_chunk)))) {
      best_chunk = chunk;
    }
  }
  const std::string ours = ours_row(config.default_chunk);
  const double ratio = Median(table.Gbps(ours)) / Median(table.Gbps(best));
  std::cout << absl::StrFormat(
      "RESULT download: ours(msg=%s) %.2f GB/s / best peer %.2f GB/s (%s) = %.2fx "
      "(per-rep ratios to that rep's faster peer %s; target >= %.1fx: %s); fastest message "
      "size measured: %s\n",
      SizeName(config.default_chunk), Median(table.Gbps(ours)), Median(table.Gbps(best)), best,
      ratio, MedianRange(table.RatioToBestPerRep(ours, peer_rows)), kTargetRatio,
      ratio >= kTargetRatio ? "MET" : "MISSED", SizeName(best_chunk));
  return absl::OkStatus();
}

// The driver's own flags (DriverMain adds --help).
void AddFlags(Flags& flags) {
  flags.Add("size", "BYTES", "1GiB", "artifact size");
  flags.Add("reps", "N", "3", "repetitions of every measurement (the median is reported)");
  flags.Add("chunk-sizes", "LIST", "64KiB,256KiB,1MiB",
            "server --chunk-size values (Read message sizes) to measure");
  flags.Add("default-chunk", "BYTES", "1MiB", "the message size the ratio target applies to");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("tmp", "DIR", "/tmp", "where the artifact and downloads go (deleted at the end)");
  flags.AddBool("core-only", "skip P_pipe, curl -o /dev/null and the fsync row");
}

int RunWithFlags(const Flags& flags) {
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
  return bench::DriverExit("download_bench", bench::Run(config));
}

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  return modeldist::bench::DriverMain(
      argc, argv,
      "download_bench: the agent's verified download vs nginx and docker-registry "
      "(curl + openssl)",
      modeldist::bench::AddFlags, modeldist::bench::RunWithFlags);
}
