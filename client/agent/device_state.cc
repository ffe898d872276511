#include "client/agent/device_state.h"

#include <grpcpp/grpcpp.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "client/rpc/trust_walk.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/names.h"
#include "common/status.h"
#include "common/trust.h"

namespace modeldist::agent {
namespace {

// What a manifest makes the device install, as a SHA-256 (hex) over a canonical string of its
// model, version and artifact digest, size, format, platform and arch: the content that one
// sequence must always name (see CheckSequenceNotReused).
//
// Not the manifest's bytes with issued_at/expires_at cleared, because:
// * the server re-signs the same binding with the same sequence for freshness, and the rest of
//   the manifest may differ between those re-signs without changing what is installed: the
//   sources (a restarted server with another public address, mirrors), and what is derived from
//   the digest or only steers selection and preflight (chunk chain, constraints, unpacked size);
// * protobuf serialization is not canonical (unknown fields of a newer server, another library
//   version), so an agent update could see a re-sign of the installed version as "different".
// Each field is length-prefixed so that no two manifests give the same string; enums are their
// wire numbers, which the proto contract keeps stable.
std::string InstallFingerprint(const v1::Manifest& manifest) {
  const v1::ManifestArtifact& artifact = manifest.artifact();
  std::string canonical = "modeldist-install-v1\n";
  auto add = [&canonical](absl::string_view name, absl::string_view value) {
    absl::StrAppend(&canonical, name, " ", value.size(), ":", value, "\n");
  };
  add("model", manifest.model());
  add("version", manifest.version());
  add("digest", artifact.digest());
  add("size_bytes", absl::StrCat(artifact.size_bytes()));
  add("format", absl::StrCat(static_cast<int>(artifact.format())));
  add("platform", absl::StrCat(static_cast<int>(artifact.platform())));
  add("arch", absl::StrCat(static_cast<int>(artifact.arch())));
  return Sha256::HexOf(canonical);
}

// The highest sequence seen per tier/channel and what it installs, persisted atomically in
// DIR/trust/sequence, one line per tier/channel:
//   <tier> <channel> <highest sequence> <install fingerprint> <version>
// <version> is only for messages: the manifest's version when it is a version resource name
// (which cannot hold a space), else `-`. Lines of three fields, written by agents before the
// fingerprint, still load: they have no fingerprint (see CheckSequenceNotReused).
class SequenceStore {
 public:
  struct Seen {
    int64_t sequence = 0;     // 0: none yet
    std::string fingerprint;  // InstallFingerprint; "" when not recorded
    std::string version;      // "" when not recorded
  };

  explicit SequenceStore(std::string path) : path_(std::move(path)) {}

  absl::StatusOr<Seen> Get(const std::string& tier, const std::string& channel) {
    MD_RETURN_IF_ERROR(Read());
    auto it = seen_.find(Key(tier, channel));
    return it == seen_.end() ? Seen{} : it->second;
  }

  // A tier/channel recorded other than (tier, channel), as "<tier> <channel>"; "" when none.
  absl::StatusOr<std::string> OtherTarget(const std::string& tier, const std::string& channel) {
    MD_RETURN_IF_ERROR(Read());
    for (const auto& [key, seen] : seen_) {
      if (key != Key(tier, channel)) return key;
    }
    return std::string();
  }

  // Records `manifest` (already checked: not lower, not another content at an equal sequence)
  // when its sequence is higher than the one seen, or equal to one recorded without a
  // fingerprint.
  absl::Status Record(const std::string& tier, const std::string& channel,
                      const v1::Manifest& manifest) {
    MD_RETURN_IF_ERROR(Read());
    Seen& slot = seen_[Key(tier, channel)];
    if (manifest.sequence() < slot.sequence ||
        (manifest.sequence() == slot.sequence && !slot.fingerprint.empty())) {
      return absl::OkStatus();
    }
    slot.sequence = manifest.sequence();
    slot.fingerprint = InstallFingerprint(manifest);
    slot.version = ParseVersionName("version", manifest.version()).ok() ? manifest.version() : "";
    std::string out;
    for (const auto& [key, seen] : seen_) {
      absl::StrAppend(&out, key, " ", seen.sequence);
      if (!seen.fingerprint.empty()) {
        absl::StrAppend(&out, " ", seen.fingerprint, " ",
                        seen.version.empty() ? "-" : seen.version);
      }
      absl::StrAppend(&out, "\n");
    }
    MD_RETURN_IF_ERROR(MakeDirs(path_.substr(0, path_.rfind('/')), 0700));
    return WriteFileAtomically(path_, out, 0600);
  }

