#include "services/admin_auth.h"

#include <openssl/crypto.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::services {

AdminAuth::AdminAuth(std::string token, Options options)
    : token_(std::move(token)), options_(std::move(options)), limiter_(options_.limiter) {}

absl::StatusOr<Caller> AdminAuth::Authorize(const grpc::ServerContext& context,
                                            absl::string_view method) const {
  MD_ASSIGN_OR_RETURN(const v1::Scope needed, RequiredScope(method));
  MD_ASSIGN_OR_RETURN(Caller caller, Authenticate(context));
  if (!caller.Has(needed)) {
    std::vector<std::string> has;
    for (v1::Scope s : caller.scopes) has.push_back(ScopeWord(s));
    return MakeError(
        absl::StatusCode::kPermissionDenied, "SCOPE_MISSING",
        absl::StrCat(method, " needs scope ", ScopeWord(needed), "; credential \"", caller.name,
                     "\" has ", has.empty() ? "none" : absl::StrJoin(has, ", "),
                     " (create one with the scope: modeldistctl creds create NAME --scope ",
                     ScopeWord(needed), ")"),
        {{"scope", v1::Scope_Name(needed)}});
  }
  return caller;
}

absl::StatusOr<Caller> AdminAuth::Authenticate(const grpc::ServerContext& context) const {
  const std::string peer = PeerAddress(context.peer());
  if (const absl::Duration wait = limiter_.RefusedFor(peer); wait > absl::ZeroDuration()) {
    Count("AUTH_RATE_LIMITED");
    return WithRetryDelay(
        MakeError(absl::StatusCode::kResourceExhausted, "AUTH_RATE_LIMITED",
                  absl::StrCat("too many failed authentications from ", peer,
                               " lately; every call from there is refused for ",
                               absl::FormatDuration(absl::Ceil(wait, absl::Seconds(1))),
                               " more (check the token or certificate the client uses)")),
        wait);
  }
  absl::StatusOr<Caller> caller = Identify(context);
  if (!caller.ok() && absl::IsUnauthenticated(caller.status())) {
    limiter_.Failed(peer);
    Count(ErrorReason(caller.status()));
  }
  return caller;
}

absl::StatusOr<Caller> AdminAuth::Identify(const grpc::ServerContext& context) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    if (options_.client_certificates) return FromCertificate(context);
    return MakeError(absl::StatusCode::kUnauthenticated, "MISSING_TOKEN",
                     "admin rpcs need `authorization: Bearer <token>` metadata");
  }
  absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(value, kBearer)) {
    return MakeError(absl::StatusCode::kUnauthenticated, "MALFORMED_TOKEN",
                     "authorization metadata must be `Bearer <token>`");
  }
  return FromToken(value.substr(kBearer.size()));
}

absl::StatusOr<Caller> AdminAuth::FromToken(absl::string_view token) const {
  if (SecretEquals(token, token_)) {
    return Caller{std::string(kBootstrapName), {v1::SCOPE_ADMIN}};
  }
  if (options_.catalog != nullptr && absl::StartsWith(token, "mdc_")) {
    // Looked up by its hash: the catalog holds nothing a stolen copy could present, and the
    // lookup's timing depends on the hash, which tells nothing about a token's bytes.
    absl::StatusOr<v1::Credential> found =
        options_.catalog->FindCredentialByTokenHash(TokenSha256Hex(token));
    if (found.ok() && !found->has_revoke_time()) {
      return CallerOf(*found);
    }
    if (!found.ok() && !absl::IsNotFound(found.status())) return found.status();
  }
  return MakeError(absl::StatusCode::kUnauthenticated, "WRONG_TOKEN",
                   "the token is not valid: not the admin token, nor the token of a credential "
                   "that is not revoked");
}

absl::StatusOr<Caller> AdminAuth::FromCertificate(const grpc::ServerContext& context) const {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  std::vector<grpc::string_ref> names;
  if (auth != nullptr) names = auth->FindPropertyValues("x509_common_name");
  if (names.empty()) {
    return MakeError(absl::StatusCode::kUnauthenticated, "MISSING_TOKEN",
                     "admin rpcs need `authorization: Bearer <token>` metadata or a client "
                     "certificate issued by the server's --admin-client-ca");
  }
  const std::string name(names.front().data(), names.front().size());
  if (options_.catalog != nullptr && name != kBootstrapName) {
    absl::StatusOr<v1::Credential> found = options_.catalog->FindCredentialByName(name);
    if (found.ok() && !found->has_revoke_time()) {
      return CallerOf(*found);
    }
    if (!found.ok() && !absl::IsNotFound(found.status())) return found.status();
  }
  // The name came from a certificate the CA signed, so it may be shown.
  return MakeError(absl::StatusCode::kUnauthenticated, "UNKNOWN_CERTIFICATE",
                   absl::StrCat("the client certificate's common name \"", name,
                                "\" is no credential that works (create it, or it was revoked)"));
}

void AdminAuth::Count(absl::string_view reason) const {
  if (options_.failures != nullptr) options_.failures->With({reason})->Increment();
}

bool SecretEquals(absl::string_view given, absl::string_view secret) {
  return given.size() == secret.size() &&
         CRYPTO_memcmp(given.data(), secret.data(), secret.size()) == 0;
}

absl::StatusOr<std::string> LoadAdminToken(const std::string& token_file) {
  std::string token;
  std::string source;
  if (!token_file.empty()) {
    auto contents = ReadFileToString(token_file);
    if (!contents.ok()) {
      return MakeError(
          absl::StatusCode::kFailedPrecondition, "INVALID_ADMIN_TOKEN",
          absl::StrCat("cannot read --admin-token-file: ", contents.status().message()));
    }
    token = contents->substr(0, contents->find('\n'));
    source = absl::StrCat("--admin-token-file ", token_file);
  } else if (const char* env = std::getenv("MODELDIST_ADMIN_TOKEN"); env != nullptr) {
    token = env;
    source = "MODELDIST_ADMIN_TOKEN";
  } else {
    return MakeError(absl::StatusCode::kFailedPrecondition, "INVALID_ADMIN_TOKEN",
                     "no admin token: pass --admin-token-file FILE or set MODELDIST_ADMIN_TOKEN "
                     "(e.g. `openssl rand -hex 32 > admin.token`)");
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.size() < 16) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "INVALID_ADMIN_TOKEN",
        absl::StrCat("the admin token from ", source,
                     " is shorter than 16 characters; use e.g. `openssl rand -hex 32`"));
  }
  return token;
}

absl::StatusOr<std::string> LoadSecretFile(const std::string& path, absl::string_view flag) {
  absl::StatusOr<std::string> contents = ReadFileToString(path);
  if (!contents.ok()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "INVALID_SECRET_FILE",
                     absl::StrCat("cannot read ", flag, ": ", contents.status().message()));
  }
  std::string secret(absl::StripAsciiWhitespace(contents->substr(0, contents->find('\n'))));
  if (secret.size() < 16) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "INVALID_SECRET_FILE",
        absl::StrCat("the secret in ", flag, " ", path,
                     " is shorter than 16 characters; use e.g. `openssl rand -hex 32`"));
  }
  return secret;
}

}  // namespace modeldist::services
