// File: fleet_admin.h
//
// The body of RegistryService.GetFleetSummary (SCOPE_READ), run by RegistryServiceImpl once
// the caller is authorized: the request checked, then FleetStats::Summary.
#ifndef MODELDIST_SERVICES_FLEET_ADMIN_H_
#define MODELDIST_SERVICES_FLEET_ADMIN_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "modeldist/v1/fleet.pb.h"
#include "services/fleet_stats.h"

namespace modeldist::services {

// The window when the request gives none.
inline constexpr absl::Duration kDefaultFleetWindow = absl::Hours(24);

// `fleet` nullptr (a server without fleet reports): an empty summary.
absl::Status GetFleetSummary(const FleetStats* fleet, const v1::GetFleetSummaryRequest& request,
                             absl::Time now, v1::FleetSummary* response);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_FLEET_ADMIN_H_
