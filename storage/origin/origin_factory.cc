#include "storage/origin/origin_factory.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/origin/cdn_origin.h"
#include "storage/origin/cloudfront.h"
#include "storage/origin/http_origin.h"
#include "storage/origin/modeldist_origin.h"
#include "storage/origin/origin_config.h"
#include "storage/origin/s3_origin.h"
#include "storage/origin/supabase_origin.h"

namespace modeldist::origin {
namespace {

absl::StatusOr<std::unique_ptr<Origin>> MakeHttp(const v1::Origin& config) {
  return std::make_unique<HttpOrigin>(HttpOriginOptions{.name = config.name(),
                                                        .base_url = config.http().base_url(),
                                                        .ca_file = config.http().ca_file()});
}

absl::StatusOr<std::unique_ptr<Origin>> MakeS3(const v1::Origin& config) {
  const v1::S3Origin& s3 = config.s3();
  S3OriginOptions options;
  options.name = config.name();
  options.endpoint = s3.endpoint();
  options.bucket = s3.bucket();
  if (!s3.region().empty()) options.region = s3.region();
  // Field names as in the file; the caller adds which origin ("origins[1] (r2-eu)").
  MD_ASSIGN_OR_RETURN(options.credentials.access_key_id,
                      ReadSecret(s3.access_key_id(), "s3.access_key_id"));
  MD_ASSIGN_OR_RETURN(options.credentials.secret_access_key,
                      ReadSecret(s3.secret_access_key(), "s3.secret_access_key"));
  options.checksum_sha256 = s3.checksum_sha256();
  if (s3.part_size_bytes() != 0) options.part_size = s3.part_size_bytes();
  options.public_read = s3.public_read();
  options.ca_file = s3.ca_file();
  MD_ASSIGN_OR_RETURN(std::unique_ptr<S3Origin> origin, S3Origin::Create(std::move(options)));
  return std::unique_ptr<Origin>(std::move(origin));
}

absl::StatusOr<std::unique_ptr<Origin>> MakeSupabase(const v1::Origin& config) {
  const v1::SupabaseOrigin& supabase = config.supabase();
  SupabaseOriginOptions options;
  options.name = config.name();
  options.url = supabase.url();
  options.bucket = supabase.bucket();
  MD_ASSIGN_OR_RETURN(options.service_role_key,
                      ReadSecret(supabase.service_role_key(), "supabase.service_role_key"));
  options.public_bucket = supabase.public_bucket();
  options.ca_file = supabase.ca_file();
  MD_ASSIGN_OR_RETURN(std::unique_ptr<SupabaseOrigin> origin,
                      SupabaseOrigin::Create(std::move(options)));
  return std::unique_ptr<Origin>(std::move(origin));
}

absl::StatusOr<std::unique_ptr<Origin>> MakeModeldist(const v1::Origin& config) {
  MD_ASSIGN_OR_RETURN(std::unique_ptr<ModeldistOrigin> origin,
                      ModeldistOrigin::Create({.name = config.name(),
                                               .target = config.modeldist().target(),
                                               .ca_file = config.modeldist().ca_file()}));
  return std::unique_ptr<Origin>(std::move(origin));
}

// The origin of the entry's kind, before any CDN in front of it.
absl::StatusOr<std::unique_ptr<Origin>> MakeBare(const v1::Origin& config) {
  switch (config.kind_case()) {
    case v1::Origin::kHttp:
      return MakeHttp(config);
    case v1::Origin::kS3:
      return MakeS3(config);
    case v1::Origin::kSupabase:
      return MakeSupabase(config);
    case v1::Origin::kModeldist:
      return MakeModeldist(config);
    case v1::Origin::KIND_NOT_SET:
      break;
  }
  return MakeError(absl::StatusCode::kUnimplemented, "ORIGIN_KIND_UNSUPPORTED",
                   absl::StrCat(OriginKind(config),
                                " origins are not supported by this version of modeldist-server "
                                "yet (docs/origins.md)"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Origin>> MakeOrigin(const v1::Origin& config) {
  MD_ASSIGN_OR_RETURN(std::unique_ptr<Origin> origin, MakeBare(config));
  if (!config.has_cdn()) return origin;
  std::unique_ptr<CloudFrontSigner> signer;
  if (config.cdn().has_cloudfront()) {
    const v1::CloudFrontSigning& cf = config.cdn().cloudfront();
    MD_ASSIGN_OR_RETURN(std::string pem,
                        ReadSecret(cf.private_key(), "cdn.cloudfront.private_key"));
    MD_ASSIGN_OR_RETURN(signer, CloudFrontSigner::Create(cf.key_pair_id(), pem));
  }
  return std::make_unique<CdnOrigin>(std::move(origin), config.cdn().base_url(), std::move(signer));
}

}  // namespace modeldist::origin
