#include "bench/peers.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::bench {

absl::StatusOr<ServerProcess> StartDockerRegistry(const std::string& prefix) {
  MD_RETURN_IF_ERROR(MakeDirs(prefix + "/storage"));
  const std::string log = prefix + "/registry.log";
  auto launch = [&](int port) -> absl::StatusOr<pid_t> {
    // Blobs are served by the registry itself (no redirect to a storage backend), as from a
    // self-hosted registry on local disk.
    const std::string conf = absl::StrFormat(
        "version: 0.1\n"
        "log:\n"
        "  level: error\n"
        "  accesslog:\n"
        "    disabled: true\n"
        "storage:\n"
        "  filesystem:\n"
        "    rootdirectory: %s/storage\n"
        "  redirect:\n"
        "    disable: true\n"
        "http:\n"
        "  addr: 127.0.0.1:%d\n",
        prefix, port);
    MD_RETURN_IF_ERROR(WriteFileAtomically(prefix + "/config.yml", conf, 0644));
    return Spawn({"/usr/bin/docker-registry", "serve", prefix + "/config.yml"}, log);
  };
  // PushRegistryBlob checks that the registry answering is ours.
  auto ready = [&](const ServerProcess& server) -> absl::StatusOr<bool> {
    return TimeShell(absl::StrCat("curl -sf --max-time 2 http://", server.address, "/v2/")).ok();
  };
  return StartOnFreePort("docker-registry", log, 10000, launch, ready);
}

absl::StatusOr<std::string> PushRegistryBlob(const ServerProcess& registry,
                                             const std::string& prefix, const std::string& repo,
                                             const std::string& path, const std::string& hex) {
  const std::string base = absl::StrCat("http://", registry.address, "/v2/", repo, "/blobs/");
  const std::string headers = prefix + "/upload.headers";
  MD_RETURN_IF_ERROR(
      TimeShell(absl::StrCat("curl -sf -o /dev/null -D ", headers, " -X POST ", base, "uploads/"))
          .status());
  MD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(headers));
  std::string location;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::pair<absl::string_view, absl::string_view> field =
        absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (absl::AsciiStrToLower(field.first) == "location") {
      location = std::string(absl::StripAsciiWhitespace(field.second));
    }
  }
  if (location.empty() || location.find('\'') != std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat("docker-registry gave no usable upload location: ", text));
  }
  if (location.front() == '/') location = absl::StrCat("http://", registry.address, location);
  const std::string put = absl::StrCat(
      location, location.find('?') == std::string::npos ? "?" : "&", "digest=sha256:", hex);
  MD_RETURN_IF_ERROR(TimeShell(absl::StrCat("curl -sf -o /dev/null -X PUT -H "
                                            "'Content-Type: application/octet-stream' -T ",
                                            path, " '", put, "'"))
                         .status());
  const std::string stored = absl::StrCat(prefix, "/storage/docker/registry/v2/blobs/sha256/",
                                          hex.substr(0, 2), "/", hex, "/data");
  struct stat st {};
  if (::stat(stored.c_str(), &st) != 0) {
    return absl::UnavailableError(
        absl::StrCat("the pushed blob is not in ", stored, ": another registry on the port?"));
  }
  return absl::StrCat(base, "sha256:", hex);
}

