// rss_bench: modeldist-server memory while many devices download at once.
//
// Publishes artifacts of several sizes (default 256 MiB and 1 GiB), then for each size starts
// a fresh server (so VmHWM starts clean), runs --clients concurrent ArtifactService.Read
// streams of the whole artifact, each on its own TCP connection and checked against the
// digest, and samples the server's VmRSS from /proc every --sample-ms; VmHWM is read at the
// end. The server reads blobs with pread (no mmap), so page-cache pages are not in its RSS:
// a peak that does not grow with the artifact size shows that each stream holds about a chunk,
// never the file.
#include <atomic>
#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "modeldist/v1/artifact.grpc.pb.h"

namespace modeldist::bench {
namespace {

constexpr char kToken[] = "bench-admin-token-0123456789abcdef";
// "Flat": the peak at the largest size is within this factor of the peak at the smallest.
constexpr double kFlatFactor = 1.25;

struct Config {
  std::vector<int64_t> sizes;
  int clients = 16;
  int sample_ms = 20;
  int64_t chunk_size = 1024 * 1024;
  bool verify = true;
  std::string server_bin;
  std::string tmp_parent;
};

struct Phase {
  int64_t size = 0;
  int64_t idle_rss_kib = 0;
  int64_t peak_rss_kib = 0;  // max of the samples
  int64_t hwm_kib = 0;       // VmHWM at the end
  double seconds = 0;
  int ok_streams = 0;
};

std::string SizeName(int64_t bytes) {
  if (bytes % (int64_t{1} << 30) == 0) return absl::StrCat(bytes >> 30, "GiB");
  return absl::StrCat(bytes >> 20, "MiB");
}

// Reads the whole blob; with `verify`, hashes it. Returns whether size (and hash) matched.
bool ReadAll(const std::string& address, const Published& artifact, bool verify) {
  auto stub = v1::ArtifactService::NewStub(Connect(address, /*unique=*/true));
  grpc::ClientContext context;
  v1::ReadRequest request;
  request.set_digest(artifact.digest);
  auto reader = stub->Read(&context, request);
  v1::ReadResponse response;
  Sha256 hash;
  int64_t got = 0;
  while (reader->Read(&response)) {
    if (verify) hash.Update(response.data());
    got += static_cast<int64_t>(response.data().size());
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) {
    std::cerr << "Read failed: " << s.error_message() << "\n";
    return false;
  }
  return got == artifact.size_bytes &&
         (!verify || FormatDigest(hash.FinishHex()) == artifact.digest);
}

absl::StatusOr<Phase> RunPhase(const Config& config, Scratch& res, const std::string& token_file,
                               const Published& artifact) {
  Phase phase;
  phase.size = artifact.size_bytes;
  MD_ASSIGN_OR_RETURN(ServerProcess server,
                      StartModeldistServer(config.server_bin, res.dir + "/data", token_file,
                                           config.chunk_size, res.dir + "/server.log"));
  res.server = server.pid;
  // Let start-up allocations settle before the idle reading.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  phase.idle_rss_kib = ProcStatusKib(server.pid, "VmRSS");

  std::atomic<bool> done{false};
  std::atomic<int64_t> peak{0};
  std::thread sampler([&] {
    while (!done.load()) {
      int64_t rss = ProcStatusKib(server.pid, "VmRSS");
      if (rss > peak.load()) peak.store(rss);
      std::this_thread::sleep_for(std::chrono::milliseconds(config.sample_ms));
    }
  });
  std::atomic<int> ok{0};
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < config.clients; ++i) {
    clients.emplace_back([&] {
      if (ReadAll(server.address, artifact, config.verify)) ok.fetch_add(1);
    });
  }
  for (auto& t : clients) t.join();
  phase.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  done.store(true);
  sampler.join();
  phase.peak_rss_kib = peak.load();
  phase.hwm_kib = ProcStatusKib(server.pid, "VmHWM");
  phase.ok_streams = ok.load();
  StopChild(res.server);
  res.server = -1;
  return phase;
}

absl::Status Run(const Config& config) {
  Scratch res;
  MD_ASSIGN_OR_RETURN(res.dir, MakeTempDir(config.tmp_parent, "rss"));
  const std::string token_file = res.dir + "/token";
  MD_RETURN_IF_ERROR(WriteFileAtomically(token_file, kToken, 0600));

  std::vector<Published> artifacts;
  {
    MD_ASSIGN_OR_RETURN(ServerProcess server,
                        StartModeldistServer(config.server_bin, res.dir + "/data", token_file,
                                             config.chunk_size, res.dir + "/server.log"));
    res.server = server.pid;
    for (int64_t size : config.sizes) {
      // Each source file is deleted once uploaded: the server keeps its own copy.
      const std::string path = res.dir + "/art-" + SizeName(size) + ".bin";
      std::cerr << "creating and publishing " << SizeName(size) << "\n";
      MD_ASSIGN_OR_RETURN(FileDigest digest, MakeIncompressibleFile(path, size));
      // Different sizes of the same keystream share a prefix but not a digest: distinct blobs.
      MD_ASSIGN_OR_RETURN(Published p, PublishFile(Connect(server.address), kToken, path, digest,
                                                   "rss", "v-" + SizeName(size), ""));
      ::unlink(path.c_str());
      artifacts.push_back(p);
    }
    StopChild(res.server);
    res.server = -1;
  }

  std::vector<Phase> phases;
  for (const Published& artifact : artifacts) {
    std::cerr << "phase " << SizeName(artifact.size_bytes) << ": " << config.clients
              << " concurrent downloads\n";
    MD_ASSIGN_OR_RETURN(Phase phase, RunPhase(config, res, token_file, artifact));
    phases.push_back(phase);
  }

  std::cout << absl::StrFormat(
      "\nrss_bench: modeldist-server RSS with %d concurrent Read streams (chunk %d KiB, "
      "clients %s), fresh server per size\n",
      config.clients, config.chunk_size / 1024, config.verify ? "verify SHA-256" : "discard");
  std::cout << absl::StrFormat("%-9s %-13s %-18s %-13s %-10s %-16s %s\n", "artifact", "idle VmRSS",
                               "peak VmRSS (sampled)", "VmHWM", "streams ok", "aggregate GB/s",
                               "seconds");
  for (const Phase& p : phases) {
    std::cout << absl::StrFormat(
        "%-9s %7.1f MiB   %7.1f MiB          %7.1f MiB   %2d/%-7d %-16.2f %.1f\n", SizeName(p.size),
        p.idle_rss_kib / 1024.0, p.peak_rss_kib / 1024.0, p.hwm_kib / 1024.0, p.ok_streams,
        config.clients, GBps(p.size * config.clients, p.seconds), p.seconds);
  }
  bool all_ok = true;
  for (const Phase& p : phases) all_ok &= p.ok_streams == config.clients;
  const Phase& small = phases.front();
  const Phase& large = phases.back();
  const double growth = static_cast<double>(large.hwm_kib) / small.hwm_kib;
  std::cout << absl::StrFormat(
      "RESULT rss: VmHWM %.1f MiB at %s vs %.1f MiB at %s (x%.2f for x%.0f the bytes): %s; "
      "all streams verified: %s\n",
      large.hwm_kib / 1024.0, SizeName(large.size), small.hwm_kib / 1024.0, SizeName(small.size),
      growth, static_cast<double>(large.size) / small.size,
      growth <= kFlatFactor ? "FLAT" : "GROWS", all_ok ? "yes" : "NO");
  if (!all_ok) return absl::DataLossError("some downloads failed or did not verify");
  return absl::OkStatus();
}

// The driver's own flags (DriverMain adds --help).
void AddFlags(Flags& flags) {
  flags.Add("sizes", "LIST", "256MiB,1GiB", "artifact sizes, smallest first (e.g. add 4GiB)");
  flags.Add("clients", "N", "16", "concurrent downloads");
  flags.Add("sample-ms", "MS", "20", "RSS sampling period");
  flags.Add("chunk-size", "BYTES", "1MiB", "server --chunk-size");
  flags.AddBool("no-verify", "discard the bytes instead of hashing them (faster)");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("tmp", "DIR", "/tmp", "scratch parent directory (deleted at the end)");
}

int RunWithFlags(const Flags& flags) {
  bench::Config config;
  for (absl::string_view part : absl::StrSplit(flags.Get("sizes"), ',')) {
    auto size = ParseSize(std::string(part));
    if (!size.ok() || *size < 1) {
      std::cerr << "bad --sizes entry \"" << part << "\"\n";
      return 2;
    }
    config.sizes.push_back(*size);
  }
  auto clients = flags.GetInt("clients");
  auto sample = flags.GetInt("sample-ms");
  auto chunk = flags.GetInt("chunk-size");
  if (!clients.ok() || !sample.ok() || !chunk.ok() || *clients < 1 || *sample < 1) {
    std::cerr << "bad --clients, --sample-ms or --chunk-size\n";
    return 2;
  }
  config.clients = static_cast<int>(*clients);
  config.sample_ms = static_cast<int>(*sample);
  config.chunk_size = *chunk;
  config.verify = !flags.GetBool("no-verify");
  config.server_bin = flags.Get("server-bin");
  config.tmp_parent = flags.Get("tmp");
  return bench::DriverExit("rss_bench", bench::Run(config));
}

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  return modeldist::bench::DriverMain(argc, argv,
                                      "rss_bench: server RSS under concurrent downloads",
                                      modeldist::bench::AddFlags, modeldist::bench::RunWithFlags);
}
