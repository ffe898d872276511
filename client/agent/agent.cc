#include "client/agent/agent.h"

#include <grpcpp/grpcpp.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/rpc/channel.h"
#include "client/rpc/trust_walk.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/grpc_status.h"
#include "common/names.h"
#include "common/status.h"
#include "common/trust.h"
#include "modeldist/v1/manifest.grpc.pb.h"

namespace modeldist::agent {
namespace {

// The manifests of 16 GiB artifacts are ~140 KiB; gRPC's 4 MiB default leaves room, this
// leaves more for a manifest listing many sources.
constexpr int kMaxManifestBytes = 16 * 1024 * 1024;

absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const SyncOptions& options) {
  return rpc::MakeChannel({.target = options.server,
                           .tls_ca_file = options.tls_ca_file,
                           .max_receive_message_bytes = kMaxManifestBytes});
}

// The trusted root, advanced along the server's chain and persisted in DIR/trust/root.bin.
//
// DIR/trust/root.bin, when present, is the root and the pinned --trust-root file is not read:
// the stored root is at least as trusted (it is the pinned root itself or a root chained from
// it) and usually newer. To pin another root, delete DIR/trust/root.bin.
//
// A pinned root read from --trust-root is kept in DIR/trust/root.bin once it has vouched for a
// manifest of this server (PersistIfPinned, called after VerifyManifest), so later syncs need
// no --trust-root. Not earlier: a self-signed root of another server (a wrong file) verifies on
// its own too, and keeping it would make every later sync use it even after the right file is
// passed.
class TrustState {
 public:
  static absl::StatusOr<TrustState> Load(const SyncOptions& options) {
    TrustState state;
    state.path_ = options.dir + "/trust/root.bin";
    auto stored = ReadFileToString(state.path_);
    std::string bytes;
    if (stored.ok()) {
      bytes = *std::move(stored);
      state.persisted_ = true;
    } else if (absl::IsNotFound(stored.status())) {
      if (options.trust_root_file.empty()) {
        return MakeError(absl::StatusCode::kFailedPrecondition, "NO_TRUST_ROOT",
                         "no trusted root yet: pass --trust-root FILE (from `modeldistctl keys "
                         "root --out FILE`)");
      }
      MD_ASSIGN_OR_RETURN(bytes, ReadFileToString(options.trust_root_file));
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

  // Walks GetTrustRoot(N+1), N+2, ... verifying each against the one before, and persists the
  // newest (chained from the trusted root, so as trusted as it).
  absl::Status Advance(v1::ManifestService::Stub& stub) {
    MD_ASSIGN_OR_RETURN(bool changed, rpc::AdvanceTrustRoot(stub, &root_, &signed_));
    if (!changed) return absl::OkStatus();
    return Persist();
  }

  // Keeps the root read from --trust-root: call once a manifest verified under it.
  absl::Status PersistIfPinned() { return persisted_ ? absl::OkStatus() : Persist(); }

  const v1::TrustRoot& root() const { return root_; }

 private:
  // Atomic (a crash leaves the old file or the new one, never a torn root) and 0600 in a 0700
  // folder: the root decides which keys the device obeys.
  absl::Status Persist() {
    MD_RETURN_IF_ERROR(MakeDirs(path_.substr(0, path_.rfind('/')), 0700));
    MD_RETURN_IF_ERROR(WriteFileAtomically(path_, signed_.SerializeAsString(), 0600));
    persisted_ = true;
    return absl::OkStatus();
  }

  std::string path_;
  v1::SignedTrustRoot signed_;
  v1::TrustRoot root_;
  bool persisted_ = false;  // signed_ is what root.bin holds
};

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

}  // namespace

v1::Platform DetectPlatform() {
#if defined(__APPLE__)
  return v1::PLATFORM_MACOS;
#elif defined(__ANDROID__)
  return v1::PLATFORM_ANDROID;
#elif defined(_WIN32)
  return v1::PLATFORM_WINDOWS;
#else
  return v1::PLATFORM_LINUX;
#endif
}

v1::Arch DetectArch() {
  struct utsname u;
  if (::uname(&u) != 0) return v1::ARCH_UNSPECIFIED;
  const std::string machine = u.machine;
  if (machine == "x86_64" || machine == "amd64") return v1::ARCH_X86_64;
  if (machine == "arm64" || machine == "aarch64") return v1::ARCH_ARM64;
  return v1::ARCH_UNSPECIFIED;
}

absl::StatusOr<SyncResult> Sync(const SyncOptions& options) {
  // One clock reading for the whole sync: a long download must not turn a manifest that was
  // fresh when checked into "expired" half-way, nor a stale one fresh.
  const absl::Time now = options.now();
  MD_RETURN_IF_ERROR(ValidateId("tier", options.tier));
  const std::string channel =
      options.channel.empty() ? std::string(kDefaultChannel) : options.channel;
  MD_RETURN_IF_ERROR(ValidateId("channel", channel));
  if (options.dir.empty()) return InvalidArgument("dir", "MISSING_DIR", "--dir is required");
  const v1::Platform platform =
      options.platform != v1::PLATFORM_UNSPECIFIED ? options.platform : DetectPlatform();
  const v1::Arch arch = options.arch != v1::ARCH_UNSPECIFIED ? options.arch : DetectArch();
  MD_RETURN_IF_ERROR(MakeDirs(options.dir, 0755));

  MD_ASSIGN_OR_RETURN(TrustState trust, TrustState::Load(options));
  MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel_to_server, Connect(options));
  auto stub = v1::ManifestService::NewStub(channel_to_server);
  MD_RETURN_IF_ERROR(trust.Advance(*stub));

