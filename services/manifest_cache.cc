#include "services/manifest_cache.h"

#include <google/protobuf/util/time_util.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/names.h"
#include "common/status.h"

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

// Picks the artifact for a device: the exact arch wins over ARCH_ANY.
const v1::Artifact* Select(const v1::Version& version, v1::Platform platform, v1::Arch arch) {
  const v1::Artifact* any = nullptr;
  for (const v1::Artifact& a : version.artifacts()) {
    if (a.platform() != platform) continue;
    if (a.arch() == arch) return &a;
    if (a.arch() == v1::ARCH_ANY && any == nullptr) any = &a;
  }
  return any;
}

}  // namespace

ManifestCache::ManifestCache(storage::Catalog* catalog, Ed25519PrivateKey key, Options options)
    : catalog_(catalog),
      key_(std::move(key)),
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

std::shared_ptr<const v1::SignedManifest> ManifestCache::Sign(const v1::Manifest& manifest) const {
  auto signed_manifest = std::make_shared<v1::SignedManifest>();
  // Serialize once; the signature covers exactly these bytes and devices verify them as sent.
  manifest.SerializeToString(signed_manifest->mutable_manifest());
  v1::Signature* sig = signed_manifest->add_signatures();
  sig->set_key_id(key_.public_key().KeyId());
  sig->set_signature(key_.Sign(kManifestSignatureContext, signed_manifest->manifest()));
  return signed_manifest;
}

absl::Status ManifestCache::Rebuild() {
  absl::MutexLock rebuild_lock(&rebuild_mu_);
  MD_ASSIGN_OR_RETURN(std::vector<storage::ResolvedTier> tiers, catalog_->ResolveAllTiers());
  const absl::Time now = options_.now();
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->refresh_after = now + options_.ttl / 2;

  for (const storage::ResolvedTier& resolved : tiers) {
    const v1::TierBinding& binding = resolved.binding;
    const v1::Version& version = resolved.version;
    std::vector<std::string> offered;
    std::vector<v1::Platform> platforms;
    for (const v1::Artifact& a : version.artifacts()) {
      offered.push_back(Describe(a));
      if (std::find(platforms.begin(), platforms.end(), a.platform()) == platforms.end()) {
        platforms.push_back(a.platform());
      }
    }
    snapshot->offers[{binding.tier(), binding.channel()}] = {version.name(),
                                                             absl::StrJoin(offered, ", ")};
    auto parsed = ParseVersionName("version", version.name());
    if (!parsed.ok()) return parsed.status();

    for (v1::Platform platform : platforms) {
      for (v1::Arch arch : kDeviceArches) {
        const v1::Artifact* artifact = Select(version, platform, arch);
        if (artifact == nullptr) continue;
        v1::Manifest m;
        m.set_tier(binding.tier());
        m.set_channel(binding.channel());
        m.set_platform(platform);
        m.set_arch(arch);
        m.set_model(ModelName(parsed->model));
        m.set_version(version.name());
        v1::ManifestArtifact* out = m.mutable_artifact();
        out->set_digest(artifact->digest());
        out->set_size_bytes(artifact->size_bytes());
        out->set_format(artifact->format());
        out->set_platform(artifact->platform());
        out->set_arch(artifact->arch());
        out->set_chunk_size(options_.chunk_size);
        out->add_sources()->set_artifact_service(options_.public_address);
        *m.mutable_issued_at() = ToProto(now);
        *m.mutable_expires_at() = ToProto(now + options_.ttl);
        m.set_sequence(binding.sequence());
        snapshot->answers[Key{binding.tier(), binding.channel(), platform, arch}] = Sign(m);
      }
    }
  }
  absl::MutexLock lock(&mu_);
  snapshot_ = std::move(snapshot);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const v1::SignedManifest>> ManifestCache::Lookup(
    const std::string& tier, const std::string& channel, v1::Platform platform,
    v1::Arch arch) const {
  std::shared_ptr<const Snapshot> snapshot;
  {
    absl::ReaderMutexLock lock(&mu_);
    snapshot = snapshot_;
  }
  auto it = snapshot->answers.find(Key{tier, channel, platform, arch});
  if (it != snapshot->answers.end()) return it->second;

  auto offer = snapshot->offers.find({tier, channel});
  if (offer == snapshot->offers.end()) {
    return MakeError(absl::StatusCode::kNotFound, "TIER_NOT_BOUND",
                     absl::StrCat("tier \"", tier, "\" on channel \"", channel,
                                  "\" is not bound to a published version"),
                     {{"tier", tier}, {"channel", channel}});
  }
  return MakeError(absl::StatusCode::kNotFound, "NO_ARTIFACT_FOR_TARGET",
                   absl::StrCat(offer->second.first, " (tier \"", tier, "\", channel \"", channel,
                                "\") has no artifact for ", v1::Platform_Name(platform), "/",
                                v1::Arch_Name(arch), "; it has: ", offer->second.second),
                   {{"tier", tier},
                    {"channel", channel},
                    {"platform", v1::Platform_Name(platform)},
                    {"arch", v1::Arch_Name(arch)}});
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
