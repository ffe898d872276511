// File: rollout_status.h
//
// The body of RegistryService.GetRolloutStatus, and the report-count snapshot an admin's
// rollout change records (services/rollout_autopilot.h), run by RegistryServiceImpl.
#ifndef MODELDIST_SERVICES_ROLLOUT_STATUS_H_
#define MODELDIST_SERVICES_ROLLOUT_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "modeldist/v1/fleet.pb.h"
#include "modeldist/v1/registry.pb.h"
#include "services/rollout_autopilot.h"
#include "storage/catalog.h"

namespace modeldist::services {

// `autopilot` nullptr: every count reads 0.
absl::Status GetRolloutStatus(storage::Catalog& catalog, const RolloutAutopilot* autopilot,
                              const v1::RolloutRequest& request, v1::RolloutStatus* response);

// The counts tier/channel's open rollout's next step records; an empty note (the catalog then
// repeats the previous snapshot) without an autopilot or an open rollout.
storage::RolloutNote RolloutNoteNow(storage::Catalog& catalog, const RolloutAutopilot* autopilot,
                                    absl::string_view tier, absl::string_view channel);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_ROLLOUT_STATUS_H_
