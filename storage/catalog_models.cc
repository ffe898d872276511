// Models, versions and their artifacts: creating, publishing and yanking versions, and the
// digests the versions declare.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"
#include "storage/page_token.h"

namespace modeldist::storage {
namespace {

#define MD_MODEL_COLUMNS "id, description, create_time, replicate_to"
constexpr char kSelectModel[] = "SELECT " MD_MODEL_COLUMNS " FROM models WHERE id = ?";
constexpr char kListModelsFirst[] = "SELECT " MD_MODEL_COLUMNS " FROM models ORDER BY id LIMIT ?";
constexpr char kListModelsAfter[] =
    "SELECT " MD_MODEL_COLUMNS " FROM models WHERE id > ? ORDER BY id LIMIT ?";
constexpr char kInsertModel[] =
    "INSERT INTO models (id, description, create_time, replicate_to) VALUES (?, ?, ?, ?)";

#define MD_VERSION_COLUMNS                                                                       \
  "model_id, version_id, state, create_time, publish_time, yank_time, yank_reason, replicate_to" \
  ", release IS NOT NULL"
constexpr char kSelectVersion[] =
    "SELECT " MD_VERSION_COLUMNS " FROM versions WHERE model_id = ? AND version_id = ?";
constexpr char kListVersionsFirst[] = "SELECT " MD_VERSION_COLUMNS
                                      " FROM versions WHERE model_id = ?"
                                      " ORDER BY version_id LIMIT ?";
constexpr char kListVersionsAfter[] = "SELECT " MD_VERSION_COLUMNS
                                      " FROM versions WHERE model_id = ? AND version_id > ?"
                                      " ORDER BY version_id LIMIT ?";
constexpr char kInsertVersion[] =
    "INSERT INTO versions (model_id, version_id, state, create_time, replicate_to)"
    " VALUES (?, ?, ?, ?, ?)";
constexpr char kPublishVersion[] =
    "UPDATE versions SET state = ?, publish_time = ?, release = ?"
    " WHERE model_id = ? AND version_id = ?";
constexpr char kYankVersion[] =
    "UPDATE versions SET state = ?, yank_time = ?, yank_reason = ?"
    " WHERE model_id = ? AND version_id = ?";

#define MD_ARTIFACT_COLUMNS \
  "platform, arch, format, digest, size_bytes, constraints, unpacked_size_bytes"
constexpr char kSelectArtifacts[] =
    "SELECT " MD_ARTIFACT_COLUMNS
    ", model_info FROM artifacts WHERE model_id = ? AND version_id = ?"
    " ORDER BY platform, arch, format";
constexpr char kInsertArtifact[] =
    "INSERT INTO artifacts (model_id, version_id, " MD_ARTIFACT_COLUMNS
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
// Another declaration of the same bytes with a different size (the size is part of identity).
constexpr char kSelectConflictingSize[] =
    "SELECT model_id, version_id, size_bytes FROM artifacts WHERE digest = ? AND size_bytes != ?"
    " ORDER BY model_id, version_id LIMIT 1";
constexpr char kSetModelInfo[] =
    "UPDATE artifacts SET model_info = ? WHERE model_id = ? AND version_id = ? AND digest = ?";
constexpr char kSelectDeclaredSize[] = "SELECT size_bytes FROM artifacts WHERE digest = ? LIMIT 1";
constexpr char kSelectDigestPublished[] =
    "SELECT 1 FROM artifacts a JOIN versions v"
    " ON v.model_id = a.model_id AND v.version_id = a.version_id"
    " WHERE a.digest = ? AND v.state = 2 LIMIT 1";
constexpr char kSelectPublishedDigests[] =
    "SELECT DISTINCT a.digest FROM artifacts a JOIN versions v"
    " ON v.model_id = a.model_id AND v.version_id = a.version_id"
    " WHERE v.state = 2 ORDER BY a.digest";

#undef MD_MODEL_COLUMNS
#undef MD_VERSION_COLUMNS
#undef MD_ARTIFACT_COLUMNS

// Columns of MD_MODEL_COLUMNS.
// replicate_to columns: origin names joined with commas (migrations/0006_replicate_to.sql).
std::vector<std::string> SplitOrigins(const std::string& joined) {
  if (joined.empty()) return {};
  return absl::StrSplit(joined, ',');
}

v1::Model ReadModel(const Statement& s) {
  v1::Model model;
  model.set_name(ModelName(s.ColumnText(0)));
  model.set_description(s.ColumnText(1));
  *model.mutable_create_time() = ToTimestamp(s.ColumnInt64(2));
  for (std::string& origin : SplitOrigins(s.ColumnText(3))) model.add_replicate_to(origin);
  return model;
}

// Columns of MD_VERSION_COLUMNS; artifacts are read separately.
v1::Version ReadVersion(const Statement& s) {
  v1::Version version;
  version.set_name(VersionName{s.ColumnText(0), s.ColumnText(1)}.ToString());
  version.set_state(static_cast<v1::Version::State>(s.ColumnInt(2)));
  *version.mutable_create_time() = ToTimestamp(s.ColumnInt64(3));
  if (!s.ColumnIsNull(4)) *version.mutable_publish_time() = ToTimestamp(s.ColumnInt64(4));
  if (!s.ColumnIsNull(5)) *version.mutable_yank_time() = ToTimestamp(s.ColumnInt64(5));
  version.set_yank_reason(s.ColumnText(6));
  for (std::string& origin : SplitOrigins(s.ColumnText(7))) version.add_replicate_to(origin);
  version.set_released(s.ColumnInt(8) != 0);
  return version;
}

// Columns of MD_ARTIFACT_COLUMNS, then model_info. INTERNAL (CATALOG_CORRUPT) when the stored
// constraints do not parse: serving an artifact without the constraints it declared could hand
// it to devices that cannot run it. Model info is for people: one that does not parse is left
// out rather than failing the read.
absl::StatusOr<v1::Artifact> ReadArtifact(const Statement& s) {
  v1::Artifact artifact;
  artifact.set_platform(static_cast<v1::Platform>(s.ColumnInt(0)));
  artifact.set_arch(static_cast<v1::Arch>(s.ColumnInt(1)));
  artifact.set_format(static_cast<v1::Format>(s.ColumnInt(2)));
  artifact.set_digest(s.ColumnText(3));
  artifact.set_size_bytes(s.ColumnInt64(4));
  if (!s.ColumnIsNull(5) && !artifact.mutable_constraints()->ParseFromString(s.ColumnBlob(5))) {
    return MakeError(absl::StatusCode::kInternal, "CATALOG_CORRUPT",
                     absl::StrCat("catalog: the stored constraints of artifact ",
                                  ArtifactKey(artifact), " (", artifact.digest(), ") do not parse"),
                     {{"digest", artifact.digest()}});
  }
  artifact.set_unpacked_size_bytes(s.ColumnInt64(6));
  if (!s.ColumnIsNull(7) && !artifact.mutable_model_info()->ParseFromString(s.ColumnBlob(7))) {
    artifact.clear_model_info();
  }
  return artifact;
}

absl::Status ModelNotFound(absl::string_view model_id) {
  std::string name = ModelName(model_id);
  return MakeError(absl::StatusCode::kNotFound, "MODEL_NOT_FOUND",
                   absl::StrCat(name, " does not exist"), {{"resource", name}});
}

absl::Status VersionNotFound(const VersionName& version) {
  std::string name = version.ToString();
  return MakeError(absl::StatusCode::kNotFound, "VERSION_NOT_FOUND",
                   absl::StrCat(name, " does not exist"), {{"resource", name}});
}

}  // namespace

std::string ArtifactKey(const v1::Artifact& artifact) {
  // Values newer than this binary's protos have no name; show the number.
  auto or_number = [](const std::string& enum_name, int value) {
    return enum_name.empty() ? absl::StrCat(value) : enum_name;
  };
  return absl::StrCat(or_number(v1::Platform_Name(artifact.platform()), artifact.platform()), "/",
                      or_number(v1::Arch_Name(artifact.arch()), artifact.arch()), "/",
                      or_number(v1::Format_Name(artifact.format()), artifact.format()));
}

std::string StateName(int state) {
  std::string name = v1::Version::State_Name(static_cast<v1::Version::State>(state));
  return name.empty() ? absl::StrCat(state) : name;
}

absl::Status VersionNotPublished(const v1::Version& version, absl::string_view what) {
  std::string state = StateName(version.state());
  return MakeError(absl::StatusCode::kFailedPrecondition, "VERSION_NOT_PUBLISHED",
                   absl::StrCat("cannot ", what, " ", version.name(), ": it is ", state,
                                "; only PUBLISHED versions are eligible"),
                   {{"resource", version.name()}, {"state", state}});
}

// ---------------------------------------------------------------------------------------------
// Impl.

absl::Status Catalog::Impl::CheckModelExists(absl::string_view model_id) {
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectModel));
  s.BindText(0, model_id);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  return found ? absl::OkStatus() : ModelNotFound(model_id);
}

