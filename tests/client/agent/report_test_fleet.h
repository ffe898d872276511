// File: report_test_fleet.h
//
// A FleetService at the seam for the report tests: it keeps every batch it accepts, refuses
// more than 100 reports as the server does (INVALID_REPORT_COUNT), and lets a test script
// each call's answer (an error, a RetryInfo, a call that hangs until its deadline). Served on
// 127.0.0.1 port 0, optionally next to a ManifestService that forwards to a real server, so
// that a sync and its reports go to one address.
#ifndef MODELDIST_TESTS_CLIENT_AGENT_REPORT_TEST_FLEET_H_
#define MODELDIST_TESTS_CLIENT_AGENT_REPORT_TEST_FLEET_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "modeldist/v1/fleet.grpc.pb.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "tests/client/agent/hostile_manifest_proxy.h"  // ManifestForwarder

namespace modeldist::testing {

class TestFleet final : public v1::FleetService::Service {
 public:
  // The answer to call number `call` (0-based); OK accepts the batch.
  using Answer = std::function<absl::Status(grpc::ServerContext* context, int call,
                                            const v1::ReportStatusRequest& request)>;

  grpc::Status ReportStatus(grpc::ServerContext* context, const v1::ReportStatusRequest* request,
                            v1::ReportStatusResponse* response) override {
    int call;
    Answer answer;
    {
      absl::MutexLock lock(&mu_);
      call = calls_++;
      answer = answer_;
    }
    if (request->reports_size() == 0 || request->reports_size() > 100) {
      return ToGrpcStatus(InvalidArgument("reports", "INVALID_REPORT_COUNT", "1-100 reports"));
    }
    absl::Status status = answer ? answer(context, call, *request) : absl::OkStatus();
    if (!status.ok()) return ToGrpcStatus(status);
    absl::MutexLock lock(&mu_);
    batches_.push_back(*request);
    response->set_accepted(request->reports_size());
    return grpc::Status::OK;
  }

  void set_answer(Answer answer) {
    absl::MutexLock lock(&mu_);
    answer_ = std::move(answer);
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::vector<v1::ReportStatusRequest> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  // Every accepted report, in the order received.
  std::vector<v1::StatusReport> reports() {
    std::vector<v1::StatusReport> out;
    for (const auto& batch : batches()) {
      out.insert(out.end(), batch.reports().begin(), batch.reports().end());
    }
    return out;
  }

 private:
  absl::Mutex mu_;
  Answer answer_;
  int calls_ = 0;
  std::vector<v1::ReportStatusRequest> batches_;
};

// An answer that holds the call until its deadline passes (a server that never answers).
inline absl::Status Hang(grpc::ServerContext* context) {
  while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(10));
  return absl::DeadlineExceededError("hung");
}

// TestFleet (and, with `manifests`, a ManifestForwarder to it) on 127.0.0.1, port 0.
class TestFleetServer {
 public:
  explicit TestFleetServer(std::shared_ptr<grpc::Channel> manifests = nullptr) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&fleet_);
    if (manifests != nullptr) {
      forwarder_ = std::make_unique<ManifestForwarder>(std::move(manifests));
      builder.RegisterService(forwarder_.get());
    }
    server_ = builder.BuildAndStart();
  }
  ~TestFleetServer() { server_->Shutdown(absl::ToChronoTime(absl::Now())); }

  TestFleet& fleet() { return fleet_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  TestFleet fleet_;
  std::unique_ptr<ManifestForwarder> forwarder_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_CLIENT_AGENT_REPORT_TEST_FLEET_H_