absl::StatusOr<std::unique_ptr<HttpPeers>> HttpPeers::Start(const std::string& dir,
                                                            const std::string& file,
                                                            const std::string& hex) {
  std::unique_ptr<HttpPeers> peers(new HttpPeers());
  peers->dir_ = dir;
  const std::string name = std::filesystem::path(file).filename().string();
  MD_RETURN_IF_ERROR(MakeDirs(dir + "/www"));
  // A hard link: nginx reads the very pages of the file the other servers got theirs from.
  if (::link(file.c_str(), (dir + "/www/" + name).c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("link ", file, " into ", dir, "/www"));
  }
  MD_ASSIGN_OR_RETURN(ServerProcess nginx, StartNginx(dir + "/nginx", dir + "/www"));
  peers->peers_.push_back(
      Peer{"nginx", absl::StrCat("http://", nginx.address, "/", name), nginx.pid, true});
  std::cerr << "nginx pid " << nginx.pid << " on " << nginx.address << "\n";

  MD_ASSIGN_OR_RETURN(ServerProcess registry, StartDockerRegistry(dir + "/registry"));
  peers->peers_.push_back(Peer{"docker-registry", "", registry.pid, false});
  auto start = std::chrono::steady_clock::now();
  MD_ASSIGN_OR_RETURN(peers->peers_.back().url,
                      PushRegistryBlob(registry, dir + "/registry", "bench", file, hex));
  std::cerr << absl::StrFormat(
      "docker-registry pid %d on %s; pushed the blob in %.2f s\n", registry.pid, registry.address,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return peers;
}

HttpPeers::~HttpPeers() { Stop(); }

void HttpPeers::Stop() {
  for (Peer& peer : peers_) {
    StopChild(peer.pid);
    peer.pid = -1;
  }
  if (!dir_.empty()) RemoveTree(dir_);
  dir_.clear();
}

std::string VerifyPipeline(const std::string& url, const std::string& out) {
  return absl::StrCat("curl -sf -o ", out, " ", url, " && openssl dgst -sha256 ", out);
}

absl::StatusOr<Sample> TimePeer(const Peer& peer, const std::string& command,
                                const std::string& stdout_path, const std::string& expect_hex,
                                const std::string& out) {
  ::unlink(out.c_str());
  ::sync();
  const double cpu_before = ReapedChildrenCpuSeconds() + ProcessCpuSeconds(peer.pid, peer.workers);
  Sample sample;
  MD_ASSIGN_OR_RETURN(sample.seconds, TimeShell(command, stdout_path));
  sample.cpu_seconds =
      ReapedChildrenCpuSeconds() + ProcessCpuSeconds(peer.pid, peer.workers) - cpu_before;
  if (!expect_hex.empty()) {
    MD_ASSIGN_OR_RETURN(std::string printed, ReadFileToString(stdout_path));
    if (printed.find(expect_hex) == std::string::npos) {
      return absl::DataLossError(
          absl::StrCat(peer.name, " pipeline printed the wrong digest: ", printed));
    }
  }
  ::unlink(out.c_str());
  return sample;
}

void ResultTable::Record(const std::string& row, const Sample& sample, const std::string& extra) {
  if (gbps_.find(row) == gbps_.end()) order_.push_back(row);
  gbps_[row].push_back(GBps(bytes_, sample.seconds));
  cpu_per_gb_[row].push_back(sample.cpu_seconds / (bytes_ / 1e9));
  std::cerr << absl::StrFormat("  %-48s %6.3f s  %5.2f GB/s  CPU %5.2f s%s\n", row, sample.seconds,
                               GBps(bytes_, sample.seconds), sample.cpu_seconds, extra);
}

std::vector<double> ResultTable::Gbps(const std::string& row) const {
  auto it = gbps_.find(row);
  return it == gbps_.end() ? std::vector<double>() : it->second;
}

std::vector<double> ResultTable::CpuPerGb(const std::string& row) const {
  auto it = cpu_per_gb_.find(row);
  return it == cpu_per_gb_.end() ? std::vector<double>() : it->second;
}

void ResultTable::Print(const std::string& title, const std::string& reference) const {
  const double base = Median(Gbps(reference));
  std::cout << "\n" << title << "\n";
  std::cout << absl::StrFormat("%-50s %-20s %-12s %s\n", "pipeline", "GB/s", "ratio",
                               "CPU s per GB (all processes)");
  for (const std::string& row : order_) {
    std::cout << absl::StrFormat("%-50s %-20s %-12s %s\n", row, MedianRange(Gbps(row)),
                                 absl::StrFormat("%.2fx", Median(Gbps(row)) / base),
                                 MedianRange(CpuPerGb(row)));
  }
  std::cout << absl::StrFormat("(ratio: to the median of \"%s\")\n", reference);
}

std::string ResultTable::Fastest(const std::vector<std::string>& rows) const {
  std::string best;
  for (const std::string& row : rows) {
    if (best.empty() || Median(Gbps(row)) > Median(Gbps(best))) best = row;
  }
  return best;
}

std::vector<double> ResultTable::RatioToBestPerRep(const std::string& row,
                                                   const std::vector<std::string>& rows) const {
  std::vector<double> ratios;
  const std::vector<double> ours = Gbps(row);
  for (size_t rep = 0; rep < ours.size(); ++rep) {
    double best = 0;
    for (const std::string& other : rows) {
      const std::vector<double> theirs = Gbps(other);
      if (rep < theirs.size()) best = std::max(best, theirs[rep]);
    }
    if (best > 0) ratios.push_back(ours[rep] / best);
  }
  return ratios;
}

}  // namespace modeldist::bench
