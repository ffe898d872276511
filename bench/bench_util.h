// File: bench_util.h
//
// Shared plumbing for the benchmark drivers: child processes that are always stopped by PID
// (also when the driver fails or is interrupted), starting modeldist-server and nginx on
// loopback, a big incompressible test file, publishing a file through RegistryService, and
// small statistics helpers. The HTTP peers of the download drivers are in bench/peers.h, the
// unary gRPC loads (GetManifest, ReportStatus) in bench/grpc_load.h.
//
// The drivers compare modeldist with a peer measured in the same run on the same machine, so
// every figure they print is meant to be read as a ratio, never as an absolute target.
#ifndef MODELDIST_BENCH_BENCH_UTIL_H_
#define MODELDIST_BENCH_BENCH_UTIL_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/digest.h"
#include "common/flags.h"

namespace modeldist::bench {

// ---- Processes -----------------------------------------------------------------------------

// Installs SIGINT/SIGTERM handlers and an atexit hook that stop every child still running, so
// that no server outlives the driver. Call once at the start of main.
void InstallChildReaper();

// Starts `argv` (argv[0] is a path) with stdout and stderr appended to `log_path` ("" keeps
// the driver's). The child gets SIGTERM if the driver dies. Returns its PID.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path);

// SIGTERM, then SIGKILL after `grace_ms`; reaps the child. A PID already gone is fine.
void StopChild(pid_t pid, int grace_ms = 5000);

// True while `pid` (a child of ours) has not exited.
bool ChildAlive(pid_t pid);

// ---- CPU placement -------------------------------------------------------------------------

// Which CPUs the driver (the load generator, and the tools it runs such as wrk) and the servers
// it starts may use. Empty lists mean "wherever the scheduler puts them".
struct Placement {
  std::vector<int> driver_cpus;
  std::vector<int> server_cpus;
};

// The last CPU this process may use for servers, the others for the driver: the split gRPC's
// own benchmark driver makes when client and server share one machine, so that a closed-loop
// load generator does not take time slices from the server it measures. Needs >= 2 CPUs.
absl::StatusOr<Placement> SplitPlacement();

// Restricts this process to `cpus` (no-op when empty). Call at the start of main, before any
// gRPC use: threads inherit the set only when they are created after it.
absl::Status PinThisProcess(const std::vector<int>& cpus);

// A load driver's --placement: "split" (SplitPlacement, with this process pinned to the driver
// CPUs; call it before any gRPC use, as PinThisProcess says) or "shared" (no pinning, empty
// lists). Sets `driver_cpus` to how many CPUs the load generator may use. INVALID_ARGUMENT for
// another name.
absl::StatusOr<Placement> PlaceDriver(const std::string& name, int* driver_cpus);

// PlaceDriver for the driver's --placement flag: sets `name` (the flag's value), `placement`
// and `driver_cpus`. False, with the error on stderr, for another name or a failed pin.
bool PlaceDriverByFlag(const Flags& flags, std::string* name, Placement* placement,
                       int* driver_cpus);

// "0-2,5" style text for a CPU list ("any" when empty).
std::string CpuListText(const std::vector<int>& cpus);

// Runs `command` with `bash -c`, stdout to `stdout_path` ("" = /dev/null), and waits. Returns
// the wall-clock seconds; an error when it exits non-zero.
absl::StatusOr<double> TimeShell(const std::string& command, const std::string& stdout_path = "");

// ---- Servers -------------------------------------------------------------------------------

struct ServerProcess {
  pid_t pid = -1;
  int port = 0;
  std::string address;       // 127.0.0.1:port
  std::string http_address;  // modeldist-server's HTTP listener (ModeldistExtras::http)
};

// Starts a server on a free loopback port, a few times if need be (the free port picked can
// be taken before the server binds it): `launch(port)` writes its configuration and spawns it,
// and `ready(server)` is then asked every 50 ms, for up to `wait_ms` while the server runs,
// whether it is up (true), not yet (false), or whether someone else answers on the port (an
// error: ours cannot have bound it, so the next attempt takes another port). `what` and `log`
// name it in the error.
absl::StatusOr<ServerProcess> StartOnFreePort(
    const std::string& what, const std::string& log, int wait_ms,
    const std::function<absl::StatusOr<pid_t>(int port)>& launch,
    const std::function<absl::StatusOr<bool>(const ServerProcess&)>& ready);

// What a driver changes of StartModeldistServer's flags.
struct ModeldistExtras {
  bool http = false;  // also --http-listen on a free loopback port (ServerProcess::http_address)
  // The request log: off by default, as the peers' access logs are (http_bench measures what it
  // costs); `log_file` "" sends it to the server's stderr, in the log.
  std::string log_level = "off";
  std::string log_file;
};

// Starts modeldist-server on 127.0.0.1:0 with `data_dir`, the admin token in `token_file` and
// `chunk_size`, and waits until it has written its port files.
// `cpus` restricts the server to those CPUs (empty = any).
absl::StatusOr<ServerProcess> StartModeldistServer(
    const std::string& binary, const std::string& data_dir, const std::string& token_file,
    int64_t chunk_size, const std::string& log_path, const std::vector<int>& cpus = {},
    const ModeldistExtras& extras = ModeldistExtras());

// What a driver adds to StartNginx's configuration.
struct NginxExtras {
  std::string access_log = "off";  // or a path, e.g. /dev/null
  std::string http;                // more directives of the http {} block
  std::string server;              // more directives of the server {} block (e.g. a location)
};

// Starts nginx (`daemon off`, sendfile on, access_log off, `workers` worker processes) with
// its prefix in `prefix` (created) serving `root` on 127.0.0.1 at a free high port. The bind is
// checked by fetching a random token file that only this instance can serve, so a foreign
// listener on the port is never mistaken for ours. `cpus` restricts it to those CPUs.
absl::StatusOr<ServerProcess> StartNginx(const std::string& prefix, const std::string& root,
                                         int workers = 2, const std::vector<int>& cpus = {},
                                         const NginxExtras& extras = NginxExtras());

// ---- Data ----------------------------------------------------------------------------------

// Writes `size` bytes of AES-128-CTR keystream (incompressible) to `path` and returns their
// digest. Deterministic, or new content every call with `fresh` (a random key). Fast (AES-NI),
// so a GiB costs about a second.
absl::StatusOr<FileDigest> MakeIncompressibleFile(const std::string& path, int64_t size,
                                                  bool fresh = false);

// A plaintext channel to `address` that accepts messages of any size. `unique` gives the
// channel its own TCP connection (gRPC otherwise shares one between equal channels).
std::shared_ptr<grpc::Channel> Connect(const std::string& address, bool unique = false);

struct Published {
  std::string digest;  // sha256:<hex>
  int64_t size_bytes = 0;
  std::string version;  // models/{model}/versions/{version}
};

// CreateModel (if needed), CreateVersion with one linux/x86_64 GGUF artifact, WriteArtifact
// streaming the file, PublishVersion and, when `tier` is not empty, SetTier(tier, stable).
absl::StatusOr<Published> PublishFile(const std::shared_ptr<grpc::Channel>& channel,
                                      const std::string& token, const std::string& path,
                                      const FileDigest& digest, const std::string& model,
                                      const std::string& version, const std::string& tier);

// A server for the RPC loads (report_bench) and what it serves.
struct SmallModelServer {
  ServerProcess server;
  Published published;
};

// Writes `token` to `dir`/token, starts modeldist-server (StartModeldistServer: data in
// `dir`/data, log `dir`/server.log, 1 MiB chunks, on `cpus`) and publishes a 4 KiB
// incompressible artifact as models/bench/versions/v1 bound to tier `bench`, so a GetManifest
// for tier bench, linux/x86_64, answers with it. The caller stops server.pid; a failure after
// the start stops it here.
absl::StatusOr<SmallModelServer> StartServerWithSmallModel(
    const std::string& binary, const std::string& dir, const std::string& token,
    const std::vector<int>& cpus = {}, const ModeldistExtras& extras = ModeldistExtras());

// ---- Helpers -------------------------------------------------------------------------------

// One run of a child process.
struct ChildRun {
  double seconds = 0;      // from the spawn to its exit
  int64_t hwm_kib = -1;    // peak RSS, VmHWM polled every 5 ms while it ran
  int64_t maxrss_kib = 0;  // ru_maxrss
  double cpu_seconds = 0;  // its own user + system
  int wait_status = 0;
};

// Runs `argv` (stdout and stderr to `log_path`) to its exit. The clock stops at the exit
// (waitid without reaping), then wait4 reaps it for its rusage.
absl::StatusOr<ChildRun> RunMeasured(const std::vector<std::string>& argv,
                                     const std::string& log_path);

// Writes the pinned trust root the agent needs: the server at `address`'s SignedTrustRoot
// version 1, as an app ships it.
absl::Status WriteTrustRoot(const std::string& address, const std::string& path);

// One `modeldist-agent sync --json` of a linux/x86_64 device into `dir` (removed first),
// measured with RunMeasured; an error unless it activated `size` downloaded bytes. `dir` is
// removed again afterwards.
absl::StatusOr<ChildRun> RunAgentSync(const std::string& agent_bin, const std::string& server,
                                      const std::string& tier, const std::string& root_file,
                                      const std::string& dir, const std::string& json_path,
                                      int64_t size);

// How a timed step starts cold: sync(2), so that no write-back of an earlier step lands in it,
// then the page cache emptied (/proc/sys/vm/drop_caches, as root) so that `file` is read from
// the disk. Without the rights for that, only `file`'s pages are evicted
// (posix_fadvise(DONTNEED)). Returns which of the two was done: "drop_caches" or "fadvise".
std::string DropPageCache(const std::string& file);

// True when `dir` is on tmpfs (memory, not a disk).
bool OnTmpfs(const std::string& dir);

// mkdtemp under `parent` with `tag` in the name, mode 0755 (nginx workers read from it);
// remove it with RemoveTree.
absl::StatusOr<std::string> MakeTempDir(const std::string& parent, const std::string& tag);
void RemoveTree(const std::string& path);

// A value from /proc/PID/status in KiB (e.g. "VmHWM", "VmRSS"); -1 if unreadable.
int64_t ProcStatusKib(pid_t pid, const std::string& key);

// CPU seconds (user + system) used so far by `pid` (all its threads) and, with
// `with_children`, by its live direct children (e.g. nginx's workers); 0 if unreadable.
double ProcessCpuSeconds(pid_t pid, bool with_children = false);
// CPU seconds of this process, and of its waited-for children, so far (getrusage).
double SelfCpuSeconds();
double ReapedChildrenCpuSeconds();

double Median(std::vector<double> values);
double Min(const std::vector<double>& values);
double Max(const std::vector<double>& values);

// "1.23 (1.01-1.30)": median (min-max), with `precision` decimals.
std::string MedianRange(const std::vector<double>& values, int precision = 2);

// "12.3 MiB" for a KiB count.
std::string Mib(int64_t kib);

// Gigabytes (10^9) per second.
inline double GBps(int64_t bytes, double seconds) { return bytes / seconds / 1e9; }

// ---- Driver ----------------------------------------------------------------------------------

// What one driver run starts and creates, released whatever happens: the scratch directory
// (removed) and the modeldist-server (stopped by PID).
struct Scratch {
  std::string dir;
  pid_t server = -1;
  ~Scratch() {
    StopChild(server);
    if (!dir.empty()) RemoveTree(dir);
  }
};

// Parses the driver's flags; with --help prints `about` and the flags. Returns the exit code
// when the driver should stop now (2 after a bad flag, 0 after --help).
std::optional<int> ParseDriverFlags(Flags& flags, int argc, char** argv, const std::string& about);

// The driver's exit code for the outcome of its run (1 with the error on stderr).
int DriverExit(const std::string& driver, const absl::Status& status);

// A driver's whole main: InstallChildReaper, then `add_flags` declares the driver's flags
// (--help is added after them, so it is listed last), ParseDriverFlags with `about`, and
// `run` reads the flags into the run's configuration and returns the exit code (2 for a bad
// flag value, else usually DriverExit of the run).
int DriverMain(int argc, char** argv, const std::string& about,
               const std::function<void(Flags&)>& add_flags,
               const std::function<int(const Flags&)>& run);

// Fails unless the file system holding `dir` has `need` bytes free (plus 1 GiB of slack).
absl::Status CheckFreeSpace(const std::string& dir, int64_t need);

}  // namespace modeldist::bench

#endif  // MODELDIST_BENCH_BENCH_UTIL_H_
