// File: model_store.h
//
// The on-device layout of installed models for one tier and its atomic activation.
//
//   <dir>/versions/<version-key>/          one folder per installed version (complete, verified)
//         model.gguf | model/<unzipped CoreML package>   the activated content
//         INSTALLED                         written last: the folder is complete
//   <dir>/current -> versions/<key>         the active version (symlink replaced by rename)
//   <dir>/previous -> versions/<key>        the one before, kept for rollback
//   <dir>/staging/                          downloads and unpacking in progress
//
// Activation prepares the new version's content in a work folder under staging/, fsyncs it,
// renames it into versions/, fsyncs staging/ and versions/, writes INSTALLED (atomically: from
// then on the folder is a complete version), then points `previous` at the old current and
// `current` at the new folder, each by creating a new symlink and renaming it over the old one,
// and fsyncs <dir>. After a crash at any point `current` names a complete version (the old or
// the new one); Open removes what the crash left (work folders, a versions/ folder without
// INSTALLED, `<link>.new`). docs/agent.md lists each step and its recovery.
#ifndef MODELDIST_CLIENT_AGENT_MODEL_STORE_H_
#define MODELDIST_CLIENT_AGENT_MODEL_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/agent/unzip.h"  // UnzipLimits
#include "modeldist/v1/resources.pb.h"

namespace modeldist::agent {

struct InstalledVersion {
  std::string key;      // folder name under versions/
  std::string version;  // models/{model}/versions/{version}
  std::string digest;   // sha256:<hex> of the artifact it was made from
  v1::Format format = v1::FORMAT_UNSPECIFIED;
  std::string path;  // absolute path of the activated content
};

class ModelStore {
 public:
  // Opens (creating) the layout under `dir`, removing leftovers of a crash: activation work
  // folders in staging/, temporary links and version folders without INSTALLED. Other files
  // in staging/ (downloads being resumed) are kept; CollectGarbage removes them.
  static absl::StatusOr<ModelStore> Open(const std::string& dir);

  // Installs the verified artifact file `artifact_path` (moved, not copied) as `version`:
  // GGUF and other single files are placed as `model.<ext>`; FORMAT_COREML_ZIP is unpacked
  // (entries with `..`, absolute paths, symlinks, devices, too many entries or absurd sizes or
  // ratios are refused with INVALID_ARGUMENT / RESOURCE_EXHAUSTED and nothing is installed).
  // Then makes it current and the old current previous. Idempotent for the current version;
  // a version still installed (e.g. previous) is switched to without unpacking again.
  // The folder is versions/<key>, key = the version id with anything outside [A-Za-z0-9._-]
  // mapped to '_', '-', and the first 8 hex digits of `digest` (e.g. `2026.11.0-ab12cd34`).
  // On success `artifact_path` is consumed (moved, or unpacked and removed); on error it is
  // left where it was whenever possible. It must be on the store's file system (download into
  // StagingDir()): FAILED_PRECONDITION otherwise. A bad version, digest or format is
  // INVALID_ARGUMENT; a missing artifact NOT_FOUND.
  absl::StatusOr<InstalledVersion> Activate(const std::string& artifact_path,
                                            const std::string& version, const std::string& digest,
                                            v1::Format format, const UnzipLimits& limits = {});

  std::optional<InstalledVersion> Current() const;
  std::optional<InstalledVersion> Previous() const;
  // Makes `previous` current again (and the old current previous). FAILED_PRECONDITION
  // (NO_PREVIOUS_VERSION) when there is no complete previous version.
  absl::Status Rollback();
  // Removes every version folder that is neither current nor previous, and everything in
  // staging/ (including partial downloads: call it when no download is in progress).
  // Returns the bytes freed (sum of the removed files' sizes).
  absl::StatusOr<int64_t> CollectGarbage();
  // Every installed (complete) version, ordered by key.
  std::vector<InstalledVersion> List() const;

  const std::string& dir() const { return dir_; }
  std::string StagingDir() const { return dir_ + "/staging"; }

 private:
  explicit ModelStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_MODEL_STORE_H_
