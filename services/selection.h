// File: selection.h
//
// The pure rules of device-aware selection, kept apart from caching and signing so each rule
// has a table test:
//   * which artifacts of a version can serve a device's platform/arch, best first;
//   * whether a device meets an artifact's constraints (and if not, what it lacks);
//   * which rollout cohort a device is in.
#ifndef MODELDIST_SERVICES_SELECTION_H_
#define MODELDIST_SERVICES_SELECTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "modeldist/v1/manifest.pb.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::services {

// The artifacts of `version` a (platform, arch) device can run, best first: an exact arch
// before ARCH_ANY; then by format preference for the platform (Apple arm64: CoreML first, as
// the Neural Engine runs it; everything else: GGUF first); then declaration order.
std::vector<const v1::Artifact*> RankArtifacts(const v1::Version& version, v1::Platform platform,
                                               v1::Arch arch);

// Compares dotted numeric versions part by part ("14.10" > "14.9"; missing parts are 0).
// Non-numeric parts compare as 0. Returns <0, 0 or >0.
int CompareDottedVersions(absl::string_view a, absl::string_view b);

// Empty when `device` meets `constraints`; otherwise what it lacks, for people, e.g.
// "needs OS >= 14.0 (device has 13.6); needs ACCELERATOR_ANE". A device that reports no OS
// version or RAM does not meet a constraint on it.
std::string UnmetConstraints(const v1::ArtifactConstraints& constraints,
                             const v1::DeviceInfo& device);

// Rollout cohorts: a device's bucket in 0..9999 is the first 8 bytes of
// SHA-256(rollout_id ":" device_id) modulo kMaxBasisPoints (10000). The device is in the
// cohort when its bucket < basis_points, so growing basis_points only ever adds devices.
// Deterministic across servers and restarts. A device without an id is never in a partial
// cohort.
uint32_t CohortBucket(absl::string_view rollout_id, absl::string_view device_id);
bool InCohort(absl::string_view rollout_id, absl::string_view device_id, int32_t basis_points);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_SELECTION_H_
