#include "client/agent/model_store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "client/agent/trial_state.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/names.h"
#include "common/status.h"

namespace modeldist::agent {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kVersionsDir = "versions";
constexpr absl::string_view kStagingDir = "staging";
constexpr absl::string_view kCurrentLink = "current";
constexpr absl::string_view kPreviousLink = "previous";
constexpr absl::string_view kInstalledFile = "INSTALLED";
// A link is switched by creating `<link>.new` and renaming it over `<link>`; a crash in
// between leaves this name behind, never a missing or half-written `current`.
constexpr absl::string_view kNewLinkSuffix = ".new";
// Activation work folders under staging/ carry this prefix, so that Open can remove them
// without touching downloads that are being resumed there.
constexpr absl::string_view kWorkPrefix = "activate-";
// A download in staging/ (`<hex>.partial`), and the second name activation consumes.
constexpr absl::string_view kPartialSuffix = ".partial";
constexpr absl::string_view kActivatingSuffix = ".activating";
// Where a CoreML zip is unpacked inside the version folder: a subfolder, so that no archive
// entry can collide with INSTALLED.
constexpr absl::string_view kUnpackedDir = "model";
constexpr size_t kMaxVersionLength = 1024;
constexpr size_t kMaxKeyIdLength = 64;
constexpr size_t kDigestPrefixLength = 8;
// Other versions whose keys come out equal (same id after mapping, same digest prefix) get
// `-2` … `-9`.
constexpr int kMaxKeyCandidates = 9;

bool IsKeyChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

// Keys are read back from symlinks, which anyone with access to the directory can change:
// a key is only used as a single, non-hidden path component.
bool IsValidKey(absl::string_view key) {
  return !key.empty() && key.size() <= 255 && key.front() != '.' &&
         std::all_of(key.begin(), key.end(), IsKeyChar);
}

std::string VersionKey(absl::string_view version, absl::string_view digest_hex) {
  // The version id alone reads best (`2026.11.0-ab12cd34`); a string that is not a version
  // resource name is used whole.
  std::string id(version);
  absl::StatusOr<VersionName> parsed = ParseVersionName("version", version);
  if (parsed.ok()) id = parsed->version;
  if (id.size() > kMaxKeyIdLength) id.resize(kMaxKeyIdLength);
  for (char& c : id) {
    if (!IsKeyChar(c)) c = '_';
  }
  if (!id.empty() && id.front() == '.') id.front() = '_';
  return absl::StrCat(id, id.empty() ? "" : "-", digest_hex.substr(0, kDigestPrefixLength));
}

// The content name inside the version folder, or "" for formats the store cannot place.
std::string ContentName(v1::Format format) {
  switch (format) {
    case v1::FORMAT_COREML_ZIP:
      return std::string(kUnpackedDir);
    case v1::FORMAT_GGUF:
      return "model.gguf";
    case v1::FORMAT_SAFETENSORS:
      return "model.safetensors";
    case v1::FORMAT_ONNX:
      return "model.onnx";
    case v1::FORMAT_TFLITE:
      return "model.tflite";
    default:
      return "";
  }
}

// A path relative to the version folder made only of plain components.
bool IsSafeRelativePath(absl::string_view path) {
  if (path.empty() || path.front() == '/') return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return ::lstat(a.c_str(), &sa) == 0 && ::lstat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return ErrnoStatus(ec.value(), absl::StrCat("remove ", path));
  return absl::OkStatus();
}

absl::Status UnlinkIfExists(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, path);
  return absl::OkStatus();
}

// Sum of the sizes of the regular files under `path` (or of `path` itself); never follows a
// symlink.
int64_t FileBytes(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  if (S_ISREG(st.st_mode)) return st.st_size;
  if (!S_ISDIR(st.st_mode)) return 0;
  int64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) total += st.st_size;
  }
  return total;
}

// Names in `dir`, or an empty list when it cannot be read.
std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The layout's paths, computed in one place.
struct Layout {
  std::string dir;
  // Where the store's writes go (ModelStore::Open's `io`).
  Fs* io = &RealFs();
  std::string Versions() const { return absl::StrCat(dir, "/", kVersionsDir); }
  std::string Staging() const { return absl::StrCat(dir, "/", kStagingDir); }
  std::string VersionDir(absl::string_view key) const { return absl::StrCat(Versions(), "/", key); }
  std::string Installed(absl::string_view key) const {
    return absl::StrCat(VersionDir(key), "/", kInstalledFile);
  }
  std::string Link(absl::string_view name) const { return absl::StrCat(dir, "/", name); }
};

