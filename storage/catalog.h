// File: catalog.h
//
// The versioned catalog of models, versions, artifacts and tier bindings, in SQLite.
//
// Opening the catalog applies the numbered migrations from migrations/ (embedded into the
// binary at build time), each in one transaction, recording the schema version in
// `schema_migrations`; a database whose version is newer than this binary knows is refused
// with FAILED_PRECONDITION. The database runs in WAL mode with foreign keys on and
// synchronous=FULL, so every acknowledged write survives a crash or power loss.
//
// Records are the modeldist.v1 protos (the API is the schema's manual). Validation of request
// syntax (ids, digests) is the caller's; the catalog enforces relations and state rules and
// returns NOT_FOUND / ALREADY_EXISTS / FAILED_PRECONDITION with an ErrorInfo reason.
//
// Thread-safe: one connection guarded by a mutex.
#ifndef MODELDIST_STORAGE_CATALOG_H_
#define MODELDIST_STORAGE_CATALOG_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/names.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::storage {

template <typename T>
struct ListPage {
  std::vector<T> items;
  std::string next_page_token;  // empty on the last page
};

// A tier binding with the version it resolves to (only PUBLISHED versions are ever resolved).
struct ResolvedTier {
  v1::TierBinding binding;
  v1::Version version;
};

struct CatalogOptions {
  // The clock for create/publish/yank/update times; tests inject a fake.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

class Catalog {
 public:
  using Options = CatalogOptions;

  // Opens or creates the catalog at `path` (its folder must exist).
  // FAILED_PRECONDITION when the schema is newer than this binary; UNAVAILABLE on I/O errors.
  static absl::StatusOr<std::unique_ptr<Catalog>> Open(const std::string& path,
                                                       Options options = {});
  ~Catalog();

  // The schema version after migrations (the highest migration number applied).
  int SchemaVersion() const;
  // The highest migration number this binary carries.
  static int LatestSchemaVersion();

  // ALREADY_EXISTS if the model exists.
  absl::StatusOr<v1::Model> CreateModel(absl::string_view model_id, absl::string_view description);
  // NOT_FOUND if absent.
  absl::StatusOr<v1::Model> GetModel(absl::string_view model_id);
  // page_size: 0 means 100, values above 1000 are treated as 1000, negative is
  // INVALID_ARGUMENT (field page_size). A malformed page_token is INVALID_ARGUMENT (field
  // page_token). Ordered by model id.
  absl::StatusOr<ListPage<v1::Model>> ListModels(int page_size, absl::string_view page_token);

  // Creates a DRAFT version with `artifacts` (platform, arch, format, digest, size_bytes read).
  // NOT_FOUND: no model. ALREADY_EXISTS: version exists. INVALID_ARGUMENT: two artifacts for
  // the same (platform, arch, format) (field artifacts), or a digest already declared
  // elsewhere with another size (field artifacts[i].size_bytes).
  absl::StatusOr<v1::Version> CreateVersion(const VersionName& name,
                                            const std::vector<v1::Artifact>& artifacts);
  // NOT_FOUND if the model or version is absent. `uploaded` is left false: the catalog does
  // not know the blob store.
  absl::StatusOr<v1::Version> GetVersion(const VersionName& name);
  // Ordered by version id. Same paging rules as ListModels. NOT_FOUND if no model.
  absl::StatusOr<ListPage<v1::Version>> ListVersions(absl::string_view model_id, int page_size,
                                                     absl::string_view page_token);

  // DRAFT -> PUBLISHED, atomically. `is_uploaded(digest)` is asked for every artifact inside
  // the transaction; the first that is not gives FAILED_PRECONDITION naming its digest and
  // platform/arch/format. FAILED_PRECONDITION when not a DRAFT; NOT_FOUND when absent.
  absl::StatusOr<v1::Version> PublishVersion(
      const VersionName& name, const std::function<bool(const std::string& digest)>& is_uploaded);

  // PUBLISHED -> YANKED, atomically with bumping the sequence of every tier/channel that
  // resolved to this version (they now resolve to their newest earlier binding that is not
  // yanked, or to nothing). FAILED_PRECONDITION when not PUBLISHED.
  absl::StatusOr<v1::Version> YankVersion(const VersionName& name, absl::string_view reason);

  // Binds tier/channel to a PUBLISHED version, appending to the tier's history and bumping its
  // sequence by one (a tier's first binding has sequence 1). NOT_FOUND: no version.
  // FAILED_PRECONDITION: the version is not PUBLISHED.
  absl::StatusOr<v1::TierBinding> SetTier(absl::string_view tier, absl::string_view channel,
                                          const VersionName& version);
  // The current binding; NOT_FOUND if the tier/channel was never bound.
  absl::StatusOr<v1::TierBinding> GetTier(absl::string_view tier, absl::string_view channel);
  // Ordered by (tier, channel). Same paging rules as ListModels.
  absl::StatusOr<ListPage<v1::TierBinding>> ListTiers(int page_size, absl::string_view page_token);

  // Every tier/channel that resolves to a version, with that version and its artifacts.
  absl::StatusOr<std::vector<ResolvedTier>> ResolveAllTiers();

  // The size that versions declare for `digest` (`sha256:<hex>`); NOT_FOUND if none does.
  absl::StatusOr<int64_t> DeclaredSize(absl::string_view digest);

  // Runs PRAGMA integrity_check; returns its text ("ok" when healthy).
  absl::StatusOr<std::string> IntegrityCheck();

 private:
  struct Impl;
  explicit Catalog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_CATALOG_H_
