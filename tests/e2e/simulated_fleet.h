// File: simulated_fleet.h
//
// A fleet of simulated devices for end-to-end tests of rollouts and their health gates: each
// device is a small state machine that speaks the real rpcs (ManifestService.GetManifest,
// FleetService.ReportStatus) and mirrors the agent's trial activation (client/agent/trial*):
// a version the manifest names that the device does not run is activated on trial and
// reported ACTIVATED; then the device's app loads it and the device reports LOAD_CONFIRMED, or
// LOAD_FAILED and ROLLED_BACK and goes back to the version it ran, and does not try that
// digest again while the manifest names it. Downloads and signatures are not simulated: the
// real agent's own tests cover them, and thousands of devices have to fit in one test.
//
// Every report a device sends is counted in a Tally, so a test can compare what the server
// made of the reports (GetFleetSummary, GetRolloutStatus) with what was sent.
#ifndef MODELDIST_TESTS_E2E_SIMULATED_FLEET_H_
#define MODELDIST_TESTS_E2E_SIMULATED_FLEET_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "modeldist/v1/fleet.grpc.pb.h"
#include "modeldist/v1/manifest.grpc.pb.h"

namespace modeldist::e2e {

struct SimDevice {
  std::string id;
  v1::Platform platform = v1::PLATFORM_MACOS;
  v1::Arch arch = v1::ARCH_ARM64;
  // The app on this device fails to load this version (empty: it loads every version).
  std::string fails_to_load;

  // The version it runs (empty: none yet) and its digest.
  std::string version;
  std::string digest;
  // A digest whose trial failed; the device does not activate it again while the manifest
  // names it.
  std::string refused_digest;
  // How GetFleetSummary counts this device: the version of its newest ACTIVATED,
  // LOAD_CONFIRMED or ROLLED_BACK report, and whether that report was ROLLED_BACK.
  std::string counted_version;
  bool counted_rolled_back = false;
};

// What the simulated devices sent.
struct Tally {
  // Reports per (version, event).
  std::map<std::pair<std::string, v1::StatusEvent>, int64_t> events;
  int64_t manifests = 0;     // GetManifest calls
  int64_t report_calls = 0;  // ReportStatus calls

  int64_t Count(const std::string& version, v1::StatusEvent event) const;
  void Add(const Tally& other);
};

// Devices per (version, arch, rolled_back), as FieldVersion counts them.
using DeviceCounts = std::map<std::tuple<std::string, v1::Arch, bool>, int64_t>;
DeviceCounts CountDevices(const std::vector<SimDevice>& devices);

// The rpcs one simulated device uses, on a shared channel.
class FleetRpcs {
 public:
  FleetRpcs(std::shared_ptr<grpc::Channel> channel, std::string tier);

  // One sync of `device` as described at the top, reports included. Returns the first
  // failed rpc's status (the device is then left as it was before the failed step).
  grpc::Status Sync(SimDevice* device, Tally* tally) const;

 private:
  grpc::Status Report(const SimDevice& device, const std::vector<v1::StatusReport>& reports,
                      Tally* tally) const;

  std::string tier_;
  std::unique_ptr<v1::ManifestService::Stub> manifests_;
  std::unique_ptr<v1::FleetService::Stub> fleet_;
};

// Syncs devices[begin, end) once each from `threads` threads; adds what they sent to
// `tally`. Returns the first error (after every thread finished).
grpc::Status SyncDevices(const FleetRpcs& rpcs, std::vector<SimDevice>* devices, size_t begin,
                         size_t end, int threads, Tally* tally);

}  // namespace modeldist::e2e

#endif  // MODELDIST_TESTS_E2E_SIMULATED_FLEET_H_
