#include "tests/e2e/simulated_fleet.h"

#include <chrono>
#include <thread>

namespace modeldist::e2e {
namespace {

constexpr char kAgentVersion[] = "fleet-sim/1";
constexpr char kAppVersion[] = "1.0.0";
// What the simulated app says when it cannot load a model, and why its agent rolled back.
constexpr char kLoadFailureReason[] = "UNSUPPORTED_CPU_FEATURE";
constexpr char kRollbackReason[] = "LOAD_FAILED";

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  return context;
}

v1::StatusReport MakeReport(const std::string& tier, const SimDevice& device,
                            const v1::Manifest& manifest, v1::StatusEvent event,
                            const std::string& reason) {
  v1::StatusReport report;
  report.set_tier(tier);
  report.set_version(manifest.version());
  report.set_digest(manifest.artifact().digest());
  report.set_event(event);
  report.set_reason(reason);
  report.set_platform(device.platform);
  report.set_arch(device.arch);
  return report;
}

}  // namespace

int64_t Tally::Count(const std::string& version, v1::StatusEvent event) const {
  auto it = events.find({version, event});
  return it == events.end() ? 0 : it->second;
}

void Tally::Add(const Tally& other) {
  for (const auto& [key, count] : other.events) events[key] += count;
  manifests += other.manifests;
  report_calls += other.report_calls;
}

DeviceCounts CountDevices(const std::vector<SimDevice>& devices) {
  DeviceCounts counts;
  for (const SimDevice& d : devices) {
    if (d.counted_version.empty()) continue;
    ++counts[{d.counted_version, d.arch, d.counted_rolled_back}];
  }
  return counts;
}

FleetRpcs::FleetRpcs(std::shared_ptr<grpc::Channel> channel, std::string tier)
    : tier_(std::move(tier)),
      manifests_(v1::ManifestService::NewStub(channel)),
      fleet_(v1::FleetService::NewStub(channel)) {}

grpc::Status FleetRpcs::Sync(SimDevice* device, Tally* tally) const {
  v1::GetManifestRequest request;
  request.set_tier(tier_);
  request.set_platform(device->platform);
  request.set_arch(device->arch);
  request.set_device_id(device->id);
  request.set_app_version(kAppVersion);
  v1::SignedManifest signed_manifest;
  grpc::Status status = manifests_->GetManifest(Context().get(), request, &signed_manifest);
  ++tally->manifests;
  if (!status.ok()) return status;
  v1::Manifest manifest;
  if (!manifest.ParseFromString(signed_manifest.manifest())) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "the manifest does not parse");
  }
  const std::string& digest = manifest.artifact().digest();
  if (manifest.version() == device->version && digest == device->digest) return grpc::Status();
  // Its trial of this digest failed: the agent waits for the manifest to name another one.
  if (digest == device->refused_digest) return grpc::Status();
  device->refused_digest.clear();

  // Activated on trial; then the app loads it, or fails and the agent rolls back.
  const bool loads = manifest.version() != device->fails_to_load;
  std::vector<v1::StatusReport> reports = {
      MakeReport(tier_, *device, manifest, v1::STATUS_EVENT_ACTIVATED, "")};
  if (loads) {
    reports.push_back(MakeReport(tier_, *device, manifest, v1::STATUS_EVENT_LOAD_CONFIRMED, ""));
  } else {
    reports.push_back(
        MakeReport(tier_, *device, manifest, v1::STATUS_EVENT_LOAD_FAILED, kLoadFailureReason));
    reports.push_back(
        MakeReport(tier_, *device, manifest, v1::STATUS_EVENT_ROLLED_BACK, kRollbackReason));
  }
  status = Report(*device, reports, tally);
  if (!status.ok()) return status;
  device->counted_version = manifest.version();
  device->counted_rolled_back = !loads;
  if (loads) {
    device->version = manifest.version();
    device->digest = digest;
  } else {
    device->refused_digest = digest;
  }
  return grpc::Status();
}

grpc::Status FleetRpcs::Report(const SimDevice& device,
                               const std::vector<v1::StatusReport>& reports, Tally* tally) const {
  v1::ReportStatusRequest request;
  request.set_device_id(device.id);
  request.set_agent_version(kAgentVersion);
  request.set_app_version(kAppVersion);
  for (const v1::StatusReport& r : reports) *request.add_reports() = r;
  v1::ReportStatusResponse response;
  grpc::Status status = fleet_->ReportStatus(Context().get(), request, &response);
  ++tally->report_calls;
  if (!status.ok()) return status;
  if (response.accepted() != request.reports_size()) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "ReportStatus did not accept every report");
  }
  for (const v1::StatusReport& r : reports) ++tally->events[{r.version(), r.event()}];
  return grpc::Status();
}

grpc::Status SyncDevices(const FleetRpcs& rpcs, std::vector<SimDevice>* devices, size_t begin,
                         size_t end, int threads, Tally* tally) {
  std::vector<Tally> tallies(threads);
  std::vector<grpc::Status> errors(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = begin + t; i < end && errors[t].ok(); i += threads) {
        errors[t] = rpcs.Sync(&(*devices)[i], &tallies[t]);
      }
    });
  }
  for (std::thread& w : workers) w.join();
  for (const Tally& t : tallies) tally->Add(t);
  for (const grpc::Status& e : errors) {
    if (!e.ok()) return e;
  }
  return grpc::Status();
}

}  // namespace modeldist::e2e
