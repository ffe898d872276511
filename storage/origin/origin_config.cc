#include "storage/origin/origin_config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace modeldist::origin {
namespace {

constexpr char kReason[] = "INVALID_ORIGINS_CONFIG";
constexpr int64_t kMinPartBytes = 5 << 20;           // S3's minimum for all but the last part
constexpr int64_t kMaxPartBytes = int64_t{5} << 30;  // and its maximum
constexpr size_t kMaxPrefixBytes = 256;

absl::Status Bad(const std::string& field, const std::string& message) {
  return InvalidArgument(field, kReason, absl::StrCat(field, ": ", message));
}

bool IsValidName(const std::string& name) {
  if (name.empty() || name.size() > 63 || !absl::ascii_islower(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-') return false;
  }
  return true;
}

absl::Status CheckUrl(const std::string& field, const std::string& url) {
  if (!absl::StartsWith(url, "https://") && !absl::StartsWith(url, "http://")) {
    return Bad(field, absl::StrCat("\"", url, "\" is not an http:// or https:// URL"));
  }
  if (absl::StrContains(url, "?") || absl::StrContains(url, "#") || absl::EndsWith(url, "/")) {
    return Bad(field, "give the base URL without a query, fragment or trailing slash");
  }
  return absl::OkStatus();
}

absl::Status CheckSecret(const std::string& field, const v1::Secret& secret) {
  switch (secret.from_case()) {
    case v1::Secret::kFile:
      if (secret.file().empty()) return Bad(field + ".file", "is empty");
      return absl::OkStatus();
    case v1::Secret::kEnv:
      if (secret.env().empty()) return Bad(field + ".env", "is empty");
      return absl::OkStatus();
    case v1::Secret::FROM_NOT_SET:
      break;
  }
  return Bad(field, "is required: set `file` (a file readable by the owner only) or `env`");
}

absl::Status CheckPrefix(const std::string& field, const std::string& prefix) {
  if (prefix.size() > kMaxPrefixBytes) return Bad(field, "is longer than 256 characters");
  if (absl::StartsWith(prefix, "/") || absl::StrContains(prefix, "..") ||
      absl::StrContains(prefix, "//")) {
    return Bad(field, "must not start with '/' or contain \"..\" or \"//\"");
  }
  for (char c : prefix) {
    if (!absl::ascii_isalnum(c) && c != '/' && c != '.' && c != '_' && c != '-') {
      return Bad(field, "may hold only [A-Za-z0-9/._-]");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckS3(const std::string& at, const v1::S3Origin& s3) {
  MD_RETURN_IF_ERROR(CheckUrl(at + ".endpoint", s3.endpoint()));
  if (s3.region().empty()) {
    return Bad(at + ".region",
               "is required (\"auto\" for Cloudflare R2, e.g. \"us-east-1\" for AWS)");
  }
  if (s3.bucket().empty()) return Bad(at + ".bucket", "is required");
  MD_RETURN_IF_ERROR(CheckSecret(at + ".access_key_id", s3.access_key_id()));
  MD_RETURN_IF_ERROR(CheckSecret(at + ".secret_access_key", s3.secret_access_key()));
  if (s3.part_size_bytes() != 0 &&
      (s3.part_size_bytes() < kMinPartBytes || s3.part_size_bytes() > kMaxPartBytes)) {
    return Bad(at + ".part_size_bytes",
               absl::StrCat(s3.part_size_bytes(), " is outside S3's part sizes [", kMinPartBytes,
                            ", ", kMaxPartBytes, "]; 0 means 64 MiB"));
  }
  return absl::OkStatus();
}

// A modeldist origin's objects are the upstream's blobs by digest, read through this server:
// nothing of a bucket's settings applies.
absl::Status CheckModeldist(const std::string& at, const v1::Origin& origin) {
  const std::string& target = origin.modeldist().target();
  if (target.empty()) return Bad(at + ".modeldist.target", "is required (host:port)");
  if (absl::StrContains(target, "://")) {
    return Bad(at + ".modeldist.target",
               absl::StrCat("\"", target, "\" is a URL; give the gRPC address as host:port"));
  }
  if (!origin.key_prefix().empty()) {
    return Bad(at + ".key_prefix", "does not apply to a modeldist origin (blobs go by digest)");
  }
  if (origin.has_cdn()) {
    return Bad(at + ".cdn", "does not apply to a modeldist origin (devices read through here)");
  }
  if (origin.modeldist().forward_manifests() && origin.modeldist().trust_root_file().empty()) {
    return Bad(at + ".modeldist.trust_root_file",
               "is required with forward_manifests: the upstream's SignedTrustRoot, as its "
               "devices pin it (`modeldistctl keys root --out FILE`)");
  }
  return absl::OkStatus();
}

absl::Status CheckOrigin(const std::string& at, const v1::Origin& origin) {
  if (!IsValidName(origin.name())) {
    return Bad(at + ".name",
               absl::StrCat("\"", origin.name(),
                            "\" is not 1-63 characters from [a-z0-9-] starting with a letter"));
  }
  switch (origin.kind_case()) {
    case v1::Origin::kS3:
      MD_RETURN_IF_ERROR(CheckS3(at + ".s3", origin.s3()));
      break;
    case v1::Origin::kSupabase:
      MD_RETURN_IF_ERROR(CheckUrl(at + ".supabase.url", origin.supabase().url()));
      if (origin.supabase().bucket().empty()) return Bad(at + ".supabase.bucket", "is required");
      MD_RETURN_IF_ERROR(
          CheckSecret(at + ".supabase.service_role_key", origin.supabase().service_role_key()));
      break;
    case v1::Origin::kHttp:
      MD_RETURN_IF_ERROR(CheckUrl(at + ".http.base_url", origin.http().base_url()));
      break;
    case v1::Origin::kModeldist:
      MD_RETURN_IF_ERROR(CheckModeldist(at, origin));
      break;
    case v1::Origin::KIND_NOT_SET:
      return Bad(at, "set one of s3, supabase, http or modeldist");
  }
  MD_RETURN_IF_ERROR(CheckPrefix(at + ".key_prefix", origin.key_prefix()));
  if (origin.replicate() && !IsWritable(origin)) {
    return Bad(at + ".replicate",
               absl::StrCat("a", origin.has_http() ? "n http" : " modeldist",
                            " origin is read-only; replicate to s3 or supabase"));
  }
  if (origin.has_cdn()) {
    MD_RETURN_IF_ERROR(CheckUrl(at + ".cdn.base_url", origin.cdn().base_url()));
    if (origin.cdn().has_cloudfront()) {
      const v1::CloudFrontSigning& cf = origin.cdn().cloudfront();
      if (cf.key_pair_id().empty()) return Bad(at + ".cdn.cloudfront.key_pair_id", "is required");
      MD_RETURN_IF_ERROR(CheckSecret(at + ".cdn.cloudfront.private_key", cf.private_key()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateOriginsConfig(const v1::OriginsConfig& config) {
  std::set<std::string> names;
  std::string forwarder;  // the origin that forwards manifests, when one does
  for (int i = 0; i < config.origins_size(); ++i) {
    const std::string at = absl::StrCat("origins[", i, "]");
    MD_RETURN_IF_ERROR(CheckOrigin(at, config.origins(i)));
    if (!names.insert(config.origins(i).name()).second) {
      return Bad(at + ".name", absl::StrCat("\"", config.origins(i).name(), "\" is used twice"));
    }
    if (config.origins(i).modeldist().forward_manifests()) {
      if (!forwarder.empty()) {
        return Bad(
            at + ".modeldist.forward_manifests",
            absl::StrCat("only one origin may forward manifests; ", forwarder, " does already"));
      }
      forwarder = config.origins(i).name();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::OriginsConfig> LoadOriginsConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return WithContext(text.status(), absl::StrCat("origins file ", path));
  v1::OriginsConfig config;
  if (absl::EndsWith(path, ".json")) {
    // protobuf 3.21 (Debian 12) answers with its own Status type, not absl's.
    const auto parsed = google::protobuf::util::JsonStringToMessage(*text, &config);
    if (!parsed.ok()) {
      return InvalidArgument(
          path, kReason,
          absl::StrCat(path, " is not a valid OriginsConfig in JSON: ", parsed.ToString()));
    }
  } else if (!google::protobuf::TextFormat::ParseFromString(*text, &config)) {
    // The parser logs the line and column of the mistake on stderr.
    return InvalidArgument(path, kReason,
                           absl::StrCat(path,
                                        " is not a valid OriginsConfig in protobuf text format "
                                        "(the line and column are logged above; JSON files must "
                                        "end in .json)"));
  }
  absl::Status valid = ValidateOriginsConfig(config);
  if (!valid.ok()) return WithContext(valid, path);
  return config;
}

absl::StatusOr<std::string> ReadSecret(const v1::Secret& secret, const std::string& field) {
  auto unavailable = [&](const std::string& why) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "SECRET_UNAVAILABLE",
                     absl::StrCat(field, ": ", why), {{"field", field}});
  };
  std::string value;
  if (secret.from_case() == v1::Secret::kEnv) {
    const char* env = std::getenv(secret.env().c_str());
    if (env == nullptr || *env == '\0') {
      return unavailable(absl::StrCat("environment variable ", secret.env(), " is unset or empty"));
    }
    value = env;
  } else if (secret.from_case() == v1::Secret::kFile) {
    struct stat st;
    if (::stat(secret.file().c_str(), &st) != 0) {
      return unavailable(absl::StrCat("cannot read ", secret.file(), ": ", std::strerror(errno)));
    }
    if ((st.st_mode & 077) != 0) {
      return unavailable(
          absl::StrCat(secret.file(), " is readable by group or others; run chmod 600 on it"));
    }
    absl::StatusOr<std::string> read = ReadFileToString(secret.file());
    if (!read.ok()) return unavailable(std::string(read.status().message()));
    value = std::move(*read);
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
    if (value.empty()) return unavailable(absl::StrCat(secret.file(), " is empty"));
  } else {
    return unavailable("no file or env given");
  }
  return value;
}

absl::Status ReadOnlyOriginError(const std::string& name, const std::string& kind,
                                 const std::string& what, const std::string& instead) {
  return MakeError(
      absl::StatusCode::kFailedPrecondition, "ORIGIN_READ_ONLY",
      absl::StrCat(name, " is ", kind, ", which is read-only: cannot ", what, "; ", instead));
}

bool IsWritable(const v1::Origin& origin) { return origin.has_s3() || origin.has_supabase(); }

std::string BlobKey(const v1::Origin& origin, const std::string& digest_hex) {
  return absl::StrCat(origin.key_prefix(), "sha256/", digest_hex);
}

std::string OriginKind(const v1::Origin& origin) {
  switch (origin.kind_case()) {
    case v1::Origin::kS3:
      return "s3";
    case v1::Origin::kSupabase:
      return "supabase";
    case v1::Origin::kHttp:
      return "http";
    case v1::Origin::kModeldist:
      return "modeldist";
    case v1::Origin::KIND_NOT_SET:
      break;
  }
  return "";
}

std::string OriginLocation(const v1::Origin& origin) {
  switch (origin.kind_case()) {
    case v1::Origin::kS3:
      return absl::StrCat(origin.s3().endpoint(), "/", origin.s3().bucket());
    case v1::Origin::kSupabase:
      return absl::StrCat(origin.supabase().url(), "/storage/v1/object/",
                          origin.supabase().bucket());
    case v1::Origin::kHttp:
      return origin.http().base_url();
    case v1::Origin::kModeldist:
      return origin.modeldist().target();
    case v1::Origin::KIND_NOT_SET:
      break;
  }
  return "";
}

absl::Status ValidateOriginName(const std::string& field, const std::string& name) {
  if (IsValidName(name)) return absl::OkStatus();
  return InvalidArgument(field, "INVALID_ORIGIN_NAME",
                         absl::StrCat(field, " \"", name,
                                      "\" is not an origin name: 1-63 characters from [a-z0-9-] "
                                      "starting with a letter"));
}

}  // namespace modeldist::origin
