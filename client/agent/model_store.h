// File: model_store.h
//
// The on-device layout of installed models for one tier, and the one door through which a
// verified download becomes the active model.
//
//   <dir>/versions/<version-key>/          one folder per installed version (complete, verified)
//         model.gguf | model/<unzipped CoreML package>   the activated content
//         INSTALLED                         written last: the folder is complete
//   <dir>/current -> versions/<key>         the active version (symlink replaced by rename)
//   <dir>/previous -> versions/<key>        the one before, kept for rollback
//   <dir>/staging/<hex>.partial (+ .journal) a download of sha256:<hex> (PartialPath)
//   <dir>/staging/                          also activations in progress
//
// Activation of a download (ActivatePartial; Activate does steps 2-5 for any verified file):
//   1. The verified, fsynced partial gets a second name, `<hex>.partial.activating` (a hard
//      link), which activation consumes; the partial itself stays until step 6.
//   2. If `current` already is this version and digest, go to step 6; if a complete
//      `versions/<key>` of it is still installed (e.g. as `previous`), go to step 5 with that
//      folder. Otherwise a fresh work folder `staging/activate-<key>.XXXXXX` gets the content:
//      the file moved in as `model.<ext>` (rename, then chmod 0644 and fsync), or the CoreML
//      zip unpacked into `model/` (entries with `..`, absolute paths, symlinks, devices, too
//      many entries, absurd sizes or ratios are refused and nothing is installed). The work
//      folder is fsynced.
//   3. The work folder is renamed to `versions/<key>`; `staging/` and `versions/` are fsynced.
//      The folder holds the model but no INSTALLED yet, so it is not a version.
//   4. `versions/<key>/INSTALLED` is written atomically (temporary file, fsync, link to its
//      name, fsync of the folder): from here on the folder is a complete version.
//   5. `previous` is pointed at the old `current` (if that is complete and another version),
//      then `current` at `versions/<key>`: each by creating `<link>.new` and renaming it over
//      the link, so a reader sees the old target or the new one. `<dir>` is fsynced.
//   6. The `.activating` name (a zip's archive is removed after unpacking), then the partial
//      are removed.
//
// What a crash (or kill) at each point leaves, and how it is recovered: Open removes the
// leftovers, and the next sync carries on from what is on disk, never fetching a chunk that
// was verified before the crash (tests/client/agent/agent_kill_test.cc).
//   * In steps 1-2: a work folder in `staging/activate-*`, which Open removes. The partial is
//     still complete: the next sync re-verifies it from disk (no byte fetched) and activates
//     again.
//   * After step 3, before INSTALLED is in place: the folder in `versions/` has no INSTALLED,
//     so no link can name it (links move only in step 5); Open removes it, and the complete
//     partial is activated again.
//   * After step 4, before or between the renames of step 5: `current` still names the old
//     complete version (between the two renames, `previous` and `current` both name it). The
//     next sync re-verifies the partial and only switches the links (step 2's shortcut); Open
//     removes a leftover `current.new` / `previous.new`.
//   * After step 5: the new version is current. The next sync is up to date, and
//     CurrentIfInstalled removes the partial that step 6 did not get to. Until then that
//     partial is a hard link of the installed model file: a download of the same digest may
//     read it, but repairs it only in a copy of its own (client/agent/chunk_downloader.h), so
//     the installed file never changes through it.
// Before the fsync of `<dir>` in step 5 a power loss may undo a rename; either way `current`
// names a complete version, the old or the new one. After any crash `current` names a
// complete version.
//
// Trials (client/agent/trial.h; the files in trial_state.h). A sync activates on trial: in
// step 5, before any link moves, the trial record `<dir>/trial` is written naming the new key
// and `confirmed`, the rollback target: the old current when it was confirmed (no trial
// open), else the open trial's `confirmed`. Then `previous` moves to the old current only when
// that was confirmed, so `previous` always names a confirmed version (or one that was current
// before trials existed). `current` is on trial exactly when a record exists and `current` is
// not its `confirmed`. Confirming removes the record. A rollback (1) records the rejected
// digest for the tier/channel in `<dir>/rejected`, (2) points `current` at `confirmed` (or
// removes `current` when there is none: the app sees no model rather than one that failed),
// (3) removes the record. What a crash leaves, and what the next launch query, confirm or sync
// (trial.h's RecoverTrial, under `<dir>/trial.lock`) makes of it:
//   * Record written, links not moved: `current` is the record's `confirmed` (it was
//     confirmed): the record is removed, nothing was activated. Or `current` is an earlier
//     version still on trial whose record was replaced: a record for it is written again (its
//     launches and clock start over: a crash can only lengthen a trial).
//   * Between the renames of step 5: `previous` and `current` both name the old current; as
//     above.
//   * After step 5: the new version is on trial; its record is complete.
//   * Confirm: the record is there (still on trial) or not (confirmed); unlink is atomic.
//   * Rollback after (1), before (2): `current` is on trial and its digest is rejected: the
//     rollback is redone. After (2), before (3): `current` is `confirmed`: the record is
//     removed. Either way `current` ends on the version confirmed before (or on none).
//   * Launch counting rewrites the record atomically: the old count or the new one.
#ifndef MODELDIST_CLIENT_AGENT_MODEL_STORE_H_
#define MODELDIST_CLIENT_AGENT_MODEL_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/agent/trial_state.h"  // TrialLimits
#include "client/agent/unzip.h"        // UnzipLimits
#include "common/fs.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::agent {

