#include "services/manifest_cache.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/digest.h"
#include "common/names.h"
#include "common/status.h"
#include "services/selection.h"

namespace modeldist::services {
namespace {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

std::string Describe(const v1::Artifact& a) {
  return absl::StrCat(v1::Platform_Name(a.platform()), "/", v1::Arch_Name(a.arch()), " ",
                      v1::Format_Name(a.format()));
}

// The architectures a device can ask for; an ARCH_ANY artifact answers each of them.
constexpr v1::Arch kDeviceArches[] = {v1::ARCH_ARM64, v1::ARCH_X86_64};

}  // namespace

ManifestCache::ManifestCache(storage::Catalog* catalog, const storage::BlobStore* blobs,
                             const ManifestSigner* signer, Options options)
    : catalog_(catalog),
      blobs_(blobs),
      signer_(signer),
      options_(std::move(options)),
      snapshot_(std::make_shared<Snapshot>()) {
  if (options_.refresh_in_background) refresher_ = std::thread([this] { RefreshLoop(); });
}

ManifestCache::~ManifestCache() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (refresher_.joinable()) refresher_.join();
}

absl::StatusOr<std::shared_ptr<const std::vector<std::string>>> ManifestCache::ChunkChain(
    const std::string& digest) {
  MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", digest));
  absl::StatusOr<int64_t> stored = blobs_->Size(hex);
  if (storage::IsNotStored(stored.status()) && options_.remote_chain) {
    // Not stored here, but read through from the origins when a device asks.
    absl::StatusOr<std::vector<std::string>> remote = options_.remote_chain(hex);
    if (remote.ok()) return std::make_shared<const std::vector<std::string>>(*std::move(remote));
  }
  MD_RETURN_IF_ERROR(stored.status());  // the blob may be gone or damaged since
  auto it = chunk_chains_.find(digest);
  // The chain of a digest never changes.
  if (it != chunk_chains_.end()) return it->second;
  MD_ASSIGN_OR_RETURN(std::vector<std::string> chain, blobs_->ChunkChain(hex));
  auto shared = std::make_shared<const std::vector<std::string>>(std::move(chain));
  chunk_chains_[digest] = shared;
  return shared;
}

absl::StatusOr<std::shared_ptr<const ManifestCache::VersionAnswers>> ManifestCache::SignVersion(
    const v1::TierBinding& binding, const v1::Version& version, absl::Time now, Damage* damage) {
  auto answers = std::make_shared<VersionAnswers>();
  answers->version = version.name();
  std::vector<std::string> inventory;
  std::vector<v1::Platform> platforms;
  for (const v1::Artifact& a : version.artifacts()) {
    inventory.push_back(Describe(a));
    if (std::find(platforms.begin(), platforms.end(), a.platform()) == platforms.end()) {
      platforms.push_back(a.platform());
    }
  }
  answers->inventory = absl::StrJoin(inventory, ", ");
  MD_ASSIGN_OR_RETURN(VersionName name, ParseVersionName("version", version.name()));
  // Every manifest of the version carries its release statement (unsigned by the online
  // keys; devices whose root has release keys check it, common/release.h).
  v1::SignedRelease release;
  MD_ASSIGN_OR_RETURN(std::string release_bytes, catalog_->GetRelease(name));
  if (!release.ParseFromString(release_bytes)) {
    return MakeError(absl::StatusCode::kInternal, "CATALOG_CORRUPT",
                     absl::StrCat("catalog: the stored release statement of ", version.name(),
                                  " does not parse"),
                     {{"resource", version.name()}});
  }

  for (v1::Platform platform : platforms) {
    for (v1::Arch arch : kDeviceArches) {
      std::vector<Offer>& offers = answers->offers[{platform, arch}];
      for (const v1::Artifact* artifact : RankArtifacts(version, platform, arch)) {
        Offer offer{nullptr, artifact->constraints(), Describe(*artifact),
                    "",      artifact->digest(),      now + options_.ttl};
        absl::StatusOr<std::shared_ptr<const std::vector<std::string>>> chain;
        if (auto recorded = damage->recorded.find(artifact->digest());
            recorded != damage->recorded.end()) {
          offer.damaged = recorded->second;
        } else if (chain = ChunkChain(artifact->digest());
                   absl::IsNotFound(chain.status()) || absl::IsDataLoss(chain.status())) {
          offer.damaged = std::string(chain.status().message());
          damage->found.emplace(artifact->digest().substr(kSha256Prefix.size()), chain.status());
        } else if (!chain.ok()) {
          return chain.status();
        }
        if (!offer.damaged.empty()) {
          offers.push_back(std::move(offer));
          continue;
        }
        v1::Manifest m;
        m.set_tier(binding.tier());
        m.set_channel(binding.channel());
        m.set_platform(platform);
        m.set_arch(arch);
        m.set_model(ModelName(name.model));
        m.set_version(version.name());
        v1::ManifestArtifact* out = m.mutable_artifact();
        out->set_digest(artifact->digest());
        out->set_size_bytes(artifact->size_bytes());
        out->set_format(artifact->format());
        out->set_platform(artifact->platform());
        out->set_arch(artifact->arch());
        out->set_chunk_size(storage::kChunkDigestBytes);
        out->add_sources()->set_artifact_service(options_.public_address);
        for (const std::string& entry : **chain) out->add_chunk_chain(entry);
        out->set_unpacked_size_bytes(artifact->unpacked_size_bytes());
        *out->mutable_constraints() = artifact->constraints();
        *m.mutable_issued_at() = ToProto(now);
        *m.mutable_expires_at() = ToProto(offer.expires);
        m.set_sequence(binding.sequence());

        auto signed_manifest = std::make_shared<v1::SignedManifest>();
        // Serialize once; the signatures cover exactly these bytes, sent as they are.
        m.SerializeToString(signed_manifest->mutable_manifest());
        for (v1::Signature& s : signer_->SignManifest(signed_manifest->manifest())) {
          *signed_manifest->add_signatures() = std::move(s);
        }
        if (artifact->has_model_info()) {
          *signed_manifest->mutable_model_info() = artifact->model_info();
        }
        if (!release_bytes.empty()) *signed_manifest->mutable_release() = release;
        offer.signed_manifest = std::move(signed_manifest);
        offers.push_back(std::move(offer));
      }
    }
  }
  return answers;
}

