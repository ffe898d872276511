// File: peers.h
//
// The HTTP peers that download_bench and agent_bench measure modeldist's verified download
// against, in the same run: nginx (sendfile) and Debian's docker-registry, each serving the
// same file, fetched and hashed with the same pipeline; and the table of timed rows with their
// ratio to the faster peer.
#ifndef MODELDIST_BENCH_PEERS_H_
#define MODELDIST_BENCH_PEERS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/bench_util.h"

namespace modeldist::bench {

// Starts Debian's docker-registry (distribution 2.x, `docker-registry serve`) with filesystem
// storage under `prefix` (created), redirects and the access log off, on 127.0.0.1 at a free
// high port, and waits until its /v2/ endpoint answers.
absl::StatusOr<ServerProcess> StartDockerRegistry(const std::string& prefix);

// Pushes `path` (SHA-256 `hex`) to the registry started with `prefix` as a blob of repository
// `repo`, in one monolithic upload (POST, then a PUT streaming the file), and returns the URL a
// client GETs it from. The blob must then be in `prefix`'s storage, so that another registry
// answering on the port is never mistaken for ours.
absl::StatusOr<std::string> PushRegistryBlob(const ServerProcess& registry,
                                             const std::string& prefix, const std::string& repo,
                                             const std::string& path, const std::string& hex);

// One HTTP server the drivers compare modeldist with.
struct Peer {
  std::string name;  // "nginx", "docker-registry"
  std::string url;   // where the file is served
  pid_t pid = -1;
  bool workers = false;  // its CPU includes its direct children's (nginx's worker processes)
};

// The peers, each serving the bytes of one file: nginx (sendfile, from a hard link of the file)
// and docker-registry (the file pushed as a blob: its own copy). Started in `dir` (created),
// stopped by PID when this goes away.
class HttpPeers {
 public:
  static absl::StatusOr<std::unique_ptr<HttpPeers>> Start(const std::string& dir,
                                                          const std::string& file,
                                                          const std::string& hex);
  ~HttpPeers();
  HttpPeers(const HttpPeers&) = delete;
  HttpPeers& operator=(const HttpPeers&) = delete;

  const std::vector<Peer>& peers() const { return peers_; }
  // Stops the peers and removes their copies and links of the file (to free disk space).
  void Stop();

 private:
  HttpPeers() = default;
  std::string dir_;
  std::vector<Peer> peers_;
};

// The verified download every peer is measured with, P_verify: `curl -sf -o OUT URL && openssl
// dgst -sha256 OUT` (fetch, then hash the file; no fsync).
std::string VerifyPipeline(const std::string& url, const std::string& out);

// One timed run: wall-clock seconds and the CPU seconds of every process involved (client and
// server), which shows the cost per byte even when other load on the machine skews the clock.
struct Sample {
  double seconds = 0;
  double cpu_seconds = 0;
  // modeldist's rows only: the server's part of cpu_seconds (the rest is the client's); -1
  // when not split.
  double server_cpu_seconds = -1;
  int64_t hwm_kib = -1;     // the agent's rows: VmHWM polled from /proc while it ran
  int64_t maxrss_kib = -1;  // the agent's rows: wait4 ru_maxrss
};

// Runs a peer's shell pipeline after a sync(2) (no write-back of an earlier run lands in this
// one) and times it; `out` (the downloaded file) is removed before and after. When `expect_hex`
// is set, the pipeline's stdout (kept in `stdout_path`) must contain it. CPU counts the
// pipeline's processes and `peer`'s.
absl::StatusOr<Sample> TimePeer(const Peer& peer, const std::string& command,
                                const std::string& stdout_path, const std::string& expect_hex,
                                const std::string& out);

// Rows of timed runs of `bytes` each: GB/s and CPU seconds per GB per rep, printed as
// median (min-max) with each row's ratio to a reference.
class ResultTable {
 public:
  explicit ResultTable(int64_t bytes) : bytes_(bytes) {}
  // Adds a rep of `row` and prints it on stderr, followed by `extra`.
  void Record(const std::string& row, const Sample& sample, const std::string& extra = "");
  // GB/s of each rep of `row` so far (empty for an unknown row).
  std::vector<double> Gbps(const std::string& row) const;
  std::vector<double> CpuPerGb(const std::string& row) const;
  // Prints a header line `title`, then one line per row (in the order first recorded) with
  // its ratio to `reference`'s median.
  void Print(const std::string& title, const std::string& reference) const;
  // Of `rows`, the one with the highest median GB/s.
  std::string Fastest(const std::vector<std::string>& rows) const;
  // `row`'s GB/s over the fastest of `rows` in the same rep, per rep.
  std::vector<double> RatioToBestPerRep(const std::string& row,
                                        const std::vector<std::string>& rows) const;

 private:
  const int64_t bytes_;
  std::vector<std::string> order_;
  std::map<std::string, std::vector<double>> gbps_;
  std::map<std::string, std::vector<double>> cpu_per_gb_;
};

}  // namespace modeldist::bench

#endif  // MODELDIST_BENCH_PEERS_H_