absl::Status Catalog::Impl::LoadArtifacts(const VersionName& name, v1::Version* version) {
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectArtifacts));
  s.BindText(0, name.model);
  s.BindText(1, name.version);
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return absl::OkStatus();
    MD_ASSIGN_OR_RETURN(*version->add_artifacts(), ReadArtifact(s));
  }
}

absl::StatusOr<v1::Version> Catalog::Impl::LoadVersion(const VersionName& name) {
  v1::Version version;
  {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectVersion));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    MD_ASSIGN_OR_RETURN(bool found, s.Step());
    if (found) version = ReadVersion(s);
  }
  if (version.name().empty()) {
    MD_RETURN_IF_ERROR(CheckModelExists(name.model));
    return VersionNotFound(name);
  }
  MD_RETURN_IF_ERROR(LoadArtifacts(name, &version));
  return version;
}

// ---------------------------------------------------------------------------------------------
// Catalog.

absl::StatusOr<v1::Model> Catalog::CreateModel(absl::string_view model_id,
                                               absl::string_view description,
                                               absl::string_view actor,
                                               const std::vector<std::string>& replicate_to) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  if (absl::Status exists = impl_->CheckModelExists(model_id); !absl::IsNotFound(exists)) {
    if (!exists.ok()) return exists;
    std::string name = ModelName(model_id);
    return MakeError(absl::StatusCode::kAlreadyExists, "MODEL_EXISTS",
                     absl::StrCat(name, " already exists"), {{"resource", name}});
  }
  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertModel));
    s.BindText(0, model_id);
    s.BindText(1, description);
    s.BindInt64(2, now);
    s.BindText(3, absl::StrJoin(replicate_to, ","));
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_RETURN_IF_ERROR(impl_->Audit(now, actor, "CreateModel", ModelName(model_id), "created"));
  MD_RETURN_IF_ERROR(txn.Commit());
  v1::Model model;
  model.set_name(ModelName(model_id));
  model.set_description(std::string(description));
  *model.mutable_create_time() = ToTimestamp(now);
  for (const std::string& origin : replicate_to) model.add_replicate_to(origin);
  return model;
}