// The key a link (`current` or `previous`) names, or "" when it is missing or not one of ours.
std::string ReadLinkKey(const Layout& layout, absl::string_view name) {
  std::error_code ec;
  fs::path target = fs::read_symlink(layout.Link(name), ec);
  if (ec) return "";
  const std::string text = target.string();
  const std::string prefix = absl::StrCat(kVersionsDir, "/");
  if (!absl::StartsWith(text, prefix)) return "";
  std::string key = text.substr(prefix.size());
  return IsValidKey(key) ? key : "";
}

std::string FormatInstalled(const InstalledVersion& installed, absl::string_view relative_path) {
  return absl::StrCat("# modeldist: written last, this folder is a complete version\n", "version ",
                      installed.version, "\n", "digest ", installed.digest, "\n", "format ",
                      v1::Format_Name(installed.format), "\n", "path ", relative_path, "\n");
}

// Reads versions/<key>/INSTALLED. nullopt when the folder is incomplete (no INSTALLED), the
// file does not parse, or the content it names is missing.
std::optional<InstalledVersion> ReadInstalled(const Layout& layout, const std::string& key) {
  if (!IsValidKey(key)) return std::nullopt;
  absl::StatusOr<std::string> text = ReadFileToString(layout.Installed(key));
  if (!text.ok()) return std::nullopt;
  InstalledVersion installed;
  installed.key = key;
  std::string relative_path;
  bool has_format = false;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    std::pair<absl::string_view, absl::string_view> field =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    if (field.first == "version") {
      installed.version = std::string(field.second);
    } else if (field.first == "digest") {
      installed.digest = std::string(field.second);
    } else if (field.first == "format") {
      has_format = v1::Format_Parse(std::string(field.second), &installed.format);
    } else if (field.first == "path") {
      relative_path = std::string(field.second);
    }
  }
  if (installed.version.empty() || !ParseDigest("digest", installed.digest).ok() || !has_format ||
      !IsSafeRelativePath(relative_path)) {
    return std::nullopt;
  }
  installed.path = absl::StrCat(layout.VersionDir(key), "/", relative_path);
  if (!Exists(installed.path)) return std::nullopt;
  return installed;
}

// Points link `name` at versions/<key>: a new symlink renamed over the old one, so a reader
// sees the old target or the new one, never none. The caller fsyncs the directory.
absl::Status PointLink(const Layout& layout, absl::string_view name, const std::string& key) {
  const std::string link = layout.Link(name);
  const std::string temp = absl::StrCat(link, kNewLinkSuffix);
  MD_RETURN_IF_ERROR(UnlinkIfExists(temp));
  // Relative, so the store keeps working when its directory is moved or mounted elsewhere.
  const std::string target = absl::StrCat(kVersionsDir, "/", key);
  if (::symlink(target.c_str(), temp.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("symlink ", temp));
  }
  if (layout.io->Rename(temp, link) != 0) {
    absl::Status status = ErrnoStatus(errno, absl::StrCat("rename ", temp));
    ::unlink(temp.c_str());
    return status;
  }
  return absl::OkStatus();
}

