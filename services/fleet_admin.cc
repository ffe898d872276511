#include "services/fleet_admin.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "services/registry_service.h"
#include "services/request_validation.h"

namespace modeldist::services {

absl::Status GetFleetSummary(const FleetStats* fleet, const v1::GetFleetSummaryRequest& request,
                             absl::Time now, v1::FleetSummary* response) {
  const absl::Duration window =
      absl::Seconds(request.window().seconds()) + absl::Nanoseconds(request.window().nanos());
  MD_RETURN_IF_ERROR(RequestCheck()
                         .OptionalId("tier", request.tier())
                         .That(request.channel().empty() || !request.tier().empty(), "channel",
                               "CHANNEL_WITHOUT_TIER", "channel filters only together with tier")
                         .OptionalId("channel", request.channel())
                         .That(window >= absl::ZeroDuration() && window <= kFleetRetention,
                               "window", "INVALID_WINDOW",
                               absl::StrCat("window must be from 0 (24 hours) to the retention, ",
                                            absl::FormatDuration(kFleetRetention)))
                         .status());
  const absl::Time since = now - (window == absl::ZeroDuration() ? kDefaultFleetWindow : window);
  if (fleet == nullptr) {
    *response->mutable_since() =
        google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(since));
    return absl::OkStatus();
  }
  *response = fleet->Summary(request.tier(), request.channel(), since);
  return absl::OkStatus();
}

grpc::Status RegistryServiceImpl::GetFleetSummary(grpc::ServerContext* context,
                                                  const v1::GetFleetSummaryRequest* request,
                                                  v1::FleetSummary* response) {
  absl::StatusOr<Caller> caller = auth_->Authorize(*context, __func__);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  return ToGrpcStatus(services::GetFleetSummary(fleet_, *request, absl::Now(), response));
}

}  // namespace modeldist::services