absl::Status ManifestCache::Rebuild() {
  Damage damage;
  absl::Status status;
  {
    absl::MutexLock rebuild_lock(&rebuild_mu_);
    status = RebuildLocked(&damage);
  }
  if (status.ok() && options_.rebuilds != nullptr) options_.rebuilds->Increment();
  // Outside the lock: the handler records the damage and may rebuild again.
  if (options_.on_damage) {
    for (const auto& [hex, problem] : damage.found) options_.on_damage(hex, problem);
  }
  return status;
}

absl::Status ManifestCache::RebuildLocked(Damage* damage) {
  MD_ASSIGN_OR_RETURN(std::vector<storage::DamagedBlob> damaged, catalog_->ListDamagedBlobs());
  for (storage::DamagedBlob& d : damaged) damage->recorded[d.digest] = std::move(d.details);
  MD_ASSIGN_OR_RETURN(std::vector<storage::ResolvedTier> tiers, catalog_->ResolveAllTiers());
  const absl::Time now = options_.now();
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->refresh_after = now + options_.ttl / 2;

  for (const storage::ResolvedTier& resolved : tiers) {
    TierAnswers answers;
    MD_ASSIGN_OR_RETURN(answers.bound,
                        SignVersion(resolved.binding, resolved.version, now, damage));
    if (resolved.rollout.has_value() && resolved.rollout_version.has_value()) {
      answers.rollout = resolved.rollout;
      MD_ASSIGN_OR_RETURN(answers.rollout_to,
                          SignVersion(resolved.binding, *resolved.rollout_version, now, damage));
    }
    // Pins to the same version share one set of signed answers.
    std::map<std::string, std::shared_ptr<const VersionAnswers>> by_version;
    by_version[resolved.version.name()] = answers.bound;
    if (answers.rollout_to) by_version[answers.rollout_to->version] = answers.rollout_to;
    for (const v1::DevicePin& pin : resolved.pins) {
      auto& signed_version = by_version[pin.version()];
      if (!signed_version) {
        auto version = resolved.pinned_versions.find(pin.version());
        if (version == resolved.pinned_versions.end()) continue;  // yanked meanwhile
        MD_ASSIGN_OR_RETURN(signed_version,
                            SignVersion(resolved.binding, version->second, now, damage));
      }
      answers.pins[pin.device_id()] = signed_version;
    }
    snapshot->tiers[{resolved.binding.tier(), resolved.binding.channel()}] = std::move(answers);
  }
  absl::MutexLock lock(&mu_);
  snapshot_ = std::move(snapshot);
  return absl::OkStatus();
}