// Makes `key` current. Without a trial (none open, none to start) the old current becomes
// previous (unless it is `key` itself). With one, the trial record is written first and
// `previous` moves only when the old current was confirmed: `previous` is always a confirmed
// version (the crash cases of model_store.h and trial_state.h).
absl::Status SwitchCurrent(const Layout& layout, const std::string& key,
                           const std::optional<TrialStart>& start) {
  // Serialized with the app's launch counting and confirmation (trial_state.h). Without a
  // trial to start or continue there is nothing to serialize: only an activation writes a
  // record.
  std::optional<TrialLock> lock;
  if (start || ReadTrial(layout.dir)) {
    MD_ASSIGN_OR_RETURN(TrialLock acquired, TrialLock::Acquire(layout.dir));
    lock.emplace(std::move(acquired));
  }
  const std::string old_current = ReadLinkKey(layout, kCurrentLink);
  const std::optional<TrialRecord> open = ReadTrial(layout.dir);
  if (old_current == key) {
    MD_RETURN_IF_ERROR(PointLink(layout, kCurrentLink, key));
    return FsyncDir(layout.dir, *layout.io);
  }
  if (open && key == open->confirmed) {
    // Back to the last confirmed version (the manifest went back to it): the trial ends
    // without a verdict. The link first, so that a crash leaves a record the recovery removes
    // (`current` is its `confirmed`).
    MD_RETURN_IF_ERROR(PointLink(layout, kCurrentLink, key));
    MD_RETURN_IF_ERROR(FsyncDir(layout.dir, *layout.io));
    return RemoveTrial(layout.dir, *layout.io);
  }
  const bool old_on_trial = open && old_current != open->confirmed;
  const bool old_complete = !old_current.empty() && ReadInstalled(layout, old_current).has_value();
  if (start || old_on_trial) {
    std::optional<InstalledVersion> installed = ReadInstalled(layout, key);
    if (!installed) return absl::InternalError(absl::StrCat("versions/", key, " is incomplete"));
    TrialRecord record;
    record.key = key;
    record.version = installed->version;
    record.digest = installed->digest;
    if (start) {
      record.tier = start->tier;
      record.channel = start->channel;
      record.activated = start->now;
      record.limits = start->limits;
    } else {
      record.tier = open->tier;
      record.channel = open->channel;
      record.activated = absl::Now();
      record.limits = open->limits;
    }
    record.confirmed = old_on_trial ? open->confirmed : (old_complete ? old_current : "");
    // Before any link moves: a crash after it leaves `current` on a version the record does
    // not name, which the recovery (trial.h) reads correctly either way.
    MD_RETURN_IF_ERROR(WriteTrial(layout.dir, record, *layout.io));
  } else if (open) {
    // A record whose activation never completed (`current` is its `confirmed`): left in
    // place it would put the version activated now on trial.
    MD_RETURN_IF_ERROR(RemoveTrial(layout.dir, *layout.io));
  }
  // `previous` first: a crash between the two renames leaves both naming the old current,
  // which is complete, rather than `current` moved on and the rollback target lost.
  if (!old_on_trial && old_complete) {
    MD_RETURN_IF_ERROR(PointLink(layout, kPreviousLink, old_current));
  }
  MD_RETURN_IF_ERROR(PointLink(layout, kCurrentLink, key));
  return FsyncDir(layout.dir, *layout.io);
}

// Removes the artifact once its content is installed, unless it *is* the installed content
// (a caller passing the current model.gguf back must not delete it).
void ConsumeArtifact(const std::string& artifact_path, const InstalledVersion& installed) {
  if (!SameFile(artifact_path, installed.path)) ::unlink(artifact_path.c_str());
}

// Gives a moved single-file artifact its layout mode and makes its data durable (the
// downloader fsynced it, but the store must not rely on every caller doing so).
absl::Status SealFile(const std::string& path, Fs& io) {
  int fd = io.Open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, path);
  absl::Status status;
  if (::fchmod(fd, 0644) != 0) status = ErrnoStatus(errno, path);
  if (status.ok() && io.Fsync(fd) != 0) status = ErrnoStatus(errno, absl::StrCat("fsync ", path));
  ::close(fd);
  return status;
}

// For a zip holding one top-level folder (`Llama.mlpackage/…`), the content path is that
// folder, which is what CoreML loads; otherwise it is the unpack folder itself.
std::string UnpackedContentPath(const std::string& unpacked_dir) {
  std::vector<std::string> names = ListDir(unpacked_dir);
  struct stat st;
  if (names.size() == 1 && ::lstat(absl::StrCat(unpacked_dir, "/", names[0]).c_str(), &st) == 0 &&
      S_ISDIR(st.st_mode)) {
    return absl::StrCat(kUnpackedDir, "/", names[0]);
  }
  return std::string(kUnpackedDir);
}