absl::StatusOr<v1::Model> Catalog::GetModel(absl::string_view model_id) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectModel));
  s.BindText(0, model_id);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) return ModelNotFound(model_id);
  return ReadModel(s);
}

absl::StatusOr<ListPage<v1::Model>> Catalog::ListModels(int page_size,
                                                        absl::string_view page_token) {
  MD_ASSIGN_OR_RETURN(const int limit, EffectivePageSize(page_size));
  std::vector<std::string> after;
  if (!page_token.empty()) {
    MD_ASSIGN_OR_RETURN(after, DecodePageToken(page_token, "models", 1));
  }
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s,
                      impl_->Prepare(after.empty() ? kListModelsFirst : kListModelsAfter));
  int bind = 0;
  if (!after.empty()) s.BindText(bind++, after[0]);
  s.BindInt64(bind, limit + 1);  // one extra row tells whether another page exists

  ListPage<v1::Model> page;
  std::string last_id;
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (static_cast<int>(page.items.size()) == limit) {
      page.next_page_token = EncodePageToken({"models", last_id});
      break;
    }
    last_id = s.ColumnText(0);
    page.items.push_back(ReadModel(s));
  }
  return page;
}

absl::StatusOr<v1::Version> Catalog::CreateVersion(const VersionName& name,
                                                   const std::vector<v1::Artifact>& artifacts,
                                                   absl::string_view actor,
                                                   const std::vector<std::string>& replicate_to) {
  // Checks on the request alone come first: they fail the same whatever the catalog holds.
  for (size_t i = 0; i < artifacts.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const v1::Artifact& a = artifacts[j];
      const v1::Artifact& b = artifacts[i];
      if (a.platform() == b.platform() && a.arch() == b.arch() && a.format() == b.format()) {
        return InvalidArgument(
            "artifacts", "DUPLICATE_ARTIFACT",
            absl::StrCat("artifacts[", j, "] and artifacts[", i, "] are both for ", ArtifactKey(b),
                         "; a version has at most one artifact per (platform, ", "arch, format)"));
      }
      if (a.digest() == b.digest() && a.size_bytes() != b.size_bytes()) {
        return InvalidArgument(
            absl::StrCat("artifacts[", i, "].size_bytes"), "SIZE_CONFLICT",
            absl::StrCat("artifacts[", i, "].size_bytes is ", b.size_bytes(), " but artifacts[", j,
                         "] declares ", b.digest(), " with size ", a.size_bytes(),
                         "; the same bytes cannot have two sizes"));
      }
    }
  }

  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_RETURN_IF_ERROR(impl_->CheckModelExists(name.model));
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectVersion));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    MD_ASSIGN_OR_RETURN(bool found, s.Step());
    if (found) {
      return MakeError(absl::StatusCode::kAlreadyExists, "VERSION_EXISTS",
                       absl::StrCat(name.ToString(), " already exists"),
                       {{"resource", name.ToString()}});
    }
  }
  for (size_t i = 0; i < artifacts.size(); ++i) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectConflictingSize));
    s.BindText(0, artifacts[i].digest());
    s.BindInt64(1, artifacts[i].size_bytes());
    MD_ASSIGN_OR_RETURN(bool conflict, s.Step());
    if (conflict) {
      std::string field = absl::StrCat("artifacts[", i, "].size_bytes");
      return InvalidArgument(
          field, "SIZE_CONFLICT",
          absl::StrCat(field, " is ", artifacts[i].size_bytes(), " but ",
                       VersionName{s.ColumnText(0), s.ColumnText(1)}.ToString(), " declares ",
                       artifacts[i].digest(), " with size ", s.ColumnInt64(2),
                       "; the same bytes cannot have two sizes"));
    }
  }

  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertVersion));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    s.BindInt64(2, v1::Version::DRAFT);
    s.BindInt64(3, now);
    s.BindText(4, absl::StrJoin(replicate_to, ","));
    MD_RETURN_IF_ERROR(s.Run());
  }
  for (const v1::Artifact& artifact : artifacts) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertArtifact));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    s.BindInt64(2, artifact.platform());
    s.BindInt64(3, artifact.arch());
    s.BindInt64(4, artifact.format());
    s.BindText(5, artifact.digest());
    s.BindInt64(6, artifact.size_bytes());
    // NULL, not an empty blob, for "no constraints": a read then gives back exactly the
    // message that was written, presence included.
    if (artifact.has_constraints()) {
      s.BindBlob(7, artifact.constraints().SerializeAsString());
    } else {
      s.BindNull(7);
    }
    s.BindInt64(8, artifact.unpacked_size_bytes());
    MD_RETURN_IF_ERROR(s.Run());
  }
  // Read back inside the transaction so the answer is exactly what GetVersion will return.
  MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(name));
  MD_RETURN_IF_ERROR(
      impl_->Audit(now, actor, "CreateVersion", name.ToString(),
                   absl::StrCat("DRAFT with ", artifacts.size(),
                                artifacts.size() == 1 ? " artifact" : " artifacts")));
  MD_RETURN_IF_ERROR(txn.Commit());
  return version;
}

