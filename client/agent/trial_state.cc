#include "client/agent/trial_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace modeldist::agent {
namespace {

constexpr absl::string_view kTrialFile = "trial";
constexpr absl::string_view kRejectedFile = "rejected";
constexpr absl::string_view kLockFile = "trial.lock";
// An empty tier or channel in the space-separated `rejected` lines.
constexpr absl::string_view kNone = "-";

std::string PathOf(const std::string& dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

std::string Field(absl::string_view value) {
  return value.empty() ? std::string(kNone) : std::string(value);
}

struct Rejection {
  std::string digest, tier, channel, reason;
};

std::vector<Rejection> ReadRejections(const std::string& dir) {
  std::vector<Rejection> out;
  absl::StatusOr<std::string> text = ReadFileToString(PathOf(dir, kRejectedFile));
  if (!text.ok()) return out;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    if (parts.size() != 4 || line.front() == '#') continue;
    out.push_back({parts[0], parts[1], parts[2], parts[3]});
  }
  return out;
}

absl::Status WriteRejections(const std::string& dir, const std::vector<Rejection>& all, Fs& io) {
  if (all.empty()) {
    if (io.Unlink(PathOf(dir, kRejectedFile)) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, PathOf(dir, kRejectedFile));
    }
    return FsyncDir(dir, io);
  }
  std::string text = "# modeldist: digests rolled back here: <digest> <tier> <channel> <reason>\n";
  for (const Rejection& r : all) {
    absl::StrAppend(&text, r.digest, " ", r.tier, " ", r.channel, " ", r.reason, "\n");
  }
  return WriteFileAtomically(PathOf(dir, kRejectedFile), text, 0644, /*overwrite=*/true, io);
}

}  // namespace

std::optional<TrialRecord> ReadTrial(const std::string& dir) {
  absl::StatusOr<std::string> text = ReadFileToString(PathOf(dir, kTrialFile));
  if (!text.ok()) return std::nullopt;
  TrialRecord r;
  int64_t activated = -1, timeout_seconds = -1;
  bool has_key = false, has_confirmed = false, has_launches = false, has_max = false;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    std::pair<absl::string_view, absl::string_view> f =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    const std::string value(f.second);
    if (f.first == "key") {
      r.key = value;
      has_key = !value.empty();
    } else if (f.first == "version") {
      r.version = value;
    } else if (f.first == "digest") {
      r.digest = value;
    } else if (f.first == "tier") {
      r.tier = value;
    } else if (f.first == "channel") {
      r.channel = value;
    } else if (f.first == "activated") {
      if (!absl::SimpleAtoi(value, &activated)) return std::nullopt;
    } else if (f.first == "launches") {
      has_launches = absl::SimpleAtoi(value, &r.launches) && r.launches >= 0;
    } else if (f.first == "max_launches") {
      has_max = absl::SimpleAtoi(value, &r.limits.max_launches) && r.limits.max_launches >= 0;
    } else if (f.first == "timeout_seconds") {
      if (!absl::SimpleAtoi(value, &timeout_seconds) || timeout_seconds < 0) return std::nullopt;
    } else if (f.first == "confirmed") {
      r.confirmed = value;
      has_confirmed = true;
    }
  }
  if (!has_key || !has_confirmed || !has_launches || !has_max || activated < 0 ||
      timeout_seconds < 0) {
    return std::nullopt;
  }
  r.activated = absl::FromUnixSeconds(activated);
  r.limits.timeout = absl::Seconds(timeout_seconds);
  return r;
}

absl::Status WriteTrial(const std::string& dir, const TrialRecord& r, Fs& io) {
  const std::string text = absl::StrCat(
      "# modeldist: `current` is on trial until the app confirms it loads (trial_state.h)\n",
      "key ", r.key, "\nversion ", r.version, "\ndigest ", r.digest, "\ntier ", r.tier,
      "\nchannel ", r.channel, "\nactivated ", absl::ToUnixSeconds(r.activated), "\nlaunches ",
      r.launches, "\nmax_launches ", r.limits.max_launches, "\ntimeout_seconds ",
      absl::ToInt64Seconds(r.limits.timeout), "\nconfirmed ", r.confirmed, "\n");
  return WriteFileAtomically(PathOf(dir, kTrialFile), text, 0644, /*overwrite=*/true, io);
}

absl::Status RemoveTrial(const std::string& dir, Fs& io) {
  const std::string path = PathOf(dir, kTrialFile);
  if (io.Unlink(path) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, path);
  }
  return FsyncDir(dir, io);
}

std::optional<Rejected> FindRejected(const std::string& dir, const std::string& tier,
                                     const std::string& channel) {
  for (const Rejection& r : ReadRejections(dir)) {
    if (r.tier == Field(tier) && r.channel == Field(channel)) return Rejected{r.digest, r.reason};
  }
  return std::nullopt;
}

absl::Status SetRejected(const std::string& dir, const std::string& tier,
                         const std::string& channel, const std::string& digest,
                         const std::string& reason, Fs& io) {
  std::vector<Rejection> all;
  for (Rejection& r : ReadRejections(dir)) {
    if (r.tier != Field(tier) || r.channel != Field(channel)) all.push_back(std::move(r));
  }
  all.push_back({digest, Field(tier), Field(channel), Field(reason)});
  return WriteRejections(dir, all, io);
}

absl::Status ClearRejected(const std::string& dir, const std::string& tier,
                           const std::string& channel, Fs& io) {
  std::vector<Rejection> all = ReadRejections(dir);
  const size_t before = all.size();
  all.erase(std::remove_if(all.begin(), all.end(),
                           [&](const Rejection& r) {
                             return r.tier == Field(tier) && r.channel == Field(channel);
                           }),
            all.end());
  if (all.size() == before) return absl::OkStatus();
  return WriteRejections(dir, all, io);
}

absl::StatusOr<TrialLock> TrialLock::Acquire(const std::string& dir) {
  const std::string path = PathOf(dir, kLockFile);
  ScopedFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd.valid()) return ErrnoStatus(errno, path);
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return ErrnoStatus(errno, absl::StrCat("flock ", path));
  }
  return TrialLock(std::move(fd));
}

}  // namespace modeldist::agent
