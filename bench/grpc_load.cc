#include "bench/grpc_load.h"

#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist::bench {
namespace {

using Clock = std::chrono::steady_clock;

// How far a paced thread may catch up after it fell behind (a slow server, a preempted driver).
constexpr Clock::duration kMaxLag = std::chrono::milliseconds(10);

// One call slot. ClientContext cannot be reused, so each call gets a fresh one.
struct Slot {
  grpc::GenericStub* stub = nullptr;
  std::optional<grpc::ClientContext> context;
  grpc::ByteBuffer response;
  grpc::Status status;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> reader;
  Clock::time_point start;
};

// What one driving thread records; merged into a LoadResult at the end.
struct ThreadRecord {
  std::vector<int64_t> latencies_ns;
  int64_t calls = 0;
  int64_t units = 0;
  std::map<std::string, int64_t> errors;
};

struct Window {
  Clock::time_point measure_from;
  Clock::time_point end;
};

std::chrono::system_clock::time_point SystemDeadline(Clock::time_point deadline) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - Clock::now());
}

void Record(const UnaryLoad& load, Slot& slot, Clock::time_point now, const Window& window,
            ThreadRecord* record) {
  if (now < window.measure_from || now > window.end) return;
  if (!slot.status.ok()) {
    const absl::Status status = FromGrpcStatus(slot.status);
    ++record
          ->errors[absl::StrCat(absl::StatusCodeToString(status.code()), " ", ErrorReason(status))];
    return;
  }
  ++record->calls;
  record->units += load.units ? load.units(&slot.response) : 1;
  if (slot.start >= window.measure_from) {
    record->latencies_ns.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - slot.start).count());
  }
}

// Drives `channels` channels of `load` from this thread's one CompletionQueue until the end of
// `window`, then waits for the calls still out. Sends calls first, first + stride, ..., at
// `rate` calls per second (0: closed loop).
void Drive(const std::string& address, const UnaryLoad& load, int channels, double rate,
           uint64_t first, uint64_t stride, const Window& window, ThreadRecord* record) {
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (int c = 0; c < channels; ++c) {
    stubs.push_back(std::make_unique<grpc::GenericStub>(Connect(address, /*unique=*/true)));
  }
  grpc::CompletionQueue cq;
  std::vector<Slot> slots(static_cast<size_t>(channels) * load.in_flight);
  std::vector<Slot*> idle;
  for (size_t i = 0; i < slots.size(); ++i) {
    slots[i].stub = stubs[i % stubs.size()].get();
    idle.push_back(&slots[i]);
  }
  const Clock::duration interval =
      rate > 0
          ? std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1 / rate))
          : Clock::duration::zero();
  Clock::time_point due = Clock::now();
  uint64_t n = first;
  size_t outstanding = 0;
  while (true) {
    Clock::time_point now = Clock::now();
    if (now < window.end) {
      due = std::max(due, now - kMaxLag);
      while (!idle.empty() && (rate <= 0 || due <= now)) {
        Slot& slot = *idle.back();
        idle.pop_back();
        slot.context.emplace();
        slot.start = Clock::now();
        slot.reader =
            slot.stub->PrepareUnaryCall(&*slot.context, load.method, load.request(n), &cq);
        slot.reader->StartCall();
        slot.reader->Finish(&slot.response, &slot.status, &slot);
        n += stride;
        ++outstanding;
        due += interval;
      }
    } else if (outstanding == 0) {
      break;
    }
    // Wake for a completion, the next paced call, or the end of the window.
    Clock::time_point wake = now < window.end ? window.end : now + std::chrono::seconds(30);
    if (now < window.end && rate > 0 && !idle.empty()) wake = std::min(wake, due);
    void* tag = nullptr;
    bool ok = false;
    grpc::CompletionQueue::NextStatus next = cq.AsyncNext(&tag, &ok, SystemDeadline(wake));
    if (next == grpc::CompletionQueue::SHUTDOWN) break;
    if (next == grpc::CompletionQueue::TIMEOUT) continue;
    Slot& slot = *static_cast<Slot*>(tag);
    Record(load, slot, Clock::now(), window, record);
    slot.response.Clear();
    idle.push_back(&slot);
    --outstanding;
  }
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
}

double Percentile(const std::vector<int64_t>& sorted_ns, double p) {
  if (sorted_ns.empty()) return 0;
  size_t i = std::min(sorted_ns.size() - 1, static_cast<size_t>(p * sorted_ns.size()));
  return sorted_ns[i] / 1e6;
}

