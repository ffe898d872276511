// http_bench: modeldist-server's HTTP listener (--http-listen) vs nginx and docker-registry,
// measured in the same run on the same machine.
//
// 1. Blob endpoint, the CDN origin: `curl -sf -o /dev/null URL` of an incompressible file
//    (default 1 GiB) published to modeldist and fetched from GET /v1/blobs/sha256:<hex>, against
//    the same bytes from nginx (sendfile, a hard link of the file) and from docker-registry (the
//    file pushed as a blob): HttpPeers of bench/peers.h. Warm page cache, done the same way for
//    every server: before each timed run the same server process serves the whole file once,
//    untimed. For ours that also means the process has checked every chunk of it once, so the
//    timed read is a CDN's repeat pull (served_bytes_check.h: chunks matched before and read from
//    the page cache are not hashed again). Unless --core-only, one more row: a fresh server
//    process whose blob file the driver has read (page cache warm) but which has checked nothing
//    yet, so it hashes every chunk it sends. Every server of ours runs with --log-level off, as
//    the peers run with their access logs off. Prints GB/s (10^9 B/s), CPU seconds per GB
//    (curl + server, and the server's part); the target is >= 0.9x the faster peer.
// 2. Edge endpoint: `wrk -t2 -c64 -d10s --latency -s post.lua URL` POSTing
//    {"platform":"linux","tier":"bench","arch":"x86_64"} to /functions/v1/local-llm-manifest,
//    after an unrecorded warm-up run, against nginx serving a file that holds the very bytes of
//    modeldist's answer (fetched with curl first) to the same POST. nginx's static module
//    answers POST with 405, so its location has `error_page 405 =200 $uri;`: an internal
//    redirect (as GET) that serves the file with status 200; open_file_cache is on, so the file
//    is not opened twice per request. Two pairs of rows: ours --log-level off vs nginx
//    access_log off, and ours --log-level info --log-file /dev/null (one JSON line per request)
//    vs nginx access_log /dev/null (one combined line per request). Prints requests/s, p50/p99,
//    the server's CPU per request and the response bytes per request; the target is >= 0.4x
//    nginx. A run fails when wrk counts a non-2xx answer (wrk counts status >= 400; the answer
//    of every server is checked with curl before it is timed: 200 and the blob's sha256).
//
// Repetitions are interleaved, the order of the rows rotating every rep, so that drift in the
// machine's load hits every side alike. No CPU pinning: servers, curl and wrk share the CPUs.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "bench/peers.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"

