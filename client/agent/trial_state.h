// File: trial_state.h
//
// The files that say whether `current` is on trial (client/agent/trial.h has the transitions):
//
//   <dir>/trial      the open trial, written atomically (temporary file, fsync, rename, fsync
//                    of <dir>); absent when `current` was confirmed. Lines "<field> <value>":
//                    key, version, digest, tier, channel (of the version on trial), activated
//                    (unix seconds), launches (counted so far), max_launches and
//                    timeout_seconds (the limits of the sync that activated it, 0 = none),
//                    confirmed (the key of the last confirmed version: where a rollback goes;
//                    empty when there is none).
//   <dir>/rejected   per tier/channel the digest rolled back there, which no sync installs
//                    again while the manifest names it: lines "<digest> <tier> <channel>
//                    <reason>" (an empty tier or channel written as "-"). Written atomically.
//   <dir>/trial.lock flock(2) held while a process reads and changes the trial state, so that
//                    an app counting a launch and an agent activating do not overwrite each
//                    other's record.
//
// Which version is on trial is decided by the record *and* the links together, so that a
// crash between writing one and moving the other is never misread (model_store.h, crash
// cases): `current` is on trial exactly when a record exists and `current` is not the record's
// `confirmed` key.
#ifndef MODELDIST_CLIENT_AGENT_TRIAL_STATE_H_
#define MODELDIST_CLIENT_AGENT_TRIAL_STATE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/fs.h"

namespace modeldist::agent {

// How long a version stays on trial without a confirmation before it is rolled back.
struct TrialLimits {
  int64_t max_launches = 0;                       // 0 = no limit
  absl::Duration timeout = absl::ZeroDuration();  // 0 = no limit
};

struct TrialRecord {
  std::string key;  // the folder under versions/ that is on trial
  std::string version;
  std::string digest;
  std::string tier;
  std::string channel;
  absl::Time activated = absl::UnixEpoch();
  int64_t launches = 0;
  TrialLimits limits;
  std::string confirmed;  // the rollback target's key; "" = none (a first install)
};

// The record, or nullopt when there is none. A record that does not parse (only a hand edit
// makes one: it is written atomically) counts as none.
std::optional<TrialRecord> ReadTrial(const std::string& dir);
absl::Status WriteTrial(const std::string& dir, const TrialRecord& record, Fs& io = RealFs());
// Removes the record durably (unlink, fsync of `dir`); OK when there is none.
absl::Status RemoveTrial(const std::string& dir, Fs& io = RealFs());

struct Rejected {
  std::string digest;
  std::string reason;  // why it was rolled back (LOAD_FAILED, TRIAL_EXPIRED, ...)
};
// The digest rolled back for tier/channel, or nullopt when none.
std::optional<Rejected> FindRejected(const std::string& dir, const std::string& tier,
                                     const std::string& channel);
// Records `digest` as rolled back for tier/channel (replacing an older one) durably.
absl::Status SetRejected(const std::string& dir, const std::string& tier,
                         const std::string& channel, const std::string& digest,
                         const std::string& reason, Fs& io = RealFs());
// Forgets the rejected digest of tier/channel (the manifest moved on).
absl::Status ClearRejected(const std::string& dir, const std::string& tier,
                           const std::string& channel, Fs& io = RealFs());

// An exclusive flock on <dir>/trial.lock, released on destruction.
class TrialLock {
 public:
  static absl::StatusOr<TrialLock> Acquire(const std::string& dir);

 private:
  explicit TrialLock(ScopedFd fd) : fd_(std::move(fd)) {}
  ScopedFd fd_;
};

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_TRIAL_STATE_H_
