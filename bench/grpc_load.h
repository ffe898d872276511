// File: grpc_load.h
//
// Unary gRPC loads for the benchmark drivers: on each of C channels (each its own TCP
// connection) up to K calls in flight, driven by CompletionQueue threads, either closed-loop
// (a call starts as soon as one ends) or paced at a fixed rate. Several loads can run in one
// measured window (e.g. GetManifest with ReportStatus beside it), so that what one costs the
// other is measured in the same run.
//
// Calls go through grpc::GenericStub with request bytes built by the caller, so the load
// generator spends its CPU on gRPC rather than on protobuf; RequestBytes glues a per-call
// field (a device id) to a message body serialized once.
#ifndef MODELDIST_BENCH_GRPC_LOAD_H_
#define MODELDIST_BENCH_GRPC_LOAD_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace modeldist::bench {

// C channels x K calls in flight on each, written "CxK" (e.g. 2x16) on command lines.
struct LoadShape {
  int channels = 1;
  int in_flight = 32;
};
// nullopt unless `text` is CxK with C, K >= 1.
std::optional<LoadShape> ParseLoadShape(const std::string& text);

// One kind of call kept in flight.
struct UnaryLoad {
  std::string method;  // "/modeldist.v1.ManifestService/GetManifest"
  int channels = 1;
  int in_flight = 32;  // per channel
  // Driving threads (at most one per channel; channels are dealt out round-robin). More threads
  // than the driver has CPUs make its threads wait for time slices, which shows up in the tail
  // as if the server were slow.
  int threads = 1;
  // 0: closed loop. Otherwise calls are started at this rate in all (split evenly between the
  // threads) as long as a slot is free; a thread that fell behind catches up by at most 10 ms
  // worth of calls, so a slow server is seen as a lower rate, not as bursts.
  double calls_per_second = 0;
  // The request of call `n` (numbered per load; thread t of T sends calls t, t + T, ...).
  // Called on the driving thread.
  std::function<grpc::ByteBuffer(uint64_t n)> request;
  // Optional: what an OK answer counts for in LoadResult::units (e.g. the reports it accepted;
  // default 1). Called on the driving thread; may consume `response`.
  std::function<int64_t(grpc::ByteBuffer* response)> units;
};

// What one load did in the measured window.
struct LoadResult {
  int64_t calls = 0;  // OK answers received in the window
  int64_t units = 0;  // their units
  double calls_per_s = 0;
  double units_per_s = 0;
  // Latency of the OK calls that started and ended in the window.
  double p50_ms = 0;
  double p99_ms = 0;
  double p999_ms = 0;
  // Failed calls received in the window, by "CODE REASON" (the ErrorInfo reason).
  std::map<std::string, int64_t> errors;
  int64_t ErrorCount() const;
};

struct LoadWindow {
  std::vector<LoadResult> loads;  // in the order of the loads run
  double seconds = 0;             // the measured window
  double server_cpu_s = 0;        // CPU of `server` in the window
  double driver_cpu_s = 0;        // CPU of this process (the load generator) in the window
};

// Runs `loads` at once against `address` for `warmup_s` unmeasured, then `duration_s`
// measured seconds; `server` is the PID whose CPU is read.
LoadWindow RunLoads(const std::string& address, pid_t server, const std::vector<UnaryLoad>& loads,
                    double warmup_s, double duration_s);

// The GetManifest load of the RPC drivers (manifest_bench, report_bench): tier bench,
// linux/x86_64 (what StartServerWithSmallModel publishes), closed loop, `shape` driven by
// `threads` threads, every call from another of 100000 devices, so that with a rollout active
// the cohort hash runs and both versions' answers are served.
inline constexpr char kGetManifestMethod[] = "/modeldist.v1.ManifestService/GetManifest";
UnaryLoad ManifestLoad(const LoadShape& shape, int threads);

// One call of `method` with `request` on a channel of its own, waited for (no deadline): a
// driver's check that the server answers before it measures.
grpc::Status CallOnce(const std::string& address, const std::string& method,
                      const grpc::ByteBuffer& request, grpc::ByteBuffer* response);

// The bytes of `head` followed by `tail`, without copying `tail`. Protobuf merges the fields
// of concatenated messages, so a message holding only a per-call field (a device id) as
// `head` and the rest of the request serialized once as `tail` parse as one request.
grpc::ByteBuffer RequestBytes(const std::string& head, const grpc::Slice& tail);

}  // namespace modeldist::bench

#endif  // MODELDIST_BENCH_GRPC_LOAD_H_