absl::StatusOr<v1::Version> Catalog::GetVersion(const VersionName& name) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginRead());
  MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(name));
  MD_RETURN_IF_ERROR(txn.Commit());
  return version;
}

absl::StatusOr<ListPage<v1::Version>> Catalog::ListVersions(absl::string_view model_id,
                                                            int page_size,
                                                            absl::string_view page_token) {
  MD_ASSIGN_OR_RETURN(const int limit, EffectivePageSize(page_size));
  std::vector<std::string> after;
  if (!page_token.empty()) {
    MD_ASSIGN_OR_RETURN(after, DecodePageToken(page_token, "versions", 2));
    if (after[0] != model_id) return InvalidPageToken();
  }
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginRead());
  MD_RETURN_IF_ERROR(impl_->CheckModelExists(model_id));

  ListPage<v1::Version> page;
  std::vector<VersionName> names;
  {
    MD_ASSIGN_OR_RETURN(Statement s,
                        impl_->Prepare(after.empty() ? kListVersionsFirst : kListVersionsAfter));
    int bind = 0;
    s.BindText(bind++, model_id);
    if (!after.empty()) s.BindText(bind++, after[1]);
    s.BindInt64(bind, limit + 1);
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      if (static_cast<int>(page.items.size()) == limit) {
        page.next_page_token =
            EncodePageToken({"versions", std::string(model_id), names.back().version});
        break;
      }
      names.push_back(VersionName{s.ColumnText(0), s.ColumnText(1)});
      page.items.push_back(ReadVersion(s));
    }
  }
  for (size_t i = 0; i < names.size(); ++i) {
    MD_RETURN_IF_ERROR(impl_->LoadArtifacts(names[i], &page.items[i]));
  }
  MD_RETURN_IF_ERROR(txn.Commit());
  return page;
}

