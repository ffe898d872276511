// File: agent.h
//
// The device agent: one `Sync` brings a tier's model on this device to what the server says,
// safely. Before any byte is trusted the signed manifest is checked against the trusted root
// (following root rotations), its expiry (clock skew allowance fixed at the start of the
// sync), its target (tier, channel, platform, arch) and its sequence: never lower than the
// highest seen, and when equal, for the same content as was accepted with it (a sequence is
// never reused for something else). Then the artifact is downloaded chunk by chunk with
// resume (chunk_downloader.h) and activated atomically (ModelStore::ActivatePartial, whose
// header lists the steps and what a crash at each leaves). The trust and sequence checks are
// device_state.h's AcceptManifest, which a bundle install (bundle_install.h) passes too.
//
// State under `dir` (files written atomically, 0600 in a 0700 trust/):
//   trust/root.bin    the trusted SignedTrustRoot: the pinned --trust-root file, kept once a
//                     manifest verified under it, or the newest root chained from it. When
//                     present it is used and `trust_root_file` is not read; delete it to pin
//                     another root.
//   trust/sequence    per tier/channel "<tier> <channel> <highest sequence> <install
//                     fingerprint> <version>": the fingerprint is a SHA-256 of what the
//                     manifest installs (model, version, artifact digest, size, format,
//                     platform, arch); lines of older agents have the first three fields only.
//   versions/, current, previous, staging/   see model_store.h
//   trial, rejected, trial.lock              the trial of `current`, see trial_state.h
//   reports/          status reports not yet accepted by the server, see report_queue.h
#ifndef MODELDIST_CLIENT_AGENT_AGENT_H_
#define MODELDIST_CLIENT_AGENT_AGENT_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/agent/chunk_downloader.h"
#include "client/agent/model_store.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist::agent {

struct SyncOptions {
  // host:port of modeldist-server.
  std::string server;
  // PEM CA bundle for TLS to the server and https mirrors; empty = plaintext gRPC.
  std::string tls_ca_file;
  std::string tier;
  std::string channel;  // empty = stable
  // Where models and state live.
  std::string dir;
  // A SignedTrustRoot file pinned out of band (`modeldistctl keys root --out`); read only when
  // `dir` has no trusted root yet (trust/root.bin), which it becomes once a manifest verified
  // under it: later syncs may leave this empty.
  std::string trust_root_file;
  // Unspecified = detected from this machine.
  v1::Platform platform = v1::PLATFORM_UNSPECIFIED;
  v1::Arch arch = v1::ARCH_UNSPECIFIED;
  std::string device_id;  // empty = none (never in a partial rollout)
  v1::DeviceInfo device;
  // How far the device clock may be behind the server's without refusing a fresh manifest.
  absl::Duration clock_skew = absl::Minutes(5);
  ChunkDownloadOptions download;
  // A version this sync activates is on trial until the app confirms it loads (trial.h);
  // unconfirmed past these limits it is rolled back. 0/0 (the default): only a reported load
  // failure rolls it back.
  TrialLimits trial;
  // Called with the manifest once it is accepted, before its artifact is fetched: a failure
  // after it is about this version (reporting.h names it in the SYNC_FAILED report).
  std::function<void(const v1::Manifest&)> on_manifest;
  // Called once its artifact is downloaded and verified, before it is activated (reporting.h
  // queues DOWNLOADED and VERIFIED here, so that they precede the trial's ACTIVATED).
  std::function<void(const v1::Manifest&)> on_verified;
  // Off: this sync queues no status reports (the trial's ACTIVATED, ROLLED_BACK), as
  // ReportingOptions::enabled off (reporting.h). Reports also need a device_id.
  bool queue_reports = true;
  // The clock, for tests.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

// What a sync did.
struct SyncResult {
  enum class Action { kUpToDate, kActivated };
  Action action = Action::kUpToDate;
  v1::Manifest manifest;
  InstalledVersion installed;
  ChunkDownloadStats download;
  std::string selection_reason;
  // The manifest names a digest rolled back on this device (trial.h): nothing was installed
  // (kUpToDate; `installed` is the current version, empty when there is none) and
  // selection_reason says so.
  bool held_back = false;
  // The version a trial past its time limit was rolled back from at the start of this sync,
  // and why; "" when none.
  std::string rolled_back;
  std::string rollback_reason;
  // A status report that could not be queued (the sync's result stands); "" when none.
  std::string report_error;
};

// Brings the model up to date. Errors carry an ErrorInfo reason (common/status.h) that
// ExitCodeFor maps to a distinct process exit code:
// * SIGNATURE_THRESHOLD_NOT_MET / ROOT_*: PERMISSION_DENIED, nothing downloaded.
// * MANIFEST_EXPIRED, SEQUENCE_ROLLBACK (a lower sequence, or an equal one for other content),
//   WRONG_TARGET: FAILED_PRECONDITION, nothing downloaded.
// * NO_TRUST_ROOT: FAILED_PRECONDITION when `dir` has no root and no `trust_root_file` is given.
// * INSUFFICIENT_DISK: RESOURCE_EXHAUSTED before downloading.
// * download and activation errors as their components return them; the old model stays.
// A new version becomes current on trial (trial.h): the app confirms it with
// md_agent_confirm_loaded / `modeldist-agent confirm`, or reports a failure, which rolls back.
// A trial past its time limit is rolled back at the start of a sync, and a digest rolled back
// is not installed again while the manifest names it (held_back).
absl::StatusOr<SyncResult> Sync(const SyncOptions& options);

// Detects this machine's platform and architecture (uname).
v1::Platform DetectPlatform();
v1::Arch DetectArch();

// Process exit codes of modeldist-agent, one per failure class (documented in docs/agent.md).
int ExitCodeFor(const absl::Status& status);

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_AGENT_H_
