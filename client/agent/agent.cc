#include "client/agent/agent.h"

#include <grpcpp/grpcpp.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/agent/device_state.h"
#include "client/agent/trial.h"
#include "client/agent/trial_state.h"
#include "client/rpc/channel.h"
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
  TrialOptions trial_options{options.dir, options.tier, channel, platform, arch};
  // Reports go with a device id, unless turned off (reporting.h).
  trial_options.queue_reports = options.queue_reports && !options.device_id.empty();
  trial_options.now = [now] { return now; };
  SyncResult result;
  // A trial whose time is up is rolled back before anything else (trial.h). Only a trial
  // record can need it: without one a sync does not open the store twice.
  if (ReadTrial(options.dir).has_value()) {
    MD_ASSIGN_OR_RETURN(TrialState trial, SettleTrial(trial_options));
    if (trial.rolled_back) {
      result.rolled_back = trial.rolled_back->version;
      result.rollback_reason = trial.rollback_reason;
    }
  }

  MD_ASSIGN_OR_RETURN(TrustState trust, TrustState::Load(options.dir, options.trust_root_file));
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

  result.selection_reason = signed_manifest.selection_reason();
  MD_ASSIGN_OR_RETURN(
      AcceptedManifest accepted,
      AcceptManifest(trust, options.dir, signed_manifest, {options.tier, channel, platform, arch},
                     {.now = now, .clock_skew = options.clock_skew}));
  result.manifest = std::move(accepted.manifest);
  const v1::Manifest& manifest = result.manifest;
  if (options.on_manifest) options.on_manifest(manifest);

  MD_ASSIGN_OR_RETURN(ModelStore store, ModelStore::Open(options.dir));
  const std::string& digest = manifest.artifact().digest();
  if (std::optional<Rejected> rejected = FindRejected(options.dir, options.tier, channel)) {
    if (rejected->digest == digest) {
      // Rolled back here: not again while the manifest names it (trial.h).
      result.held_back = true;
      result.selection_reason =
          absl::StrCat("held back: ", digest, " was rolled back on this device (", rejected->reason,
                       "); waiting for a manifest naming another artifact");
      if (std::optional<InstalledVersion> current = store.Current()) {
        result.installed = *std::move(current);
      }
      return result;
    }
    MD_RETURN_IF_ERROR(ClearRejected(options.dir, options.tier, channel));
  }
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
  if (options.on_verified) options.on_verified(manifest);
  store.StartTrials({options.tier, channel, now, options.trial});
  MD_ASSIGN_OR_RETURN(result.installed,
                      store.ActivatePartial(manifest.version(), manifest.artifact().digest(),
                                            manifest.artifact().format()));
  result.action = SyncResult::Action::kActivated;
  // A report that cannot be queued does not undo the activation.
  if (absl::Status queued =
          AppendTrialEvent(trial_options, v1::STATUS_EVENT_ACTIVATED, options.tier, channel,
                           result.installed.version, result.installed.digest, "");
      !queued.ok()) {
    result.report_error = std::string(queued.message());
  }
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
