// read_through_bench: the read-through figures of issue 11, each against a peer in the same run.
//
// Starts OpenStack Swift with its S3 API on loopback (bucket "models"), nginx serving a folder,
// and the modeldist-server binary of the same build with two origins: "swift" (s3,
// `replicate: true`) and "web" (http, nginx). A --size file (default 1 GiB, random) is
// published and replicated to Swift, which records its chunk chain; nginx serves the same
// bytes under the same key (a hard link). Then, REPS times, for each origin in turn (the server
// restarted with that origin first in its file):
//
//   ours  the blob's local file and sidecar are deleted (as when the copy was evicted or lost),
//         and this driver reads the whole digest with ArtifactService.Read as the agent does
//         (raw_read.h: no parse copy of the data), writing the bytes
//         to a file as they arrive: the server fetches from the origin, checks each chunk
//         against the recorded chain and stores the blob while it streams;
//   peer  `curl -sf -o FILE` of the same object from the same origin (Swift: signed with
//         --aws-sigv4).
//
// Neither side fsyncs its output. Each rep then reads the digest a second time (information:
// it must now be local), and the order of the two sides alternates per rep. Last, with the
// local copy deleted once more, 8 Reads start at once; the server's log names every origin GET
// it starts ("reading ... from origin"), and there must be exactly one.
//
// Then the same for a pull-through cache: a second modeldist-server holds the blob (published
// to it too) and is the server's first origin (`modeldist`); its peer is the same Read from that
// upstream directly, what a device does without the cache.
//
// Prints median (min-max) GB/s (10^9 B/s) and the ratios. The target: the first read >= 0.8x
// curl from the same origin, for nginx and for Swift (the issue sets none for the cache).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "bench/origin_bench_util.h"
#include "bench/peers.h"
#include "client/download/raw_read.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "modeldist/v1/artifact.grpc.pb.h"

namespace modeldist::bench {
namespace {

constexpr char kToken[] = "bench-admin-token-0123456789abcdef";
constexpr double kTarget = 0.8;
constexpr int kConcurrentReads = 8;

struct Config {
  int64_t size = 0;
  int reps = 3;
  std::string server_bin;
  std::string tmp_parent;
};

// Reads the whole of `digest` through ArtifactService.Read into `out` (truncated first), as the
// agent receives: the data as views into gRPC's buffers (client/download/raw_read.h, no parse
// copy). Written as curl writes, with plain buffered writes, so that both sides' output costs
// the same: with the agent's O_DIRECT writes instead, this side's first read of 1 GiB took
// 1.6 s when it ran first in a rep and 3.0-3.3 s when it ran after curl. Returns the seconds it
// took; the byte count must be `size`.
absl::StatusOr<double> ReadToFile(const std::string& address, const std::string& digest,
                                  int64_t size, const std::string& out) {
  // A channel of its own: no connection reused from another read.
  std::shared_ptr<grpc::Channel> channel = Connect(address, /*unique=*/true);
  ScopedFd fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("open ", out));
  const auto start = std::chrono::steady_clock::now();
  grpc::ClientContext context;
  v1::ReadRequest request;
  request.set_digest(digest);
  client::RawReadStream stream(channel, &context, request);
  client::ReadChunk chunk;
  int64_t got = 0;
  absl::Status written;
  while (written.ok() && stream.Next(&chunk)) {
    for (absl::string_view piece : chunk.data) {
      written = WriteAll(fd.get(), piece.data(), piece.size());
      if (!written.ok()) break;
      got += static_cast<int64_t>(piece.size());
    }
  }
  if (!written.ok()) context.TryCancel();
  absl::Status status = stream.Finish();
  if (!written.ok()) return written;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!status.ok()) return WithContext(status, absl::StrCat("Read ", digest));
  if (got != size) {
    return absl::DataLossError(absl::StrCat("Read ", digest, " gave ", got, " bytes, not ", size));
  }
  return seconds;
}

// The blob's file and sidecar in the server's store, as when its local copy is gone.
absl::Status DeleteLocalCopy(const std::string& data_dir, const std::string& hex) {
  const std::string blob = absl::StrCat(data_dir, "/blobs/sha256/", hex.substr(0, 2), "/", hex);
  for (const std::string& path : {blob, blob + ".chain"}) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, absl::StrCat("unlink ", path));
    }
  }
  return absl::OkStatus();
}

bool IsStored(const std::string& data_dir, const std::string& hex) {
  return ::access(absl::StrCat(data_dir, "/blobs/sha256/", hex.substr(0, 2), "/", hex).c_str(),
                  F_OK) == 0;
}

