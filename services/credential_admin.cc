#include "services/credential_admin.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "services/request_validation.h"

namespace modeldist::services {
namespace {

// A credential name: a model id's syntax, and not the bootstrap token's name.
absl::Status CheckName(absl::string_view name) {
  return RequestCheck()
      .Id("name", name)
      .That(name != kBootstrapName, "name", "INVALID_ID",
            absl::StrCat("name \"", kBootstrapName,
                         "\" is the bootstrap admin token's; pick another"))
      .status();
}

}  // namespace

absl::Status CreateCredential(storage::Catalog& catalog, const Caller& caller,
                              const v1::CreateCredentialRequest& request,
                              v1::CreateCredentialResponse* response) {
  MD_RETURN_IF_ERROR(CheckName(request.name()));
  if (request.scopes().empty()) {
    return InvalidArgument("scopes", "INVALID_SCOPE",
                           "scopes is empty; give at least one of read, publish, rollout, keys, "
                           "admin");
  }
  std::vector<v1::Scope> scopes;
  for (int i = 0; i < request.scopes_size(); ++i) {
    const int scope = request.scopes(i);
    if (scope == v1::SCOPE_UNSPECIFIED || !v1::Scope_IsValid(scope)) {
      const std::string field = absl::StrCat("scopes[", i, "]");
      return InvalidArgument(
          field, "INVALID_SCOPE",
          absl::StrCat(field, " is ", scope, ", not one of read, publish, rollout, keys, admin"));
    }
    scopes.push_back(static_cast<v1::Scope>(scope));
  }
  std::string token = NewCredentialToken();
  MD_ASSIGN_OR_RETURN(
      *response->mutable_credential(),
      catalog.CreateCredential(request.name(), scopes, TokenSha256Hex(token), caller.name));
  response->set_token(std::move(token));
  return absl::OkStatus();
}

absl::Status ListCredentials(storage::Catalog& catalog, const v1::ListCredentialsRequest& request,
                             v1::ListCredentialsResponse* response) {
  MD_RETURN_IF_ERROR(RequestCheck().PageSize(request.page_size()).status());
  MD_ASSIGN_OR_RETURN(auto page,
                      catalog.ListCredentials(request.page_size(), request.page_token()));
  for (v1::Credential& c : page.items) *response->add_credentials() = std::move(c);
  response->set_next_page_token(page.next_page_token);
  return absl::OkStatus();
}

absl::Status RevokeCredential(storage::Catalog& catalog, const Caller& caller,
                              const v1::RevokeCredentialRequest& request,
                              v1::Credential* response) {
  MD_RETURN_IF_ERROR(RequestCheck().Id("name", request.name()).status());
  MD_ASSIGN_OR_RETURN(*response, catalog.RevokeCredential(request.name(), caller.name));
  return absl::OkStatus();
}

}  // namespace modeldist::services