absl::StatusOr<ManifestCache::Answer> ManifestCache::Lookup(
    const v1::GetManifestRequest& request) const {
  const std::string channel =
      request.channel().empty() ? std::string(kDefaultChannel) : request.channel();
  std::shared_ptr<const Snapshot> snapshot;
  {
    absl::ReaderMutexLock lock(&mu_);
    snapshot = snapshot_;
  }
  auto tier = snapshot->tiers.find({request.tier(), channel});
  if (tier == snapshot->tiers.end()) {
    return MakeError(absl::StatusCode::kNotFound, "TIER_NOT_BOUND",
                     absl::StrCat("tier \"", request.tier(), "\" on channel \"", channel,
                                  "\" is not bound to a published version"),
                     {{"tier", request.tier()}, {"channel", channel}});
  }
  const TierAnswers& answers = tier->second;

  // Which version: a pin wins, then the rollout cohort, then the binding.
  const VersionAnswers* version = answers.bound.get();
  std::string why = "tier binding";
  if (auto pin = answers.pins.find(request.device_id());
      !request.device_id().empty() && pin != answers.pins.end()) {
    version = pin->second.get();
    why = "device pinned";
  } else if (answers.rollout.has_value()) {
    const v1::Rollout& r = *answers.rollout;
    const bool in = InCohort(r.id(), request.device_id(), r.basis_points());
    if (in) version = answers.rollout_to.get();
    why = absl::StrCat(
        "rollout ", r.id(), " at ", r.basis_points(),
        "/10000: ", in ? "in cohort" : "not in cohort",
        request.device_id().empty()
            ? " (no device_id)"
            : absl::StrCat(" (bucket ", CohortBucket(r.id(), request.device_id()), ")"));
  }

  auto offers = version->offers.find({request.platform(), request.arch()});
  if (offers == version->offers.end() || offers->second.empty()) {
    return MakeError(
        absl::StatusCode::kNotFound, "NO_ARTIFACT_FOR_TARGET",
        absl::StrCat(version->version, " (tier \"", request.tier(), "\", channel \"", channel,
                     "\") has no artifact for ", v1::Platform_Name(request.platform()), "/",
                     v1::Arch_Name(request.arch()), "; it has: ", version->inventory),
        {{"tier", request.tier()},
         {"channel", channel},
         {"platform", v1::Platform_Name(request.platform())},
         {"arch", v1::Arch_Name(request.arch())}});
  }
  std::vector<std::string> skipped;
  for (const Offer& offer : offers->second) {
    std::string unmet = UnmetConstraints(offer.constraints, request.device());
    if (unmet.empty() && !offer.damaged.empty()) {
      // Not the next candidate: no device changes what it runs because of a server's disk.
      return MakeError(
          absl::StatusCode::kUnavailable, "ARTIFACT_DAMAGED",
          absl::StrCat(version->version, " ", offer.description, " (", offer.digest,
                       ") cannot be served: its bytes on the server are damaged (", offer.damaged,
                       "); an operator must publish the file again. Retry later."),
          {{"tier", request.tier()}, {"channel", channel}, {"digest", offer.digest}});
    }
    if (unmet.empty()) {
      std::string reason = absl::StrCat(why, "; ", version->version, " ", offer.description);
      if (!skipped.empty()) absl::StrAppend(&reason, "; skipped ", absl::StrJoin(skipped, "; "));
      return Answer{offer.signed_manifest, std::move(reason), offer.digest, offer.expires};
    }
    skipped.push_back(absl::StrCat(offer.description, ": ", unmet));
  }
  return MakeError(absl::StatusCode::kFailedPrecondition, "DEVICE_DOES_NOT_FIT",
                   absl::StrCat("no artifact of ", version->version,
                                " fits this device: ", absl::StrJoin(skipped, "; ")),
                   {{"tier", request.tier()}, {"channel", channel}});
}

void ManifestCache::RefreshLoop() {
  absl::Duration retry_wait = absl::ZeroDuration();
  for (;;) {
    absl::Time refresh_after;
    {
      absl::MutexLock lock(&mu_);
      refresh_after = snapshot_->refresh_after;
      // Wake at the refresh time, or at least once a minute so a changed clock is noticed;
      // after a failed rebuild, wait before trying again instead of spinning.
      absl::Duration wait =
          std::max(retry_wait, std::min(absl::Minutes(1), refresh_after - options_.now()));
      if (wait > absl::ZeroDuration()) {
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait);
      }
      if (stopping_) return;
    }
    if (options_.now() >= refresh_after) {
      // A failure keeps the old answers (still valid until they expire).
      retry_wait = Rebuild().ok() ? absl::ZeroDuration() : absl::Seconds(5);
    }
  }
}

}  // namespace modeldist::services