// Lines of the server's log that start an origin GET for `hex`.
absl::StatusOr<int> OriginGets(const std::string& log, const std::string& hex) {
  MD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(log));
  int count = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    count +=
        absl::StrContains(line, "reading sha256:" + hex) && absl::StrContains(line, "from origin");
  }
  return count;
}

struct Setup {
  std::string dir;
  std::string data_dir;
  std::string nginx_url;  // of the object
  std::string swift_key;
  std::string digest;
  std::string hex;
};

// The peer of a figure: its row's name, what the RESULT line calls the origin, and one timed
// download of the whole object into `out`.
struct Peer {
  std::string row;
  std::string origin;
  std::function<absl::StatusOr<Sample>(const std::string& out)> run;
  bool has_target = true;  // the 0.8x applies
};

// A peer that runs `command` (curl ..., writing `out`), with its CPU time.
Peer CurlPeer(std::string row, std::string origin,
              std::function<std::string(const std::string&)> command) {
  return Peer{std::move(row), std::move(origin),
              [command = std::move(command)](const std::string& out) -> absl::StatusOr<Sample> {
                const double cpu_before = ReapedChildrenCpuSeconds();
                Sample t;
                MD_ASSIGN_OR_RETURN(t.seconds, TimeShell(command(out)));
                t.cpu_seconds = ReapedChildrenCpuSeconds() - cpu_before;
                return t;
              }};
}