namespace modeldist::bench {
namespace {

constexpr char kToken[] = "bench-admin-token-0123456789abcdef";
constexpr char kTier[] = "bench";
constexpr char kEdgePath[] = "/functions/v1/local-llm-manifest";
constexpr double kBlobTarget = 0.9;
constexpr double kEdgeTarget = 0.4;

struct Config {
  int64_t size = 0;
  int reps = 5;
  bool blob = true;
  bool edge = true;
  bool core_only = false;
  int threads = 2;
  int connections = 64;
  int duration_s = 10;
  int warmup_s = 2;
  std::string server_bin;
  std::string tmp_parent;
};

// ---- Servers -------------------------------------------------------------------------------

// Starts modeldist-server on `data_dir` with its HTTP listener and the request log at
// `log_level` (to `log_file`, or to the server's stderr in server.log when empty). `res.server`
// holds it, so that it is stopped whatever happens.
absl::StatusOr<ServerProcess> StartOurs(const Config& config, Scratch& res,
                                        const std::string& data_dir, const std::string& log_level,
                                        const std::string& log_file) {
  ModeldistExtras extras;
  extras.http = true;
  extras.log_level = log_level;
  extras.log_file = log_file;
  MD_ASSIGN_OR_RETURN(ServerProcess server,
                      StartModeldistServer(config.server_bin, data_dir, res.dir + "/token",
                                           1024 * 1024, res.dir + "/server.log", {}, extras));
  res.server = server.pid;
  return server;
}

void StopOurs(Scratch& res) {
  StopChild(res.server);
  res.server = -1;
}

// nginx answering POST to `uri` with the file root/uri (application/json, status 200: nginx
// refuses POST to a static file with 405, which error_page turns into the file), access log
// off or to /dev/null.
absl::StatusOr<ServerProcess> StartEdgeNginx(const std::string& prefix, const std::string& root,
                                             const std::string& uri, bool access_log) {
  NginxExtras extras;
  extras.access_log = access_log ? "/dev/null" : "off";
  extras.http = "  open_file_cache max=64 inactive=60s; open_file_cache_valid 60s;\n";
  extras.server = absl::StrCat("    location = ", uri,
                               " {\n      default_type application/json;\n"
                               "      error_page 405 =200 $uri;\n    }\n");
  return StartNginx(prefix, root, /*workers=*/2, /*cpus=*/{}, extras);
}

// ---- Blob endpoint -------------------------------------------------------------------------

std::string FetchCommand(const std::string& url) {
  return absl::StrCat("curl -sf -o /dev/null -w '%{http_code} %{size_download}' ", url);
}

// The fetch wrote "<status> <bytes>" to `out`: 200 and the whole file, else an error.
absl::Status CheckFetched(const std::string& name, const std::string& out, int64_t size) {
  MD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(out));
  if (text != absl::StrCat("200 ", size)) {
    return absl::DataLossError(
        absl::StrCat(name, ": curl -w printed \"", text, "\", not \"200 ", size, "\""));
  }
  return absl::OkStatus();
}

// One `curl -sf -o /dev/null URL` from `server`, timed: wall clock, CPU of bash + curl and of
// the server process (with its workers when `server.workers`).
absl::StatusOr<Sample> TimeFetch(const Peer& server, int64_t size, const std::string& out) {
  ::sync();
  const double client_before = ReapedChildrenCpuSeconds();
  const double server_before = ProcessCpuSeconds(server.pid, server.workers);
  Sample sample;
  MD_ASSIGN_OR_RETURN(sample.seconds, TimeShell(FetchCommand(server.url), out));
  sample.server_cpu_seconds = ProcessCpuSeconds(server.pid, server.workers) - server_before;
  sample.cpu_seconds = ReapedChildrenCpuSeconds() - client_before + sample.server_cpu_seconds;
  MD_RETURN_IF_ERROR(CheckFetched(server.name, out, size));
  return sample;
}

// The untimed read that warms `server`: the whole file through it once.
absl::Status WarmFetch(const Peer& server, int64_t size, const std::string& out) {
  MD_RETURN_IF_ERROR(TimeShell(FetchCommand(server.url), out).status());
  return CheckFetched(server.name, out, size);
}

// `curl URL | openssl dgst -sha256` must print `hex`.
absl::Status CheckDigest(const std::string& name, const std::string& url, const std::string& hex,
                         const std::string& out) {
  MD_RETURN_IF_ERROR(
      TimeShell(absl::StrCat("set -o pipefail; curl -sf ", url, " | openssl dgst -sha256"), out)
          .status());
  MD_ASSIGN_OR_RETURN(std::string printed, ReadFileToString(out));
  if (printed.find(hex) == std::string::npos) {
    return absl::DataLossError(
        absl::StrCat(name, " served bytes whose SHA-256 is not ", hex, ": ", printed));
  }
  std::cerr << name << ": SHA-256 of the served bytes matches\n";
  return absl::OkStatus();
}

std::string BlobUrl(const ServerProcess& server, const std::string& hex) {
  return absl::StrCat("http://", server.http_address, "/v1/blobs/sha256:", hex);
}

absl::Status RunBlob(const Config& config, Scratch& res, const FileDigest& digest,
                     const std::string& art, const std::string& data_dir) {
  const std::string out = res.dir + "/curl.out";
  const std::string blob_file =
      absl::StrCat(data_dir, "/blobs/sha256/", digest.hex.substr(0, 2), "/", digest.hex);
  if (::access(blob_file.c_str(), R_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("the published blob is not at ", blob_file));
  }
  MD_ASSIGN_OR_RETURN(std::unique_ptr<HttpPeers> peers,
                      HttpPeers::Start(res.dir + "/peers", art, digest.hex));
  ::sync();
  {
    MD_ASSIGN_OR_RETURN(ServerProcess server, StartOurs(config, res, data_dir, "off", ""));
    MD_RETURN_IF_ERROR(
        CheckDigest("modeldist /v1/blobs", BlobUrl(server, digest.hex), digest.hex, out));
    StopOurs(res);
  }
  for (const Peer& peer : peers->peers()) {
    MD_RETURN_IF_ERROR(CheckDigest(peer.name, peer.url, digest.hex, out));
  }

  ResultTable table(config.size);
  std::map<std::string, std::vector<double>> server_cpu_per_gb;
  const double gb = config.size / 1e9;
  std::vector<std::string> peer_rows;
  for (const Peer& peer : peers->peers()) {
    peer_rows.push_back(
        absl::StrCat("peer ", peer.name, peer.name == "nginx" ? " (sendfile)" : "", ", warm"));
  }
  const std::string ours_warm = "ours GET /v1/blobs, warm (2nd read)";
  const std::string ours_fresh = "ours GET /v1/blobs, fresh process";
  auto record = [&](const std::string& row, const Sample& t) {
    table.Record(row, t,
                 absl::StrFormat(" (client %.2f s, server %.2f s)",
                                 t.cpu_seconds - t.server_cpu_seconds, t.server_cpu_seconds));
    server_cpu_per_gb[row].push_back(t.server_cpu_seconds / gb);
  };
  // Each step times one row; the order rotates every rep.
  std::vector<std::function<absl::Status()>> steps;
  for (size_t i = 0; i < peers->peers().size(); ++i) {
    steps.push_back([&, i]() -> absl::Status {
      const Peer& peer = peers->peers()[i];
      MD_RETURN_IF_ERROR(WarmFetch(peer, config.size, out));
      MD_ASSIGN_OR_RETURN(Sample t, TimeFetch(peer, config.size, out));
      record(peer_rows[i], t);
      return absl::OkStatus();
    });
  }
  steps.push_back([&]() -> absl::Status {
    MD_ASSIGN_OR_RETURN(ServerProcess server, StartOurs(config, res, data_dir, "off", ""));
    const Peer ours{"modeldist", BlobUrl(server, digest.hex), server.pid, false};
    MD_RETURN_IF_ERROR(WarmFetch(ours, config.size, out));
    MD_ASSIGN_OR_RETURN(Sample t, TimeFetch(ours, config.size, out));
    StopOurs(res);
    record(ours_warm, t);
    return absl::OkStatus();
  });
  if (!config.core_only) {
    steps.push_back([&]() -> absl::Status {
      MD_ASSIGN_OR_RETURN(ServerProcess server, StartOurs(config, res, data_dir, "off", ""));
      const Peer ours{"modeldist", BlobUrl(server, digest.hex), server.pid, false};
      // The page cache warm, read by the driver, not by the server: it has checked nothing.
      MD_RETURN_IF_ERROR(TimeShell(absl::StrCat("cat ", blob_file, " > /dev/null")).status());
      MD_ASSIGN_OR_RETURN(Sample t, TimeFetch(ours, config.size, out));
      StopOurs(res);
      record(ours_fresh, t);
      return absl::OkStatus();
    });
  }
  for (int rep = 1; rep <= config.reps; ++rep) {
    std::cerr << "blob rep " << rep << "/" << config.reps << "\n";
    for (size_t k = 0; k < steps.size(); ++k) {
      MD_RETURN_IF_ERROR(steps[(k + rep - 1) % steps.size()]());
    }
  }
  peers->Stop();

  const std::string best = table.Fastest(peer_rows);
  const double base = Median(table.Gbps(best));
  std::cout << absl::StrFormat(
      "\nhttp_bench blob: curl -sf -o /dev/null URL of %d bytes (%.2f GiB) incompressible, "
      "loopback, %d reps, warm page cache (each server serves the file once, untimed, before "
      "each timed run; the fresh row: the driver read the blob file instead); GB/s = 10^9 B/s, "
      "median (min-max)\n",
      config.size, config.size / double(int64_t{1} << 30), config.reps);
  std::cout << absl::StrFormat("%-40s %-20s %-8s %-20s %s\n", "server", "GB/s", "ratio",
                               "CPU s/GB all", "CPU s/GB server part");
  std::vector<std::string> rows = peer_rows;
  rows.push_back(ours_warm);
  if (!config.core_only) rows.push_back(ours_fresh);
  for (const std::string& row : rows) {
    std::cout << absl::StrFormat("%-40s %-20s %-8s %-20s %s\n", row, MedianRange(table.Gbps(row)),
                                 absl::StrFormat("%.2fx", Median(table.Gbps(row)) / base),
                                 MedianRange(table.CpuPerGb(row)),
                                 MedianRange(server_cpu_per_gb[row]));
  }
  std::cout << absl::StrFormat(
      "(ratio: to the median of \"%s\"; CPU all = bash + curl + the server process, nginx with "
      "its workers)\n",
      best);
  const double ours_gbps = Median(table.Gbps(ours_warm));
  const double ratio = ours_gbps / base;
  std::string fresh;
  if (!config.core_only) {
    fresh = absl::StrFormat("; fresh process (hashing every chunk) %.2fx, server %.2f CPU s/GB",
                            Median(table.Gbps(ours_fresh)) / base,
                            Median(server_cpu_per_gb[ours_fresh]));
  }
  std::cout << absl::StrFormat(
      "RESULT blob: ours (warm) %.2f GB/s / best peer %.2f GB/s (%s) = %.2fx (per-rep ratios to "
      "that rep's faster peer %s; target >= %.1fx: %s); server CPU s/GB ours %.2f, %s %.2f%s\n",
      ours_gbps, base, best, ratio, MedianRange(table.RatioToBestPerRep(ours_warm, peer_rows)),
      kBlobTarget, ratio >= kBlobTarget ? "MET" : "MISSED", Median(server_cpu_per_gb[ours_warm]),
      best, Median(server_cpu_per_gb[best]), fresh);
  return absl::OkStatus();
}

// ---- Edge endpoint -------------------------------------------------------------------------

struct WrkRun {
  double rps = 0;
  int64_t requests = 0;
  double bytes_per_request = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double server_cpu_us = 0;  // per request
  int64_t socket_errors = 0;
};

// The Lua script: the POST, and at the end one line with wrk's counters.
std::string WrkScript(const std::string& body) {
  return absl::StrCat(
      "wrk.method = \"POST\"\n"
      "wrk.body = '",
      body,
      "'\n"
      "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
      "done = function(summary, latency, requests)\n"
      "  local e = summary.errors\n"
      "  io.write(string.format(\"BENCH requests=%d bytes=%d status=%d connect=%d read=%d "
      "write=%d timeout=%d p50us=%d p99us=%d\\n\", summary.requests, summary.bytes, e.status, "
      "e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))\n"
      "end\n");
}

// Runs wrk for `seconds` against `url`; fails when wrk counts a non-2xx answer.
absl::StatusOr<WrkRun> RunWrk(const Config& config, const std::string& what, const std::string& url,
                              pid_t server, bool workers, const std::string& script, int seconds,
                              const std::string& out) {
  const double cpu_before = ProcessCpuSeconds(server, workers);
  MD_RETURN_IF_ERROR(
      TimeShell(absl::StrFormat("wrk -t%d -c%d -d%ds --latency -s %s %s", config.threads,
                                config.connections, seconds, script, url),
                out)
          .status());
  const double cpu_used = ProcessCpuSeconds(server, workers) - cpu_before;
  MD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(out));
  WrkRun run;
  std::map<std::string, int64_t> counters;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (f.size() == 2 && f[0] == "Requests/sec:") run.rps = std::atof(f[1].c_str());
    if (!f.empty() && f[0] == "BENCH") {
      for (size_t i = 1; i < f.size(); ++i) {
        std::pair<std::string, std::string> kv = absl::StrSplit(f[i], absl::MaxSplits('=', 1));
        int64_t value = 0;
        if (absl::SimpleAtoi(kv.second, &value)) counters[kv.first] = value;
      }
    }
  }
  if (run.rps == 0 || counters.count("requests") == 0 || counters["requests"] == 0) {
    return absl::InternalError(absl::StrCat(what, ": cannot parse wrk's output:\n", text));
  }
  if (counters["status"] != 0) {
    return absl::InternalError(
        absl::StrCat(what, ": wrk counted ", counters["status"], " non-2xx answers:\n", text));
  }
  run.requests = counters["requests"];
  run.bytes_per_request = static_cast<double>(counters["bytes"]) / run.requests;
  run.p50_ms = counters["p50us"] / 1000.0;
  run.p99_ms = counters["p99us"] / 1000.0;
  run.socket_errors =
      counters["connect"] + counters["read"] + counters["write"] + counters["timeout"];
  run.server_cpu_us = cpu_used * 1e6 / static_cast<double>(run.requests);
  if (run.socket_errors > 0) {
    std::cerr << what << ": wrk socket errors:\n" << text;
  }
  return run;
}