absl::StatusOr<v1::Version> Catalog::PublishVersion(
    const VersionName& name, const std::function<bool(const std::string& digest)>& is_uploaded,
    absl::string_view actor, const std::map<std::string, v1::ModelInfo>& model_infos,
    absl::string_view release) {
  if (!is_uploaded) {
    return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                     "PublishVersion needs an is_uploaded callback");
  }
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(name));
  if (version.state() != v1::Version::DRAFT) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "VERSION_NOT_DRAFT",
                     absl::StrCat(name.ToString(), " is ", StateName(version.state()),
                                  "; only a DRAFT version can be published"),
                     {{"resource", name.ToString()}, {"state", StateName(version.state())}});
  }
  for (const v1::Artifact& artifact : version.artifacts()) {
    if (!is_uploaded(artifact.digest())) {
      return MakeError(
          absl::StatusCode::kFailedPrecondition, "ARTIFACT_NOT_UPLOADED",
          absl::StrCat("cannot publish ", name.ToString(), ": its artifact ", ArtifactKey(artifact),
                       " (", artifact.digest(), ") is not uploaded"),
          {{"resource", name.ToString()},
           {"digest", artifact.digest()},
           {"artifact", ArtifactKey(artifact)}});
    }
  }
  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kPublishVersion));
    s.BindInt64(0, v1::Version::PUBLISHED);
    s.BindInt64(1, now);
    if (release.empty()) {
      s.BindNull(2);
    } else {
      s.BindBlob(2, release);
    }
    s.BindText(3, name.model);
    s.BindText(4, name.version);
    MD_RETURN_IF_ERROR(s.Run());
  }
  for (const auto& [digest, info] : model_infos) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSetModelInfo));
    s.BindBlob(0, info.SerializeAsString());
    s.BindText(1, name.model);
    s.BindText(2, name.version);
    s.BindText(3, digest);
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_ASSIGN_OR_RETURN(version, impl_->LoadVersion(name));
  MD_RETURN_IF_ERROR(impl_->Audit(now, actor, "PublishVersion", name.ToString(), "published"));
  MD_RETURN_IF_ERROR(txn.Commit());
  return version;
}

