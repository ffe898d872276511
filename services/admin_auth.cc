#include "services/admin_auth.h"

#include <openssl/crypto.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::services {

absl::Status AdminAuth::Check(const grpc::ServerContext& context) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return MakeError(absl::StatusCode::kUnauthenticated, "MISSING_TOKEN",
                     "admin rpcs need `authorization: Bearer <token>` metadata");
  }
  absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(value, kBearer)) {
    return MakeError(absl::StatusCode::kUnauthenticated, "MALFORMED_TOKEN",
                     "authorization metadata must be `Bearer <token>`");
  }
  absl::string_view given = value.substr(kBearer.size());
  if (!SecretEquals(given, token_)) {
    return MakeError(absl::StatusCode::kUnauthenticated, "WRONG_TOKEN",
                     "the admin token is not valid");
  }
  return absl::OkStatus();
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