// One origin's figure: the server restarted with `first` first in its origins file.
absl::Status Figure(const Config& config, const Peer& peer_side, const Setup& setup,
                    const std::string& first, const std::string& origins_text,
                    std::vector<std::string>* results) {
  const std::string origins = absl::StrCat(setup.dir, "/origins-", first, ".textproto");
  MD_RETURN_IF_ERROR(WriteFileAtomically(origins, origins_text, 0600));
  const std::string log = absl::StrCat(setup.dir, "/server-", first, ".log");
  Scratch server_scope;
  MD_ASSIGN_OR_RETURN(ServerProcess server,
                      StartServerWithOrigins(config.server_bin, setup.data_dir,
                                             setup.dir + "/token", origins, log));
  server_scope.server = server.pid;
  std::cerr << "modeldist-server pid " << server.pid << " on " << server.address << ", origin "
            << first << " first\n";

  ResultTable table(config.size);
  const std::string& peer = peer_side.row;
  const std::string ours = absl::StrCat("ours first Read (read through from ", first, ")");
  const std::string second = "info second Read (local)";
  const std::string out = setup.dir + "/out.bin";
  auto run_peer = [&]() -> absl::Status {
    ::unlink(out.c_str());
    ::sync();
    MD_ASSIGN_OR_RETURN(Sample t, peer_side.run(out));
    struct stat st;
    if (::stat(out.c_str(), &st) != 0 || st.st_size != config.size) {
      return absl::DataLossError("the peer's download is short");
    }
    table.Record(peer, t);
    return absl::OkStatus();
  };
  auto run_ours = [&]() -> absl::Status {
    MD_RETURN_IF_ERROR(DeleteLocalCopy(setup.data_dir, setup.hex));
    ::unlink(out.c_str());
    ::sync();
    const double server_before = ProcessCpuSeconds(server.pid);
    const double self_before = SelfCpuSeconds();
    Sample t;
    MD_ASSIGN_OR_RETURN(t.seconds, ReadToFile(server.address, setup.digest, config.size, out));
    t.server_cpu_seconds = ProcessCpuSeconds(server.pid) - server_before;
    t.cpu_seconds = t.server_cpu_seconds + SelfCpuSeconds() - self_before;
    table.Record(ours, t, absl::StrFormat("  (modeldist-server CPU %.2f s)", t.server_cpu_seconds));
    // The last chunk reaches readers once it hashes to the digest, before the store's fsync
    // and rename: the blob is stored a moment later.
    for (int waited = 0; !IsStored(setup.data_dir, setup.hex); waited += 10) {
      if (waited > 30000) return absl::InternalError("the blob read through was not stored");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Sample again;
    MD_ASSIGN_OR_RETURN(again.seconds, ReadToFile(server.address, setup.digest, config.size, out));
    table.Record(second, again);
    return absl::OkStatus();
  };
  for (int rep = 1; rep <= config.reps; ++rep) {
    std::cerr << first << " rep " << rep << "/" << config.reps << "\n";
    if (rep % 2 == 1) {
      MD_RETURN_IF_ERROR(run_peer());
      MD_RETURN_IF_ERROR(run_ours());
    } else {
      MD_RETURN_IF_ERROR(run_ours());
      MD_RETURN_IF_ERROR(run_peer());
    }
  }
  ::unlink(out.c_str());
  table.Print(absl::StrFormat("read_through_bench from %s: %d bytes (%.2f GiB) random, %d reps; "
                              "GB/s = 10^9 B/s, median (min-max)",
                              first, config.size, config.size / double(1 << 30), config.reps),
              peer);
  const double ratio = Median(table.Gbps(ours)) / Median(table.Gbps(peer));
  const std::string verdict =
      peer_side.has_target
          ? absl::StrFormat("target >= %.1fx: %s", kTarget, ratio >= kTarget ? "MET" : "MISSED")
          : "no target";
  results->push_back(absl::StrFormat(
      "RESULT read-through first read from %s: %.2f GB/s / %s %.2f GB/s = %.2fx (per-rep "
      "ratios %s; %s); second read %.2f GB/s, local",
      peer_side.origin, Median(table.Gbps(ours)), peer, Median(table.Gbps(peer)), ratio,
      MedianRange(table.RatioToBestPerRep(ours, {peer})), verdict, Median(table.Gbps(second))));

  if (first != "web") return absl::OkStatus();
  // Concurrent first reads: one origin GET.
  MD_RETURN_IF_ERROR(DeleteLocalCopy(setup.data_dir, setup.hex));
  MD_ASSIGN_OR_RETURN(const int gets_before, OriginGets(log, setup.hex));
  std::vector<absl::Status> status(kConcurrentReads);
  std::vector<std::thread> readers;
  for (int i = 0; i < kConcurrentReads; ++i) {
    readers.emplace_back([&, i] {
      status[i] = ReadToFile(server.address, setup.digest, config.size,
                             absl::StrCat(setup.dir, "/concurrent-", i, ".bin"))
                      .status();
    });
  }
  for (std::thread& t : readers) t.join();
  for (int i = 0; i < kConcurrentReads; ++i) {
    ::unlink(absl::StrCat(setup.dir, "/concurrent-", i, ".bin").c_str());
    MD_RETURN_IF_ERROR(status[i]);
  }
  MD_ASSIGN_OR_RETURN(const int gets_after, OriginGets(log, setup.hex));
  const int gets = gets_after - gets_before;
  results->push_back(absl::StrFormat(
      "RESULT %d concurrent first reads of one digest: %d origin GET(s) (target exactly 1: %s)",
      kConcurrentReads, gets, gets == 1 ? "MET" : "MISSED"));
  return absl::OkStatus();
}

absl::Status Run(const Config& config) {
  Scratch res;
  MD_ASSIGN_OR_RETURN(res.dir, MakeTempDir(config.tmp_parent, "read-through"));
  // The file, the blob, its partial, Swift's object, the upstream's copy, the two downloads.
  MD_RETURN_IF_ERROR(CheckFreeSpace(res.dir, 7 * config.size));
  MD_RETURN_IF_ERROR(WriteFileAtomically(res.dir + "/token", kToken, 0600));
  Swift swift;  // first: the children right after its start are Swift's
  MD_RETURN_IF_ERROR(swift.Start(res.dir));
  MD_RETURN_IF_ERROR(swift.WriteNetrc(res.dir + "/netrc"));
  const std::string www = res.dir + "/www";
  MD_RETURN_IF_ERROR(MakeDirs(www + "/sha256"));
  MD_ASSIGN_OR_RETURN(ServerProcess nginx, StartNginx(res.dir + "/nginx", www));
  Scratch nginx_scope;
  nginx_scope.server = nginx.pid;

  Setup setup;
  setup.dir = res.dir;
  setup.data_dir = res.dir + "/data";
  // Neither origin is handed to devices: the figure is the server's Read.
  MD_ASSIGN_OR_RETURN(std::string swift_entry, SwiftOriginEntry("swift", res.dir, swift, "", 0,
                                                                "  hide_from_devices: true\n"));
  const std::string web_entry =
      absl::StrCat("origins {\n  name: \"web\"\n  http { base_url: \"http://", nginx.address,
                   "\" }\n  hide_from_devices: true\n}\n");

  // Publish and replicate, with Swift first (nothing to read through yet).
  const std::string file = res.dir + "/model.gguf";
  MD_ASSIGN_OR_RETURN(FileDigest digest, MakeIncompressibleFile(file, config.size, /*fresh=*/true));
  setup.hex = digest.hex;
  setup.digest = "sha256:" + digest.hex;
  setup.swift_key = "sha256/" + digest.hex;
  {
    const std::string origins = res.dir + "/origins-publish.textproto";
    MD_RETURN_IF_ERROR(WriteFileAtomically(origins, swift_entry + web_entry, 0600));
    Scratch server_scope;
    MD_ASSIGN_OR_RETURN(
        ServerProcess server,
        StartServerWithOrigins(config.server_bin, setup.data_dir, res.dir + "/token", origins,
                               res.dir + "/server-publish.log"));
    server_scope.server = server.pid;
    MD_RETURN_IF_ERROR(
        PublishFile(Connect(server.address), kToken, file, digest, "rt", "v1", "rt").status());
    auto registry = v1::RegistryService::NewStub(Connect(server.address));
    MD_RETURN_IF_ERROR(
        WaitConfirmed(*registry, kToken, "models/rt/versions/v1", "swift", absl::Minutes(10)));
    std::cerr << "published " << setup.digest << " and replicated it to Swift\n";
  }
  // nginx holds the same bytes under the same key.
  if (::link(file.c_str(), (www + "/" + setup.swift_key).c_str()) != 0) {
    return ErrnoStatus(errno, "link the file into nginx's folder");
  }
  setup.nginx_url = absl::StrCat("http://", nginx.address, "/", setup.swift_key);

  std::vector<std::string> results;
  const Peer nginx_peer =
      CurlPeer("peer curl -o from nginx", "nginx", [&setup](const std::string& out) {
        return absl::StrCat("curl -sf -o ", out, " ", setup.nginx_url);
      });
  MD_RETURN_IF_ERROR(Figure(config, nginx_peer, setup, "web", web_entry + swift_entry, &results));
  const Peer swift_peer =
      CurlPeer("peer curl -o from Swift", "Swift", [&swift, &setup](const std::string& out) {
        return swift.Curl(absl::StrCat("-o ", out), setup.swift_key);
      });
  MD_RETURN_IF_ERROR(Figure(config, swift_peer, setup, "swift", swift_entry + web_entry, &results));

  // A pull-through cache: another modeldist-server holds the blob (published to it as well),
  // and the server reads it through from there. The peer is what a device does without the
  // cache: the same Read from that upstream directly. No target (the issue sets none).
  Scratch upstream_scope;
  MD_ASSIGN_OR_RETURN(ServerProcess upstream,
                      StartModeldistServer(config.server_bin, res.dir + "/upstream",
                                           res.dir + "/token", 1 << 20, res.dir + "/upstream.log"));
  upstream_scope.server = upstream.pid;
  MD_RETURN_IF_ERROR(
      PublishFile(Connect(upstream.address), kToken, file, digest, "rt", "v1", "").status());
  const std::string upstream_entry = absl::StrCat(
      "origins {\n  name: \"upstream\"\n  modeldist { target: \"", upstream.address, "\" }\n}\n");
  const Peer upstream_peer{
      "peer Read from the upstream", "a modeldist upstream",
      [&](const std::string& out) -> absl::StatusOr<Sample> {
        const double upstream_before = ProcessCpuSeconds(upstream.pid);
        const double self_before = SelfCpuSeconds();
        Sample t;
        MD_ASSIGN_OR_RETURN(t.seconds,
                            ReadToFile(upstream.address, setup.digest, config.size, out));
        t.cpu_seconds =
            ProcessCpuSeconds(upstream.pid) - upstream_before + SelfCpuSeconds() - self_before;
        return t;
      },
      /*has_target=*/false};
  MD_RETURN_IF_ERROR(Figure(config, upstream_peer, setup, "upstream",
                            upstream_entry + swift_entry + web_entry, &results));
  std::cout << "\n";
  for (const std::string& line : results) std::cout << line << "\n";
  return absl::OkStatus();
}

// The driver's own flags (DriverMain adds --help).
void AddFlags(Flags& flags) {
  flags.Add("size", "BYTES", "1GiB", "size of the artifact read through");
  flags.Add("reps", "N", "3", "repetitions of every measurement (the median is reported)");
  flags.Add("server-bin", "PATH", MODELDIST_SERVER_BIN, "modeldist-server binary");
  flags.Add("tmp", "DIR", "/tmp", "where the files, Swift's data and downloads go (deleted)");
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
  config.server_bin = flags.Get("server-bin");
  config.tmp_parent = flags.Get("tmp");
  return bench::DriverExit("read_through_bench", bench::Run(config));
}

}  // namespace
}  // namespace modeldist::bench

int main(int argc, char** argv) {
  return modeldist::bench::DriverMain(
      argc, argv,
      "read_through_bench: ArtifactService.Read of a blob that is not stored, read through "
      "from nginx and from Swift, vs curl from the same origin",
      modeldist::bench::AddFlags, modeldist::bench::RunWithFlags);
}