 private:
  static std::string Key(const std::string& tier, const std::string& channel) {
    return absl::StrCat(tier, " ", channel);  // ids cannot contain spaces
  }
  static bool IsFingerprint(absl::string_view text) {
    return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
             return absl::ascii_isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
           });
  }
  absl::Status Read() {
    if (loaded_) return absl::OkStatus();
    auto contents = ReadFileToString(path_);
    if (!contents.ok() && !absl::IsNotFound(contents.status())) return contents.status();
    if (contents.ok()) {
      for (absl::string_view line : absl::StrSplit(*contents, '\n', absl::SkipEmpty())) {
        std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
        Seen seen;
        if ((parts.size() != 3 && parts.size() != 5) ||
            !absl::SimpleAtoi(parts[2], &seen.sequence) ||
            (parts.size() == 5 && !IsFingerprint(parts[3]))) {
          return MakeError(absl::StatusCode::kDataLoss, "STATE_CORRUPT",
                           absl::StrCat(path_,
                                        " is corrupt; it records the highest manifest "
                                        "sequence seen and must not be edited"));
        }
        if (parts.size() == 5) {
          seen.fingerprint = std::string(parts[3]);
          if (parts[4] != "-") seen.version = std::string(parts[4]);
        }
        seen_[absl::StrCat(parts[0], " ", parts[1])] = std::move(seen);
      }
    }
    loaded_ = true;
    return absl::OkStatus();
  }

  std::string path_;
  bool loaded_ = false;
  std::map<std::string, Seen> seen_;
};

// CheckManifestFreshness refuses a sequence lower than the highest seen; this refuses an equal
// one that installs something else than what was accepted with it. The server gives every
// change of a binding a new sequence and re-signs an unchanged binding with the same one, so an
// equal sequence naming other content is a sequence issued twice (a server restored from a
// backup re-issuing numbers) or a replay of such an answer: taking it would let the device go
// back, or sideways, without the sequence ever going up.
//
// An equal sequence recorded without a fingerprint (by an agent before this rule) is accepted
// and then recorded: that agent accepted it without saying what it named, and what the server
// sends now is most likely the same binding re-signed. Refusing would strand every updated
// device until its tier's sequence next grows; accepting trusts this one answer once, as the
// old agent did.
absl::Status CheckSequenceNotReused(const v1::Manifest& manifest, const SequenceStore::Seen& seen) {
  if (manifest.sequence() != seen.sequence || seen.fingerprint.empty() ||
      seen.fingerprint == InstallFingerprint(manifest)) {
    return absl::OkStatus();
  }
  const std::string accepted = seen.version.empty() ? "an unnamed version" : seen.version;
  const std::string what = seen.version == manifest.version()
                               ? absl::StrCat("another artifact of ", accepted)
                               : absl::StrCat("a different version ", accepted);
  return MakeError(
      absl::StatusCode::kFailedPrecondition, kReasonSequenceRollback,
      absl::StrCat("sequence ", manifest.sequence(), " was already accepted for ", what,
                   "; refusing ", manifest.version(), " (", manifest.artifact().digest(),
                   ") under the same sequence: the server issued it twice (restored from a "
                   "backup?) or the answer is a replay"),
      {{"sequence", absl::StrCat(manifest.sequence())},
       {"highest_seen", absl::StrCat(seen.sequence)},
       {"accepted_version", seen.version},
       {"refused_version", manifest.version()}});
}

}  // namespace

absl::StatusOr<TrustState> TrustState::Load(const std::string& dir,
                                            const std::string& trust_root_file) {
  TrustState state;
  state.path_ = dir + "/trust/root.bin";
  auto stored = ReadFileToString(state.path_);
  std::string bytes;
  if (stored.ok()) {
    bytes = *std::move(stored);
    state.persisted_ = true;
  } else if (absl::IsNotFound(stored.status())) {
    if (trust_root_file.empty()) {
      return MakeError(absl::StatusCode::kFailedPrecondition, "NO_TRUST_ROOT",
                       "no trusted root yet: pass --trust-root FILE (from `modeldistctl keys "
                       "root --out FILE`)");
    }
    MD_ASSIGN_OR_RETURN(bytes, ReadFileToString(trust_root_file));
  } else {
    return stored.status();
  }
  v1::SignedTrustRoot signed_root;
  if (!signed_root.ParseFromString(bytes)) {
    return MakeError(absl::StatusCode::kInvalidArgument, "MALFORMED_ROOT",
                     "the trust root file is not a SignedTrustRoot");
  }
  MD_ASSIGN_OR_RETURN(state.root_, VerifyFirstRoot(signed_root));
  state.signed_ = std::move(signed_root);
  return state;
}

absl::Status TrustState::Advance(v1::ManifestService::Stub& stub) {
  MD_ASSIGN_OR_RETURN(bool changed, rpc::AdvanceTrustRoot(stub, &root_, &signed_));
  if (!changed) return absl::OkStatus();
  return Persist();
}

absl::Status TrustState::AdvanceTo(const v1::SignedTrustRoot& next) {
  MD_ASSIGN_OR_RETURN(root_, VerifyNextRoot(root_, next));
  signed_ = next;
  return Persist();
}

