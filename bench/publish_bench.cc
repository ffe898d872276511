// publish_bench: `modeldistctl publish` vs a durable local copy (`cp` + `sync`), in one run.
//
// Publishing is bound by the durable write of the file on the server, so the peer is the
// cheapest durable copy of the same file on the same disk. Creates an incompressible file
// (default 1 GiB) in --tmp, which must be a disk (tmpfs is refused: it has no write-back), and
// times, REPS times each, interleaved so that drift in the machine's load hits every row alike,
// each step starting with the file evicted from the page cache and no write-back pending
// (DropPageCache):
//   peer  `cp FILE COPY && sync`: read once, written, made durable;
//   info  `openssl dgst -sha256 FILE`: read once and hashed, nothing written;
//   ours  `modeldistctl publish FILE` (the binary of the same build) to a modeldist-server
//         started for the rep with an empty data dir: the client reads and hashes the file
//         once while it streams it (WriteArtifact upload session), the server hashes what it
//         receives, checks digest and size, fsyncs the blob and its chain sidecar and renames
//         it into place; then CreateVersion, PublishVersion, SetTier. The client's --json
//         result must report the file read exactly once.
// Prints median (min-max) GB/s (10^9 B/s), each row's ratio to the peer, and CPU seconds of
// every process involved (for ours split client/server); the target is publish >= 0.8x peer.
#include <unistd.h>

#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"

namespace modeldist::bench {
namespace {

constexpr char kToken[] = "bench-admin-token-0123456789abcdef";
constexpr double kTargetRatio = 0.8;

struct Config {
  int64_t size = 0;
  int reps = 3;
  bool allow_tmpfs = false;
  std::string server_bin;
  std::string ctl_bin;
  std::string tmp_parent;
};

// One timed step: wall-clock seconds and CPU seconds of the processes involved.
struct Sample {
  double seconds = 0;
  double client_cpu = 0;  // the shell pipeline's processes
  double server_cpu = 0;  // modeldist-server's, for ours
};

// Times `command` (stdout to `stdout_path`) after DropPageCache; its stdout must contain every
// one of `expect`.
absl::StatusOr<Sample> TimeCold(const std::string& file, const std::string& command,
                                const std::string& stdout_path,
                                const std::vector<std::string>& expect, std::string* cache) {
  *cache = DropPageCache(file);
  const double cpu_before = ReapedChildrenCpuSeconds();
  Sample sample;
  MD_ASSIGN_OR_RETURN(sample.seconds, TimeShell(command, stdout_path));
  sample.client_cpu = ReapedChildrenCpuSeconds() - cpu_before;
  MD_ASSIGN_OR_RETURN(std::string printed, ReadFileToString(stdout_path));
  for (const std::string& want : expect) {
    if (printed.find(want) == std::string::npos) {
      return absl::InternalError(
          absl::StrCat("`", command, "` printed no \"", want, "\": ", printed.substr(0, 2000)));
    }
  }
  return sample;
}

// Rows of samples, printed in the order first recorded.
class Table {
 public:
  explicit Table(int64_t bytes) : bytes_(bytes) {}

  void Record(const std::string& row, const Sample& sample) {
    if (samples_.find(row) == samples_.end()) order_.push_back(row);
    samples_[row].push_back(sample);
    std::cerr << absl::StrFormat("  %-34s %6.3f s  %5.2f GB/s  CPU %5.2f s", row, sample.seconds,
                                 GBps(bytes_, sample.seconds),
                                 sample.client_cpu + sample.server_cpu);
    if (sample.server_cpu > 0) {
      std::cerr << absl::StrFormat(" (client %.2f, server %.2f)", sample.client_cpu,
                                   sample.server_cpu);
    }
    std::cerr << "\n";
  }

  std::vector<double> Gbps(const std::string& row) const {
    std::vector<double> out;
    for (const Sample& s : samples_.at(row)) out.push_back(GBps(bytes_, s.seconds));
    return out;
  }

  void Print(const std::string& reference) const {
    const double ref = Median(Gbps(reference));
    std::cout << absl::StrFormat("%-36s %-20s %-10s %s\n", "pipeline", "GB/s", "vs peer",
                                 "CPU s (client + server)");
    for (const std::string& row : order_) {
      std::vector<double> client;
      std::vector<double> server;
      std::vector<double> total;
      for (const Sample& s : samples_.at(row)) {
        client.push_back(s.client_cpu);
        server.push_back(s.server_cpu);
        total.push_back(s.client_cpu + s.server_cpu);
      }
      std::string cpu = MedianRange(total);
      if (Max(server) > 0) {
        cpu += absl::StrFormat(" = %.2f + %.2f", Median(client), Median(server));
      }
      std::cout << absl::StrFormat("%-36s %-20s %-10s %s\n", row, MedianRange(Gbps(row)),
                                   absl::StrFormat("%.2fx", Median(Gbps(row)) / ref), cpu);
    }
  }