absl::Status ValidateVersion(const std::string& version) {
  if (version.empty()) return InvalidArgument("version", "EMPTY_VERSION", "version is required");
  if (version.size() > kMaxVersionLength) {
    return InvalidArgument("version", "VERSION_TOO_LONG", "version is too long");
  }
  // INSTALLED is line based.
  for (char c : version) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return InvalidArgument("version", "INVALID_VERSION", "version has control characters");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelStore> ModelStore::Open(const std::string& dir, Fs* io) {
  if (dir.empty()) return InvalidArgument("dir", "EMPTY_DIR", "the store directory is required");
  std::error_code ec;
  fs::path absolute = fs::absolute(dir, ec).lexically_normal();
  if (ec) return ErrnoStatus(ec.value(), dir);
  std::string normalized = absolute.string();
  while (normalized.size() > 1 && normalized.back() == '/') normalized.pop_back();
  Layout layout{normalized};
  MD_RETURN_IF_ERROR(MakeDirs(layout.dir));
  MD_RETURN_IF_ERROR(MakeDirs(layout.Versions()));
  MD_RETURN_IF_ERROR(MakeDirs(layout.Staging()));

  for (absl::string_view link : {kCurrentLink, kPreviousLink}) {
    MD_RETURN_IF_ERROR(UnlinkIfExists(absl::StrCat(layout.Link(link), kNewLinkSuffix)));
  }
  for (const std::string& name : ListDir(layout.Staging())) {
    if (absl::StartsWith(name, kWorkPrefix)) {
      MD_RETURN_IF_ERROR(RemoveAll(absl::StrCat(layout.Staging(), "/", name)));
    }
  }
  // A folder renamed into versions/ before its INSTALLED was written: a crash interrupted
  // its activation, so no link can name it (links move only after INSTALLED is durable).
  for (const std::string& name : ListDir(layout.Versions())) {
    const std::string path = layout.VersionDir(name);
    if (fs::is_directory(fs::symlink_status(path, ec)) && !Exists(layout.Installed(name))) {
      MD_RETURN_IF_ERROR(RemoveAll(path));
    }
  }
  MD_RETURN_IF_ERROR(FsyncDir(layout.Staging()));
  MD_RETURN_IF_ERROR(FsyncDir(layout.Versions()));
  MD_RETURN_IF_ERROR(FsyncDir(layout.dir));
  return ModelStore(std::move(layout.dir), io != nullptr ? io : &RealFs());
}

absl::StatusOr<InstalledVersion> ModelStore::Activate(const std::string& artifact_path,
                                                      const std::string& version,
                                                      const std::string& digest, v1::Format format,
                                                      const UnzipLimits& limits) {
  const Layout layout{dir_, fs_};
  MD_RETURN_IF_ERROR(ValidateVersion(version));
  MD_ASSIGN_OR_RETURN(std::string digest_hex, ParseDigest("digest", digest));
  const std::string content = ContentName(format);
  if (content.empty()) {
    return InvalidArgument("format", "UNSUPPORTED_FORMAT",
                           absl::StrCat("cannot install format ", v1::Format_Name(format)));
  }
  struct stat st;
  if (::lstat(artifact_path.c_str(), &st) != 0) return ErrnoStatus(errno, artifact_path);
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgument("artifact_path", "ARTIFACT_NOT_A_FILE",
                           absl::StrCat(artifact_path, " is not a regular file"));
  }

  if (std::optional<InstalledVersion> current = Current(); current && current->version == version &&
                                                           current->digest == digest &&
                                                           current->format == format) {
    ConsumeArtifact(artifact_path, *current);
    return *current;
  }

  // The first candidate key that is free, or already holds exactly this version.
  const std::string base_key = VersionKey(version, digest_hex);
  std::string key;
  for (int n = 1; n <= kMaxKeyCandidates; ++n) {
    std::string candidate = n == 1 ? base_key : absl::StrCat(base_key, "-", n);
    if (!Exists(layout.VersionDir(candidate))) {
      key = std::move(candidate);
      break;
    }
    std::optional<InstalledVersion> installed = ReadInstalled(layout, candidate);
    if (installed && installed->version == version && installed->digest == digest &&
        installed->format == format) {
      // Still installed (e.g. as previous): switch back without unpacking again.
      MD_RETURN_IF_ERROR(SwitchCurrent(layout, candidate, trial_));
      ConsumeArtifact(artifact_path, *installed);
      return *installed;
    }
  }
  if (key.empty()) {
    return MakeError(
        absl::StatusCode::kAlreadyExists, "VERSION_KEY_TAKEN",
        absl::StrCat("versions/", base_key, " and its alternatives hold other versions"),
        {{"key", base_key}});
  }

  // Prepare everything in a fresh work folder; only a complete folder is renamed in.
  std::string work = absl::StrCat(layout.Staging(), "/", kWorkPrefix, key, ".XXXXXX");
  if (::mkdtemp(work.data()) == nullptr) return ErrnoStatus(errno, "mkdtemp in staging");
  const std::string final_dir = layout.VersionDir(key);
  std::string moved_artifact;  // where a moved single-file artifact is now, to put it back
  bool renamed = false;
  std::string relative_path = content;
  absl::Status status = [&]() -> absl::Status {
    if (::chmod(work.c_str(), 0755) != 0) return ErrnoStatus(errno, work);
    const std::string work_content = absl::StrCat(work, "/", content);
    if (format == v1::FORMAT_COREML_ZIP) {
      MD_RETURN_IF_ERROR(UnzipSafely(artifact_path, work_content, limits));
      relative_path = UnpackedContentPath(work_content);
    } else {
      if (fs_->Rename(artifact_path, work_content) != 0) {
        if (errno == EXDEV) {
          return MakeError(absl::StatusCode::kFailedPrecondition, "ARTIFACT_ON_OTHER_FILESYSTEM",
                           absl::StrCat(artifact_path, " is not on the file system of ", dir_,
                                        "; download into ", StagingDir()));
        }
        return ErrnoStatus(errno, absl::StrCat("rename ", artifact_path));
      }
      moved_artifact = work_content;
      MD_RETURN_IF_ERROR(SealFile(work_content, *fs_));
    }
    MD_RETURN_IF_ERROR(FsyncDir(work, *fs_));
    if (fs_->Rename(work, final_dir) != 0) {
      return ErrnoStatus(errno, absl::StrCat("rename to ", final_dir));
    }
    renamed = true;
    if (!moved_artifact.empty()) moved_artifact = absl::StrCat(final_dir, "/", content);
    MD_RETURN_IF_ERROR(FsyncDir(layout.Staging(), *fs_));
    MD_RETURN_IF_ERROR(FsyncDir(layout.Versions(), *fs_));
    // INSTALLED last: from here on the folder counts as a complete version.
    InstalledVersion installed;
    installed.version = version;
    installed.digest = digest;
    installed.format = format;
    MD_RETURN_IF_ERROR(WriteFileAtomically(layout.Installed(key),
                                           FormatInstalled(installed, relative_path), 0644,
                                           /*overwrite=*/false, *fs_));
    return SwitchCurrent(layout, key, trial_);
  }();

  if (!status.ok()) {
    // Undo as far as possible: the artifact back in place, no half-installed version. A
    // folder that `current` already names stays (the switch got that far).
    if (!moved_artifact.empty()) ::rename(moved_artifact.c_str(), artifact_path.c_str());
    (void)RemoveAll(work);
    if (renamed && ReadLinkKey(layout, kCurrentLink) != key) (void)RemoveAll(final_dir);
    return status;
  }
  if (format == v1::FORMAT_COREML_ZIP) ::unlink(artifact_path.c_str());
  std::optional<InstalledVersion> current = Current();
  if (!current || current->key != key) {
    return absl::InternalError(absl::StrCat("versions/", key, " was activated but is not current"));
  }
  return *current;
}

