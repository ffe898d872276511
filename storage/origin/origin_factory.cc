#include "storage/origin/origin_factory.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/origin/origin_config.h"

namespace modeldist::origin {

absl::StatusOr<std::unique_ptr<Origin>> MakeOrigin(const v1::Origin& config) {
  return MakeError(absl::StatusCode::kUnimplemented, "ORIGIN_KIND_UNSUPPORTED",
                   absl::StrCat(OriginKind(config),
                                " origins are not supported by this version of modeldist-server "
                                "yet; use an s3 origin (docs/origins.md)"));
}

}  // namespace modeldist::origin