struct EdgeRow {
  std::string name;
  std::vector<double> rps, p50, p99, cpu_us, bytes;
  int64_t socket_errors = 0;
  void Add(const WrkRun& r) {
    rps.push_back(r.rps);
    p50.push_back(r.p50_ms);
    p99.push_back(r.p99_ms);
    cpu_us.push_back(r.server_cpu_us);
    bytes.push_back(r.bytes_per_request);
    socket_errors += r.socket_errors;
  }
};

// POSTs `body` to `url` with curl; the answer must be 200 and name `hex`. Returns its bytes.
absl::StatusOr<std::string> PostOnce(const std::string& what, const std::string& url,
                                     const std::string& body, const std::string& hex,
                                     const std::string& dir) {
  const std::string answer = dir + "/answer.out";
  const std::string status = dir + "/status.out";
  ::unlink(answer.c_str());
  MD_RETURN_IF_ERROR(TimeShell(absl::StrCat("curl -s -o ", answer,
                                            " -w '%{http_code}' -X POST -H 'Content-Type: "
                                            "application/json' --data-binary '",
                                            body, "' ", url),
                               status)
                         .status());
  MD_ASSIGN_OR_RETURN(std::string code, ReadFileToString(status));
  MD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(answer));
  if (code != "200") {
    return absl::InternalError(
        absl::StrCat(what, ": POST ", url, " answered ", code, ", not 200: ", text));
  }
  if (text.find(hex) == std::string::npos) {
    return absl::DataLossError(
        absl::StrCat(what, ": the answer does not name sha256 ", hex, ": ", text));
  }
  return text;
}

