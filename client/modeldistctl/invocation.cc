#include "client/modeldistctl/invocation.h"

#include <string>
#include <utility>

#include "common/status.h"

namespace modeldist::ctl {

Invocation::Invocation(GlobalOptions global, const Console& console)
    : global_(std::move(global)), console_(console) {}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Invocation::Channel() {
  if (!channel_) {
    MD_ASSIGN_OR_RETURN(channel_, CreateRegistryChannel(global_.server, global_.tls_ca));
  }
  return channel_;
}

absl::StatusOr<RegistryClient*> Invocation::Client() {
  if (!client_) {
    MD_ASSIGN_OR_RETURN(std::string token, LoadAdminToken(global_.token_file, console_.getenv));
    MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, Channel());
    client_ = std::make_unique<RegistryClient>(std::move(channel), std::move(token));
  }
  return client_.get();
}

}  // namespace modeldist::ctl
