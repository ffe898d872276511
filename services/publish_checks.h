// File: publish_checks.h
//
// The model checks (common/model_check/model_check.h) run on a version's stored blobs when it
// is published, so that a GGUF or CoreML zip a device could not load never becomes eligible
// for a tier. What each check reads from the file is returned for the catalog to keep on the
// artifact (Artifact.model_info).
#ifndef MODELDIST_SERVICES_PUBLISH_CHECKS_H_
#define MODELDIST_SERVICES_PUBLISH_CHECKS_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "common/model_check/model_check.h"
#include "modeldist/v1/resources.pb.h"
#include "storage/blob_store.h"

namespace modeldist::services {

// Checks every artifact of `version` whose format has a check and whose blob `blobs` holds
// (one not stored is left to the publish's own ARTIFACT_NOT_UPLOADED), once per digest.
// Returns the model info by digest. Errors: the check's (INVALID_ARGUMENT, GGUF_INVALID or
// COREML_ZIP_INVALID) with the artifact named at the front of the message, or the blob
// store's when a blob cannot be read.
absl::StatusOr<std::map<std::string, v1::ModelInfo>> CheckVersionArtifacts(
    const v1::Version& version, const storage::BlobStore& blobs,
    const model_check::CheckOptions& options);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_PUBLISH_CHECKS_H_