absl::Status RunEdge(const Config& config, Scratch& res, const FileDigest& digest,
                     const std::string& data_dir) {
  const std::string body =
      absl::StrCat(R"({"platform":"linux","tier":")", kTier, R"(","arch":"x86_64"})");
  const std::string script = res.dir + "/post.lua";
  MD_RETURN_IF_ERROR(WriteFileAtomically(script, WrkScript(body), 0644));
  const std::string wrk_out = res.dir + "/wrk.out";

  // modeldist's answer, and a file of exactly its bytes for nginx.
  std::string answer;
  {
    MD_ASSIGN_OR_RETURN(ServerProcess server, StartOurs(config, res, data_dir, "off", ""));
    MD_ASSIGN_OR_RETURN(
        answer, PostOnce("modeldist", absl::StrCat("http://", server.http_address, kEdgePath), body,
                         digest.hex, res.dir));
    StopOurs(res);
  }
  std::cerr << "modeldist's edge answer: 200, " << answer.size()
            << " bytes, names sha256:" << digest.hex << "\n";
  const std::string www = res.dir + "/edge-www";
  const std::string file = www + kEdgePath;
  MD_RETURN_IF_ERROR(MakeDirs(file.substr(0, file.rfind('/'))));
  MD_RETURN_IF_ERROR(WriteFileAtomically(file, answer, 0644));

  struct Nginx {
    ServerProcess process;
    std::string url;
    ~Nginx() { StopChild(process.pid); }
  };
  Nginx nginx_off, nginx_on;
  MD_ASSIGN_OR_RETURN(nginx_off.process,
                      StartEdgeNginx(res.dir + "/nginx-nolog", www, kEdgePath, false));
  MD_ASSIGN_OR_RETURN(nginx_on.process,
                      StartEdgeNginx(res.dir + "/nginx-log", www, kEdgePath, true));
  for (Nginx* n : {&nginx_off, &nginx_on}) {
    n->url = absl::StrCat("http://", n->process.address, kEdgePath);
    MD_ASSIGN_OR_RETURN(std::string got, PostOnce("nginx", n->url, body, digest.hex, res.dir));
    if (got != answer) return absl::InternalError("nginx's answer is not the file's bytes");
  }
  std::cerr << "nginx pids " << nginx_off.process.pid << " (access_log off), "
            << nginx_on.process.pid << " (access_log /dev/null): POST answers 200 with the file\n";

  const std::string wrk_args = absl::StrFormat("wrk -t%d -c%d -d%ds --latency", config.threads,
                                               config.connections, config.duration_s);
  EdgeRow ours_off{"ours --log-level off"};
  EdgeRow ours_on{"ours --log-level info --log-file /dev/null"};
  EdgeRow peer_off{"peer nginx access_log off"};
  EdgeRow peer_on{"peer nginx access_log /dev/null"};
  auto print_rep = [](int rep, const EdgeRow& row, const WrkRun& r) {
    std::cerr << absl::StrFormat(
        "  rep %d %-44s %9.0f req/s p50 %.3f p99 %.3f ms, server CPU %.1f us/req, %.0f B/req%s\n",
        rep, row.name, r.rps, r.p50_ms, r.p99_ms, r.server_cpu_us, r.bytes_per_request,
        r.socket_errors ? absl::StrCat(", ", r.socket_errors, " socket errors") : "");
  };
  int rep = 0;
  auto ours_step = [&](EdgeRow& row, const std::string& level,
                       const std::string& log_file) -> absl::Status {
    MD_ASSIGN_OR_RETURN(ServerProcess server, StartOurs(config, res, data_dir, level, log_file));
    const std::string url = absl::StrCat("http://", server.http_address, kEdgePath);
    MD_RETURN_IF_ERROR(PostOnce(row.name, url, body, digest.hex, res.dir).status());
    MD_RETURN_IF_ERROR(
        RunWrk(config, row.name, url, server.pid, false, script, config.warmup_s, wrk_out)
            .status());
    MD_ASSIGN_OR_RETURN(WrkRun r, RunWrk(config, row.name, url, server.pid, false, script,
                                         config.duration_s, wrk_out));
    StopOurs(res);
    row.Add(r);
    print_rep(rep, row, r);
    return absl::OkStatus();
  };
  auto peer_step = [&](EdgeRow& row, const Nginx& n) -> absl::Status {
    MD_RETURN_IF_ERROR(
        RunWrk(config, row.name, n.url, n.process.pid, true, script, config.warmup_s, wrk_out)
            .status());
    MD_ASSIGN_OR_RETURN(WrkRun r, RunWrk(config, row.name, n.url, n.process.pid, true, script,
                                         config.duration_s, wrk_out));
    row.Add(r);
    print_rep(rep, row, r);
    return absl::OkStatus();
  };
  std::vector<std::function<absl::Status()>> steps = {
      [&] { return ours_step(ours_off, "off", ""); },
      [&] { return peer_step(peer_off, nginx_off); },
      [&] { return ours_step(ours_on, "info", "/dev/null"); },
      [&] { return peer_step(peer_on, nginx_on); },
  };
  for (rep = 1; rep <= config.reps; ++rep) {
    std::cerr << "edge rep " << rep << "/" << config.reps << "\n";
    for (size_t k = 0; k < steps.size(); ++k) {
      MD_RETURN_IF_ERROR(steps[(k + rep - 1) % steps.size()]());
    }
  }

  std::cout << absl::StrFormat(
      "\nhttp_bench edge: POST %s %s (%d B answer), `%s -s post.lua` after a %d s unrecorded "
      "warm-up, %d reps, loopback, no pinning; nginx serves a file of the answer's bytes "
      "(error_page 405 =200 $uri); median (min-max)\n",
      kEdgePath, body, answer.size(), wrk_args, config.warmup_s, config.reps);
  std::cout << absl::StrFormat("%-44s %-26s %-7s %-22s %-22s %-20s %-8s %s\n", "server",
                               "requests/s", "ratio", "p50 ms", "p99 ms", "server CPU us/req",
                               "B/req", "socket errors");
  auto print = [&](const EdgeRow& row, const EdgeRow& base) {
    std::cout << absl::StrFormat(
        "%-44s %-26s %-7s %-22s %-22s %-20s %-8.0f %d\n", row.name, MedianRange(row.rps, 0),
        absl::StrFormat("%.2fx", Median(row.rps) / Median(base.rps)), MedianRange(row.p50, 3),
        MedianRange(row.p99, 3), MedianRange(row.cpu_us, 1), Median(row.bytes), row.socket_errors);
  };
  print(peer_off, peer_off);
  print(ours_off, peer_off);
  print(peer_on, peer_on);
  print(ours_on, peer_on);
  std::cout << "(ratio: to the median of the nginx row with the same logging; B/req: response "
               "bytes per request, headers included, as wrk counts them)\n";
  for (auto [ours, peer] : {std::pair<EdgeRow*, EdgeRow*>{&ours_off, &peer_off},
                            std::pair<EdgeRow*, EdgeRow*>{&ours_on, &peer_on}}) {
    std::vector<double> per_rep;
    for (size_t i = 0; i < ours->rps.size() && i < peer->rps.size(); ++i) {
      per_rep.push_back(ours->rps[i] / peer->rps[i]);
    }
    const double ratio = Median(ours->rps) / Median(peer->rps);
    std::cout << absl::StrFormat(
        "RESULT edge %s: %.0f req/s / %s %.0f req/s = %.2fx (per-rep ratios %s; target >= "
        "%.1fx: %s); server CPU %.1f vs %.1f us/req; socket errors %d\n",
        ours->name, Median(ours->rps), peer->name, Median(peer->rps), ratio, MedianRange(per_rep),
        kEdgeTarget, ratio >= kEdgeTarget ? "MET" : "MISSED", Median(ours->cpu_us),
        Median(peer->cpu_us), ours->socket_errors + peer->socket_errors);
  }
  return absl::OkStatus();
}