struct InstalledVersion {
  std::string key;      // folder name under versions/
  std::string version;  // models/{model}/versions/{version}
  std::string digest;   // sha256:<hex> of the artifact it was made from
  v1::Format format = v1::FORMAT_UNSPECIFIED;
  std::string path;  // absolute path of the activated content
};

// What a sync's activations put on trial: the target they were synced for, when, and the
// limits after which an unconfirmed version is rolled back (trial.h).
struct TrialStart {
  std::string tier;
  std::string channel;
  absl::Time now = absl::UnixEpoch();
  TrialLimits limits;
};

class ModelStore {
 public:
  // Opens (creating) the layout under `dir`, removing leftovers of a crash: activation work
  // folders in staging/, temporary links and version folders without INSTALLED. Other files
  // in staging/ (downloads being resumed) are kept; CollectGarbage removes them.
  // Its writes go through `io` (common/fs.h; null: the real file system), so tests can make
  // them fail (tests/testing/fault_fs.h).
  static absl::StatusOr<ModelStore> Open(const std::string& dir, Fs* io = nullptr);

  // Where a download of `digest` (sha256:<hex>) keeps its bytes until ActivatePartial:
  // staging/<hex>.partial. INVALID_ARGUMENT for a malformed digest.
  absl::StatusOr<std::string> PartialPath(const std::string& digest) const;

  // The current version when it is `version` with `digest` (nothing to download), after
  // removing the partial of `digest` that a crash after activation may have left (see the
  // crash cases above); nullopt otherwise.
  std::optional<InstalledVersion> CurrentIfInstalled(const std::string& version,
                                                     const std::string& digest);

  // Activates the partial download of `digest` (PartialPath), whose every byte the caller
  // verified against `digest` and made durable, as `version`: steps 1-6 above, so that a crash
  // at any point leaves `current` on a complete version and the partial (or the installed
  // version) for the next sync. On success the partial is gone. Errors as Activate's; the
  // partial is kept.
  absl::StatusOr<InstalledVersion> ActivatePartial(const std::string& version,
                                                   const std::string& digest, v1::Format format,
                                                   const UnzipLimits& limits = {});

  // Installs the verified artifact file `artifact_path` (moved, not copied) as `version`
  // (steps 2-5 above; a download goes through ActivatePartial):
  // GGUF and other single files are placed as `model.<ext>`; FORMAT_COREML_ZIP is unpacked
  // (entries with `..`, absolute paths, symlinks, devices, too many entries or absurd sizes or
  // ratios are refused with INVALID_ARGUMENT / RESOURCE_EXHAUSTED and nothing is installed).
  // Then makes it current and the old current previous (unless a trial is open: see Trials
  // above). Idempotent for the current version;
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

  // From now on activations of another version than `current` put it on trial (the trial
  // notes above). Without it an activation starts no trial (the new version counts as
  // confirmed, e.g. tools and tests) unless one is open, which then goes on with the new
  // version (the open trial's tier, channel and limits), so that `previous` never becomes an
  // unconfirmed version.
  void StartTrials(TrialStart start) { trial_ = std::move(start); }

  std::optional<InstalledVersion> Current() const;
  std::optional<InstalledVersion> Previous() const;
  // The complete version in versions/`key`, nullopt when there is none.
  std::optional<InstalledVersion> Installed(const std::string& key) const;
  // Points `current` at the complete version `key` (link renamed over, as in step 5; `previous`
  // untouched), or removes `current` when `key` is empty. The door a trial's rollback goes
  // through (trial.h). FAILED_PRECONDITION (VERSION_NOT_INSTALLED) for an incomplete `key`.
  absl::Status SetCurrent(const std::string& key);
  // Makes `previous` current again (and the old current previous), for tools; it knows
  // nothing of trials (a trial's rollback is trial.h's). FAILED_PRECONDITION
  // (NO_PREVIOUS_VERSION) when there is no complete previous version.
  absl::Status Rollback();
  // Removes every version folder that is neither current nor previous (nor an open trial's
  // rollback target), and everything in
  // staging/ (including partial downloads: call it when no download is in progress).
  // Returns the bytes freed (sum of the removed files' sizes).
  absl::StatusOr<int64_t> CollectGarbage();
  // Every installed (complete) version, ordered by key.
  std::vector<InstalledVersion> List() const;

  const std::string& dir() const { return dir_; }
  std::string StagingDir() const { return dir_ + "/staging"; }

 private:
  ModelStore(std::string dir, Fs* io) : dir_(std::move(dir)), fs_(io) {}
  std::string dir_;
  Fs* fs_;
  std::optional<TrialStart> trial_;
};

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_MODEL_STORE_H_
