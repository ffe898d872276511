// File: credential_admin.h
//
// The bodies of RegistryService's credential rpcs (CreateCredential, ListCredentials,
// RevokeCredential), run by RegistryServiceImpl once the caller is authorized. The token made
// here is returned once and handed to the catalog only as its SHA-256.
#ifndef MODELDIST_SERVICES_CREDENTIAL_ADMIN_H_
#define MODELDIST_SERVICES_CREDENTIAL_ADMIN_H_

#include "absl/status/status.h"
#include "modeldist/v1/registry.pb.h"
#include "services/credentials.h"
#include "storage/catalog.h"

namespace modeldist::services {

// `caller` is the creator recorded (created_by and the audit actor).
absl::Status CreateCredential(storage::Catalog& catalog, const Caller& caller,
                              const v1::CreateCredentialRequest& request,
                              v1::CreateCredentialResponse* response);

absl::Status ListCredentials(storage::Catalog& catalog, const v1::ListCredentialsRequest& request,
                             v1::ListCredentialsResponse* response);

absl::Status RevokeCredential(storage::Catalog& catalog, const Caller& caller,
                              const v1::RevokeCredentialRequest& request, v1::Credential* response);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_CREDENTIAL_ADMIN_H_