  v1::GetManifestRequest request;
  request.set_tier(options.tier);
  request.set_channel(channel);
  request.set_platform(platform);
  request.set_arch(arch);
  request.set_device_id(options.device_id);
  *request.mutable_device() = options.device;
  v1::SignedManifest signed_manifest;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status s = stub->GetManifest(&context, request, &signed_manifest);
    if (!s.ok()) return FromGrpcStatus(s, "GetManifest");
  }

  SyncResult result;
  result.selection_reason = signed_manifest.selection_reason();
  MD_ASSIGN_OR_RETURN(result.manifest, VerifyManifest(trust.root(), signed_manifest));
  MD_RETURN_IF_ERROR(trust.PersistIfPinned());
  const v1::Manifest& manifest = result.manifest;
  MD_RETURN_IF_ERROR(CheckManifestTarget(manifest, options.tier, channel, platform, arch));
  SequenceStore sequences(options.dir + "/trust/sequence");
  MD_ASSIGN_OR_RETURN(SequenceStore::Seen seen, sequences.Get(options.tier, channel));
  MD_RETURN_IF_ERROR(CheckManifestFreshness(manifest, now, options.clock_skew, seen.sequence));
  MD_RETURN_IF_ERROR(CheckSequenceNotReused(manifest, seen));
  MD_RETURN_IF_ERROR(sequences.Record(options.tier, channel, manifest));

  MD_ASSIGN_OR_RETURN(ModelStore store, ModelStore::Open(options.dir));
  if (std::optional<InstalledVersion> current =
          store.CurrentIfInstalled(manifest.version(), manifest.artifact().digest())) {
    result.installed = *std::move(current);
    return result;
  }
  MD_ASSIGN_OR_RETURN(const std::string partial, store.PartialPath(manifest.artifact().digest()));
  MD_RETURN_IF_ERROR(CheckDisk(options.dir, manifest.artifact()));

  // Sources: an empty artifact_service means "the server asked".
  std::vector<std::unique_ptr<ByteSource>> owned;
  auto add_grpc_source = [&](const std::string& target) -> absl::Status {
    MD_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> source,
                        NewGrpcSource(target, options.tls_ca_file));
    owned.push_back(std::move(source));
    return absl::OkStatus();
  };
  // The unsigned mirrors first (the server's origins and CDNs: the point of them is to carry
  // the bytes), then the manifest's own sources. Every chunk is checked against the signed
  // chain whatever the source, and a chunk a mirror fails is fetched from the next source.
  for (const v1::Source& source : signed_manifest.mirrors()) {
    if (source.has_http_url()) {
      owned.push_back(NewHttpSource(source.http_url(), options.tls_ca_file));
    }
  }
  for (const v1::Source& source : manifest.artifact().sources()) {
    if (source.has_artifact_service()) {
      MD_RETURN_IF_ERROR(add_grpc_source(
          source.artifact_service().empty() ? options.server : source.artifact_service()));
    } else if (source.has_http_url()) {
      owned.push_back(NewHttpSource(source.http_url(), options.tls_ca_file));
    }
  }
  if (owned.empty()) MD_RETURN_IF_ERROR(add_grpc_source(options.server));
  std::vector<ByteSource*> sources;
  for (auto& s : owned) sources.push_back(s.get());

  MD_ASSIGN_OR_RETURN(result.download,
                      DownloadChunks(manifest.artifact(), sources, partial, options.download));
  MD_ASSIGN_OR_RETURN(result.installed,
                      store.ActivatePartial(manifest.version(), manifest.artifact().digest(),
                                            manifest.artifact().format()));
  result.action = SyncResult::Action::kActivated;
  return result;
}

int ExitCodeFor(const absl::Status& status) {
  if (status.ok()) return 0;
  const std::string reason = ErrorReason(status);
  if (reason == "SIGNATURE_THRESHOLD_NOT_MET") return 10;
  if (reason.rfind("ROOT_", 0) == 0 || reason == "MALFORMED_ROOT" || reason == "NO_TRUST_ROOT") {
    return 11;
  }
  if (reason == "MANIFEST_EXPIRED") return 12;
  if (reason == "SEQUENCE_ROLLBACK") return 13;
  if (reason == "WRONG_TARGET") return 14;
  if (reason == "MALFORMED_MANIFEST") return 15;
  if (reason == "INSUFFICIENT_DISK") return 16;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return 2;
    case absl::StatusCode::kNotFound:
      return 3;
    case absl::StatusCode::kDataLoss:
      return 20;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return 21;
    case absl::StatusCode::kResourceExhausted:
      return 16;
    default:
      return 1;
  }
}

}  // namespace modeldist::agent