// ---- Driver --------------------------------------------------------------------------------

absl::Status Run(const Config& config) {
  if (config.edge && ::access("/usr/bin/wrk", X_OK) != 0) {
    return absl::FailedPreconditionError("/usr/bin/wrk not found (apt-get install -y wrk)");
  }
  Scratch res;
  MD_ASSIGN_OR_RETURN(res.dir, MakeTempDir(config.tmp_parent, "http"));
  // The source, the server's blob and the registry's copy.
  MD_RETURN_IF_ERROR(CheckFreeSpace(res.dir, 3 * config.size));
  MD_RETURN_IF_ERROR(WriteFileAtomically(res.dir + "/token", kToken, 0600));
  const std::string art = res.dir + "/art.bin";
  std::cerr << "creating " << config.size << " incompressible bytes in " << art << "\n";
  MD_ASSIGN_OR_RETURN(FileDigest digest, MakeIncompressibleFile(art, config.size));

  const std::string data_dir = res.dir + "/data";
  {
    MD_ASSIGN_OR_RETURN(ServerProcess server, StartOurs(config, res, data_dir, "off", ""));
    std::cerr << "modeldist-server pid " << server.pid << ", gRPC " << server.address << ", HTTP "
              << server.http_address << "; publishing\n";
    auto start = std::chrono::steady_clock::now();
    MD_ASSIGN_OR_RETURN(Published published, PublishFile(Connect(server.address), kToken, art,
                                                         digest, "bench", "v1", kTier));
    std::cerr << absl::StrFormat(
        "published %s in %.2f s\n", published.digest,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    StopOurs(res);
  }
  if (config.blob) MD_RETURN_IF_ERROR(RunBlob(config, res, digest, art, data_dir));
  if (config.edge) MD_RETURN_IF_ERROR(RunEdge(config, res, digest, data_dir));
  return absl::OkStatus();
}

// The driver's own flags (DriverMain adds --help).
void AddFlags(Flags& flags) {
  flags.Add("size", "BYTES", "1GiB", "blob size");
  flags.Add("reps", "N", "5", "repetitions of every measurement (the median is reported)");
  flags.Add("parts", "LIST", "blob,edge", "what to measure: blob, edge or both");
  flags.Add("duration", "SECONDS", "10", "wrk's measured seconds (edge)");
  flags.Add("warmup", "SECONDS", "2", "wrk's unrecorded warm-up seconds before each run (edge)");
  flags.Add("threads", "N", "2", "wrk -t (edge)");
  flags.Add("connections", "N", "64", "wrk -c (edge)");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("tmp", "DIR", "/tmp", "where the blob and the servers' files go (deleted at the end)");
  flags.AddBool("core-only", "skip the blob row of a fresh server process (chunks hashed)");
}

int RunWithFlags(const Flags& flags) {
  bench::Config config;
  auto size = flags.GetInt("size");
  auto reps = flags.GetInt("reps");
  auto duration = flags.GetInt("duration");
  auto warmup = flags.GetInt("warmup");
  auto threads = flags.GetInt("threads");
  auto connections = flags.GetInt("connections");
  if (!size.ok() || !reps.ok() || !duration.ok() || !warmup.ok() || !threads.ok() ||
      !connections.ok() || *size < 1 || *reps < 1 || *duration < 1 || *warmup < 1 || *threads < 1 ||
      *connections < *threads) {
    std::cerr << "bad --size, --reps, --duration, --warmup, --threads or --connections\n";
    return 2;
  }
  config.size = *size;
  config.reps = static_cast<int>(*reps);
  config.duration_s = static_cast<int>(*duration);
  config.warmup_s = static_cast<int>(*warmup);
  config.threads = static_cast<int>(*threads);
  config.connections = static_cast<int>(*connections);
  config.blob = config.edge = false;
  for (absl::string_view part : absl::StrSplit(flags.Get("parts"), ',')) {
    if (part == "blob") {
      config.blob = true;
    } else if (part == "edge") {
      config.edge = true;
    } else {
      std::cerr << "bad --parts entry \"" << part << "\" (want blob, edge)\n";
      return 2;
    }
  }
  config.core_only = flags.GetBool("core-only");
  config.server_bin = flags.Get("server-bin");
  config.tmp_parent = flags.Get("tmp");
  return bench::DriverExit("http_bench", bench::Run(config));
}

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  return modeldist::bench::DriverMain(
      argc, argv,
      "http_bench: modeldist-server's HTTP listener vs nginx and docker-registry (blob GET "
      "with curl; edge manifest POST with wrk)",
      modeldist::bench::AddFlags, modeldist::bench::RunWithFlags);
}