absl::StatusOr<std::string> ModelStore::PartialPath(const std::string& digest) const {
  MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", digest));
  return absl::StrCat(StagingDir(), "/", hex, kPartialSuffix);
}

std::optional<InstalledVersion> ModelStore::CurrentIfInstalled(const std::string& version,
                                                               const std::string& digest) {
  std::optional<InstalledVersion> current = Current();
  if (!current.has_value() || current->digest != digest || current->version != version) {
    return std::nullopt;
  }
  // A crash after step 5 and before step 6 leaves the partial (a hard link of the installed
  // file); the installed copy is what counts now.
  if (absl::StatusOr<std::string> partial = PartialPath(digest); partial.ok()) {
    ::unlink(partial->c_str());
  }
  return current;
}

absl::StatusOr<InstalledVersion> ModelStore::ActivatePartial(const std::string& version,
                                                             const std::string& digest,
                                                             v1::Format format,
                                                             const UnzipLimits& limits) {
  MD_ASSIGN_OR_RETURN(const std::string partial, PartialPath(digest));
  // Step 1: Activate consumes a second name, so that the partial stays complete until the
  // version is current (the crash cases in model_store.h).
  const std::string activating = absl::StrCat(partial, kActivatingSuffix);
  MD_RETURN_IF_ERROR(UnlinkIfExists(activating));
  if (fs_->Link(partial, activating) != 0) {
    return ErrnoStatus(errno, absl::StrCat("linking ", partial, " to ", activating));
  }
  absl::StatusOr<InstalledVersion> installed =
      Activate(activating, version, digest, format, limits);
  // Step 6. Normally consumed by Activate; still here after an error, or when it is a link of
  // the very file installed (a stale partial of a version still installed), which Activate
  // keeps.
  ::unlink(activating.c_str());
  if (!installed.ok()) return installed.status();
  MD_RETURN_IF_ERROR(UnlinkIfExists(partial));
  return installed;
}