LoadResult Merge(std::vector<ThreadRecord>& records, double seconds) {
  LoadResult result;
  std::vector<int64_t> all;
  for (ThreadRecord& r : records) {
    all.insert(all.end(), r.latencies_ns.begin(), r.latencies_ns.end());
    result.calls += r.calls;
    result.units += r.units;
    for (const auto& [key, count] : r.errors) result.errors[key] += count;
  }
  std::sort(all.begin(), all.end());
  result.calls_per_s = result.calls / seconds;
  result.units_per_s = result.units / seconds;
  result.p50_ms = Percentile(all, 0.50);
  result.p99_ms = Percentile(all, 0.99);
  result.p999_ms = Percentile(all, 0.999);
  return result;
}

}  // namespace

int64_t LoadResult::ErrorCount() const {
  int64_t total = 0;
  for (const auto& [key, count] : errors) total += count;
  return total;
}

LoadWindow RunLoads(const std::string& address, pid_t server, const std::vector<UnaryLoad>& loads,
                    double warmup_s, double duration_s) {
  auto after = [](Clock::time_point from, double seconds) {
    return from +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  };
  Window window;
  window.measure_from = after(Clock::now(), warmup_s);
  window.end = after(window.measure_from, duration_s);
  std::vector<std::vector<ThreadRecord>> records(loads.size());
  std::vector<std::thread> threads;
  for (size_t l = 0; l < loads.size(); ++l) {
    const UnaryLoad& load = loads[l];
    const int num_threads = std::clamp(load.threads, 1, load.channels);
    records[l].resize(num_threads);
    for (int t = 0; t < num_threads; ++t) {
      const int channels = load.channels / num_threads + (t < load.channels % num_threads);
      records[l][t].latencies_ns.reserve(500000);
      threads.emplace_back(Drive, address, std::cref(load), channels,
                           load.calls_per_second / num_threads, t, num_threads, window,
                           &records[l][t]);
    }
  }
  std::this_thread::sleep_until(window.measure_from);
  const double server_cpu = ProcessCpuSeconds(server);
  const double driver_cpu = SelfCpuSeconds();
  std::this_thread::sleep_until(window.end);
  LoadWindow result;
  result.seconds = duration_s;
  result.server_cpu_s = ProcessCpuSeconds(server) - server_cpu;
  result.driver_cpu_s = SelfCpuSeconds() - driver_cpu;
  for (std::thread& t : threads) t.join();
  for (auto& per_load : records) result.loads.push_back(Merge(per_load, duration_s));
  return result;
}

std::optional<LoadShape> ParseLoadShape(const std::string& text) {
  std::vector<std::string> ck = absl::StrSplit(text, 'x');
  LoadShape shape;
  if (ck.size() != 2 || !absl::SimpleAtoi(ck[0], &shape.channels) ||
      !absl::SimpleAtoi(ck[1], &shape.in_flight) || shape.channels < 1 || shape.in_flight < 1) {
    return std::nullopt;
  }
  return shape;
}

grpc::Status CallOnce(const std::string& address, const std::string& method,
                      const grpc::ByteBuffer& request, grpc::ByteBuffer* response) {
  grpc::GenericStub stub(Connect(address));
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  grpc::Status status;
  auto reader = stub.PrepareUnaryCall(&context, method, request, &cq);
  reader->StartCall();
  reader->Finish(response, &status, nullptr);
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  return status;
}

UnaryLoad ManifestLoad(const LoadShape& shape, int threads) {
  v1::GetManifestRequest body;
  body.set_tier("bench");
  body.set_platform(v1::PLATFORM_LINUX);
  body.set_arch(v1::ARCH_X86_64);
  const grpc::Slice tail(body.SerializeAsString());
  UnaryLoad load;
  load.method = kGetManifestMethod;
  load.channels = shape.channels;
  load.in_flight = shape.in_flight;
  load.threads = threads;
  load.request = [tail](uint64_t n) {
    v1::GetManifestRequest head;
    head.set_device_id(absl::StrCat("bench-device-", n % 100000));
    return RequestBytes(head.SerializeAsString(), tail);
  };
  return load;
}

grpc::ByteBuffer RequestBytes(const std::string& head, const grpc::Slice& tail) {
  grpc::Slice slices[2] = {grpc::Slice(head), tail};
  return grpc::ByteBuffer(slices, 2);
}

}  // namespace modeldist::bench