 private:
  const int64_t bytes_;
  std::vector<std::string> order_;
  std::map<std::string, std::vector<Sample>> samples_;
};

absl::Status Run(const Config& config) {
  Scratch res;
  MD_ASSIGN_OR_RETURN(res.dir, MakeTempDir(config.tmp_parent, "publish"));
  if (OnTmpfs(res.dir) && !config.allow_tmpfs) {
    return absl::FailedPreconditionError(
        absl::StrCat(config.tmp_parent,
                     " is tmpfs: publishing is measured against a durable write to a disk; "
                     "pass a --tmp on a disk (or --allow-tmpfs to look anyway)"));
  }
  // The file, the peer's copy and the server's blob.
  MD_RETURN_IF_ERROR(CheckFreeSpace(res.dir, 3 * config.size));
  const std::string token_file = res.dir + "/token";
  MD_RETURN_IF_ERROR(WriteFileAtomically(token_file, kToken, 0600));
  const std::string file = res.dir + "/model.gguf";
  const std::string copy = res.dir + "/copy.gguf";
  const std::string out = res.dir + "/stdout.txt";
  MD_RETURN_IF_ERROR(TimeShell(absl::StrCat("df -T ", res.dir), out).status());
  MD_ASSIGN_OR_RETURN(std::string df, ReadFileToString(out));
  std::cerr << df;
  std::cerr << "creating " << config.size << " incompressible bytes in " << file << "\n";
  MD_ASSIGN_OR_RETURN(FileDigest digest, MakeIncompressibleFile(file, config.size));

  Table table(config.size);
  const std::string peer = "peer cp FILE COPY && sync";
  const std::string info = "info openssl dgst -sha256 FILE";
  const std::string ours = "ours modeldistctl publish FILE";
  std::string cache;
  for (int rep = 1; rep <= config.reps; ++rep) {
    std::cerr << "rep " << rep << "/" << config.reps << "\n";
    MD_ASSIGN_OR_RETURN(Sample t, TimeCold(file, absl::StrCat("cp ", file, " ", copy, " && sync"),
                                           out, {}, &cache));
    table.Record(peer, t);
    ::unlink(copy.c_str());

    MD_ASSIGN_OR_RETURN(
        t, TimeCold(file, absl::StrCat("openssl dgst -sha256 ", file), out, {digest.hex}, &cache));
    table.Record(info, t);

    // A server of its own for each rep: an empty store, nothing of an earlier rep to find.
    const std::string data = absl::StrCat(res.dir, "/data-", rep);
    MD_ASSIGN_OR_RETURN(ServerProcess server,
                        StartModeldistServer(config.server_bin, data, token_file, 1 << 20,
                                             res.dir + "/server.log"));
    res.server = server.pid;
    const double server_before = ProcessCpuSeconds(server.pid);
    const std::string publish =
        absl::StrCat(config.ctl_bin, " --server ", server.address, " --token-file ", token_file,
                     " publish --json --model bench --version r", rep,
                     " --tier bench --platform linux --arch x86_64 --format gguf ", file);
    // One read of the file: the upload read every byte once and sent every byte once.
    MD_ASSIGN_OR_RETURN(t, TimeCold(file, publish, out,
                                    {digest.hex, absl::StrCat("\"bytesSent\":", config.size),
                                     absl::StrCat("\"bytesRead\":", config.size)},
                                    &cache));
    t.server_cpu = ProcessCpuSeconds(server.pid) - server_before;
    table.Record(ours, t);
    StopChild(server.pid);
    res.server = -1;
    RemoveTree(data);
  }

  std::cout << absl::StrFormat(
      "\npublish_bench: %d bytes (%.2f GiB) incompressible, %d reps, page cache: %s; "
      "GB/s = 10^9 B/s, median (min-max)\n",
      config.size, config.size / double(1 << 30), config.reps, cache);
  table.Print(peer);
  std::vector<double> paired;
  const std::vector<double> ours_gbps = table.Gbps(ours);
  const std::vector<double> peer_gbps = table.Gbps(peer);
  for (size_t i = 0; i < ours_gbps.size(); ++i) paired.push_back(ours_gbps[i] / peer_gbps[i]);
  const double ratio = Median(ours_gbps) / Median(peer_gbps);
  std::cout << absl::StrFormat(
      "RESULT publish: %.2f GB/s / cp+sync %.2f GB/s = %.2fx (per-rep ratios %s; target >= "
      "%.1fx: %s)\n",
      Median(ours_gbps), Median(peer_gbps), ratio, MedianRange(paired), kTargetRatio,
      ratio >= kTargetRatio ? "MET" : "MISSED");
  return absl::OkStatus();
}

// The driver's own flags (DriverMain adds --help).
void AddFlags(Flags& flags) {
  flags.Add("size", "BYTES", "1GiB", "size of the published file");
  flags.Add("reps", "N", "3", "repetitions of every measurement (the median is reported)");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("ctl-bin", "PATH", MODELDIST_CTL_BIN, "modeldistctl binary");
  flags.Add("tmp", "DIR", "/tmp", "a directory on the disk to measure (deleted at the end)");
  flags.AddBool("allow-tmpfs", "run even when --tmp is on tmpfs (no write-back to compare)");
}

int RunWithFlags(const Flags& flags) {
  bench::Config config;
  auto size = flags.GetInt("size");
  auto reps = flags.GetInt("reps");
  if (!size.ok() || !reps.ok() || *reps < 1 || *size < 1) {
    std::cerr << "bad --size or --reps\n";
    return 2;
  }
  config.size = *size;
  config.reps = static_cast<int>(*reps);
  config.allow_tmpfs = flags.GetBool("allow-tmpfs");
  config.server_bin = flags.Get("server-bin");
  config.ctl_bin = flags.Get("ctl-bin");
  config.tmp_parent = flags.Get("tmp");
  return bench::DriverExit("publish_bench", bench::Run(config));
}

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  return modeldist::bench::DriverMain(
      argc, argv, "publish_bench: modeldistctl publish vs cp + sync of the same file",
      modeldist::bench::AddFlags, modeldist::bench::RunWithFlags);
}