absl::StatusOr<v1::Version> Catalog::YankVersion(const VersionName& name, absl::string_view reason,
                                                 absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(name));
  if (version.state() != v1::Version::PUBLISHED) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "VERSION_NOT_PUBLISHED",
                     absl::StrCat(name.ToString(), " is ", StateName(version.state()),
                                  "; only a PUBLISHED version can be yanked"),
                     {{"resource", name.ToString()}, {"state", StateName(version.state())}});
  }

  // Every tier/channel whose answers change, each bumped once however many reasons it has.
  // First the tiers that resolve to this version now, decided before the yank changes
  // resolution: they fall back.
  MD_ASSIGN_OR_RETURN(TierChannels affected, impl_->TiersResolvingTo(name));
  const size_t fallbacks = affected.size();

  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kYankVersion));
    s.BindInt64(0, v1::Version::YANKED);
    s.BindInt64(1, now);
    s.BindText(2, reason);
    s.BindText(3, name.model);
    s.BindText(4, name.version);
    MD_RETURN_IF_ERROR(s.Run());
  }

  // A rollout towards a yanked version must not keep serving it to its cohort.
  MD_ASSIGN_OR_RETURN(std::vector<StoredRollout> aborted, impl_->AbortRolloutsTo(name, now));
  for (const StoredRollout& rollout : aborted) {
    affected.emplace(rollout.rollout.tier(), rollout.rollout.channel());
  }

  // Pins name PUBLISHED versions only; pinned devices return to the tier's ordinary answer.
  MD_ASSIGN_OR_RETURN(int64_t unpinned, impl_->RemovePinsTo(name, &affected));

  std::vector<std::string> changed;
  for (const auto& [tier, channel] : affected) {
    MD_ASSIGN_OR_RETURN(int64_t sequence, impl_->BumpSequence(tier, channel, now));
    changed.push_back(absl::StrCat(TierResource(tier, channel), " (sequence ", sequence, ")"));
  }
  std::string details = absl::StrCat("yanked: \"", reason, "\"");
  if (fallbacks > 0) absl::StrAppend(&details, "; ", fallbacks, " tier(s) fell back");
  for (const StoredRollout& rollout : aborted) {
    absl::StrAppend(&details, "; rollout ", rollout.rollout.id(), " aborted");
  }
  if (unpinned > 0) absl::StrAppend(&details, "; ", unpinned, " pin(s) removed");
  if (!changed.empty()) absl::StrAppend(&details, "; changed ", absl::StrJoin(changed, ", "));
  MD_RETURN_IF_ERROR(impl_->Audit(now, actor, "YankVersion", name.ToString(), details));

  MD_ASSIGN_OR_RETURN(version, impl_->LoadVersion(name));
  MD_RETURN_IF_ERROR(txn.Commit());
  return version;
}

absl::StatusOr<int64_t> Catalog::DeclaredSize(absl::string_view digest) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectDeclaredSize));
  s.BindText(0, digest);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) {
    return MakeError(absl::StatusCode::kNotFound, "DIGEST_NOT_DECLARED",
                     absl::StrCat("no version declares an artifact with digest ", digest),
                     {{"digest", std::string(digest)}});
  }
  return s.ColumnInt64(0);
}

absl::StatusOr<bool> Catalog::IsDigestPublished(absl::string_view digest) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectDigestPublished));
  s.BindText(0, digest);
  return s.Step();
}

absl::StatusOr<std::vector<std::string>> Catalog::ListPublishedDigests() {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectPublishedDigests));
  std::vector<std::string> out;
  for (;;) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(s.ColumnText(0));
  }
  return out;
}

}  // namespace modeldist::storage