std::optional<InstalledVersion> ModelStore::Current() const {
  const Layout layout{dir_, fs_};
  return ReadInstalled(layout, ReadLinkKey(layout, kCurrentLink));
}

std::optional<InstalledVersion> ModelStore::Installed(const std::string& key) const {
  return ReadInstalled(Layout{dir_, fs_}, key);
}

absl::Status ModelStore::SetCurrent(const std::string& key) {
  const Layout layout{dir_, fs_};
  if (key.empty()) {
    MD_RETURN_IF_ERROR(UnlinkIfExists(layout.Link(kCurrentLink)));
  } else {
    if (!ReadInstalled(layout, key)) {
      return MakeError(absl::StatusCode::kFailedPrecondition, "VERSION_NOT_INSTALLED",
                       absl::StrCat("versions/", key, " is not a complete version"));
    }
    MD_RETURN_IF_ERROR(PointLink(layout, kCurrentLink, key));
  }
  return FsyncDir(layout.dir, *fs_);
}

std::optional<InstalledVersion> ModelStore::Previous() const {
  const Layout layout{dir_, fs_};
  return ReadInstalled(layout, ReadLinkKey(layout, kPreviousLink));
}

absl::Status ModelStore::Rollback() {
  const Layout layout{dir_, fs_};
  std::optional<InstalledVersion> previous = Previous();
  if (!previous) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "NO_PREVIOUS_VERSION",
                     "there is no complete previous version to roll back to");
  }
  std::optional<InstalledVersion> current = Current();
  // `current` first: a crash between the renames leaves the rollback done (both links on the
  // rolled-back-to version) rather than not done.
  MD_RETURN_IF_ERROR(PointLink(layout, kCurrentLink, previous->key));
  if (current && current->key != previous->key) {
    MD_RETURN_IF_ERROR(PointLink(layout, kPreviousLink, current->key));
  } else {
    MD_RETURN_IF_ERROR(UnlinkIfExists(layout.Link(kPreviousLink)));
  }
  return FsyncDir(layout.dir);
}

absl::StatusOr<int64_t> ModelStore::CollectGarbage() {
  const Layout layout{dir_, fs_};
  // Whatever the links name is kept, complete or not: never remove a folder in use.
  std::set<std::string> keep;
  for (absl::string_view link : {kCurrentLink, kPreviousLink}) {
    std::string key = ReadLinkKey(layout, link);
    if (!key.empty()) keep.insert(std::move(key));
  }
  // And the trial's rollback target, should a link not name it (trial_state.h).
  if (std::optional<TrialRecord> trial = ReadTrial(dir_); trial && !trial->confirmed.empty()) {
    keep.insert(trial->confirmed);
  }
  int64_t freed = 0;
  for (const std::string& name : ListDir(layout.Versions())) {
    if (keep.count(name)) continue;
    const std::string path = layout.VersionDir(name);
    const int64_t bytes = FileBytes(path);
    MD_RETURN_IF_ERROR(RemoveAll(path));
    freed += bytes;
  }
  for (const std::string& name : ListDir(layout.Staging())) {
    const std::string path = absl::StrCat(layout.Staging(), "/", name);
    const int64_t bytes = FileBytes(path);
    MD_RETURN_IF_ERROR(RemoveAll(path));
    freed += bytes;
  }
  for (absl::string_view link : {kCurrentLink, kPreviousLink}) {
    MD_RETURN_IF_ERROR(UnlinkIfExists(absl::StrCat(layout.Link(link), kNewLinkSuffix)));
  }
  MD_RETURN_IF_ERROR(FsyncDir(layout.Versions()));
  MD_RETURN_IF_ERROR(FsyncDir(layout.Staging()));
  return freed;
}

std::vector<InstalledVersion> ModelStore::List() const {
  const Layout layout{dir_, fs_};
  std::vector<InstalledVersion> out;
  for (const std::string& name : ListDir(layout.Versions())) {
    if (std::optional<InstalledVersion> installed = ReadInstalled(layout, name)) {
      out.push_back(std::move(*installed));
    }
  }
  return out;
}

}  // namespace modeldist::agent