// Atomic (a crash leaves the old file or the new one, never a torn root) and 0600 in a 0700
// folder: the root decides which keys the device obeys.
absl::Status TrustState::Persist() {
  MD_RETURN_IF_ERROR(MakeDirs(path_.substr(0, path_.rfind('/')), 0700));
  MD_RETURN_IF_ERROR(WriteFileAtomically(path_, signed_.SerializeAsString(), 0600));
  persisted_ = true;
  return absl::OkStatus();
}

absl::StatusOr<AcceptedManifest> AcceptManifest(TrustState& trust, const std::string& dir,
                                                const v1::SignedManifest& signed_manifest,
                                                const ManifestTarget& target,
                                                const AcceptRules& rules) {
  AcceptedManifest accepted;
  MD_ASSIGN_OR_RETURN(accepted.manifest, VerifyManifest(trust.root(), signed_manifest));
  MD_RETURN_IF_ERROR(trust.PersistIfPinned());
  const v1::Manifest& manifest = accepted.manifest;
  MD_RETURN_IF_ERROR(
      CheckManifestTarget(manifest, target.tier, target.channel, target.platform, target.arch));
  SequenceStore sequences(dir + "/trust/sequence");
  // The tier/channel the dir follows: the one it accepted last (DIR/trust/target); for a dir
  // from before that file, any it recorded a sequence for. AcceptRules::same_target_only says
  // why a bundle must match it.
  const std::string target_path = dir + "/trust/target";
  const std::string wanted = absl::StrCat(target.tier, "/", target.channel);
  std::string followed;
  if (absl::StatusOr<std::string> stored = ReadFileToString(target_path); stored.ok()) {
    followed = std::string(absl::StripAsciiWhitespace(*stored));
  } else if (absl::IsNotFound(stored.status())) {
    MD_ASSIGN_OR_RETURN(followed, sequences.OtherTarget(target.tier, target.channel));
    followed = absl::StrReplaceAll(followed, {{" ", "/"}});
  } else {
    return stored.status();
  }
  if (rules.same_target_only && !followed.empty() && followed != wanted) {
    return MakeError(absl::StatusCode::kFailedPrecondition, kReasonWrongTarget,
                     absl::StrCat(dir, " follows tier/channel ", followed, "; refusing ",
                                  manifest.version(), " of ", wanted,
                                  ": a bundle must be for the tier and channel the dir follows "
                                  "(its one active model). Use another --dir for ",
                                  wanted, ", or sync it to move the dir there"),
                     {{"dir_target", followed}, {"manifest_target", wanted}});
  }
  MD_ASSIGN_OR_RETURN(SequenceStore::Seen seen, sequences.Get(target.tier, target.channel));
  accepted.highest_seen = seen.sequence;
  accepted.seen_version = seen.version;
  if (rules.report_older && manifest.sequence() < seen.sequence) {
    accepted.older = true;
    return accepted;
  }
  absl::Status fresh = CheckManifestFreshness(manifest, rules.now, rules.clock_skew, seen.sequence);
  if (rules.waive_expiry && ErrorReason(fresh) == kReasonManifestExpired) {
    accepted.expiry_waived = true;
    // Every other rule still holds: check again with the expiry out of the picture.
    fresh = CheckManifestFreshness(manifest, absl::InfinitePast(), rules.clock_skew, seen.sequence);
  }
  MD_RETURN_IF_ERROR(fresh);
  MD_RETURN_IF_ERROR(CheckSequenceNotReused(manifest, seen));
  MD_RETURN_IF_ERROR(sequences.Record(target.tier, target.channel, manifest));
  if (followed != wanted) {
    MD_RETURN_IF_ERROR(WriteFileAtomically(target_path, wanted + "\n", 0600));
  }
  return accepted;
}

absl::Status CheckDisk(const std::string& dir, const v1::ManifestArtifact& artifact) {
  struct statvfs fs;
  if (::statvfs(dir.c_str(), &fs) != 0) return ErrnoStatus(errno, absl::StrCat("statvfs ", dir));
  const int64_t free_bytes = static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
  const int64_t unpacked =
      artifact.unpacked_size_bytes() > 0 ? artifact.unpacked_size_bytes() : artifact.size_bytes();
  // The download and its unpacked copy coexist until the zip is removed after activation.
  const int64_t needed =
      artifact.size_bytes() + (artifact.format() == v1::FORMAT_COREML_ZIP ? unpacked : 0);
  if (free_bytes < needed) {
    return MakeError(absl::StatusCode::kResourceExhausted, "INSUFFICIENT_DISK",
                     absl::StrCat("need ", needed, " bytes free in ", dir, ", have ", free_bytes),
                     {{"needed", absl::StrCat(needed)}, {"free", absl::StrCat(free_bytes)}});
  }
  return absl::OkStatus();
}

}  // namespace modeldist::agent
