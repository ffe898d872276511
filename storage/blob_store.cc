#include "storage/blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/chunk_chain.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/names.h"
#include "common/status.h"

namespace modeldist::storage {
namespace {

constexpr absl::string_view kPartialSuffix = ".partial";
constexpr absl::string_view kChainSuffix = ".chain";
// Upload session files are uploads/session-<upload id>{.partial,.done}.
constexpr absl::string_view kSessionPrefix = "session-";
constexpr absl::string_view kSessionRecordSuffix = ".done";
// VerifyLocked's expected size when any size will do (a session that declared none).
constexpr int64_t kAnySize = -1;
// How often writes to sessions may trigger a sweep of expired ones.
constexpr absl::Duration kSessionSweepInterval = absl::Hours(1);
// The sidecar of versions that listed each chunk's own SHA-256; removed when its blob's chain
// is computed.
constexpr absl::string_view kLegacyChunkDigestsSuffix = ".chunks";
// Files under blobs/ are never written again; the mode makes an accidental write fail loudly.
constexpr mode_t kBlobMode = 0444;
constexpr mode_t kPartialMode = 0644;
// Buffer for rebuilding a hash from a partial file after a restart, or for computing the
// chunk chain of a blob that has no sidecar.
constexpr size_t kRehashChunk = 1 << 20;
// Records kept in memory; 4096 sidecars of 16 GiB blobs would be 512 MiB, but stores that big
// hold far fewer blobs, and a typical record is a few KiB.
constexpr size_t kMaxCachedRecords = 4096;
// An upload starts the write-back of its partial every this many bytes (sync_file_range), so
// the disk writes while the rest arrives and the fsync before the rename has at most this much
// left to write, instead of the whole blob.
constexpr int64_t kWriteBehindBytes = 8 << 20;

bool IsHex64(absl::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Every public entry point calls this first: a digest becomes part of a path, so anything but
// 64 lowercase hex digits (e.g. "../../etc") must never reach the file system.
absl::Status ValidateHex(absl::string_view hex) {
  if (IsHex64(hex)) return absl::OkStatus();
  return InvalidArgument("digest", "INVALID_DIGEST",
                         absl::StrCat("a blob digest is 64 lowercase hex digits, got \"",
                                      absl::CHexEscape(hex.substr(0, 80)), "\""));
}

absl::Status ValidateExpectedSize(int64_t expected_size) {
  if (expected_size >= 0) return absl::OkStatus();
  return InvalidArgument("size_bytes", "INVALID_SIZE",
                         absl::StrCat("the blob size must not be negative, got ", expected_size));
}

// The key of a session's state and files. Only called with a validated id.
std::string SessionKey(absl::string_view id) { return absl::StrCat(kSessionPrefix, id); }

bool IsSessionKey(absl::string_view key) {
  return absl::StartsWith(key, kSessionPrefix) &&
         ValidateUploadId("upload_id", key.substr(kSessionPrefix.size())).ok();
}

// How messages name an upload: by its digest, or by its session id.
std::string UploadName(absl::string_view key) {
  if (absl::StartsWith(key, kSessionPrefix)) {
    return absl::StrCat("upload session ", key.substr(kSessionPrefix.size()));
  }
  return absl::StrCat("the upload of ", FormatDigest(key));
}

// What a name under uploads/ is; `key` gets the upload key of partials and records.
enum class UploadsEntry { kDebris, kDigestPartial, kSessionPartial, kSessionRecord };
UploadsEntry ClassifyUploadsEntry(absl::string_view name, std::string* key) {
  absl::string_view stem = name;
  UploadsEntry session_kind;
  if (absl::ConsumeSuffix(&stem, kPartialSuffix)) {
    if (IsHex64(stem)) {
      *key = std::string(stem);
      return UploadsEntry::kDigestPartial;
    }
    session_kind = UploadsEntry::kSessionPartial;
  } else if (absl::ConsumeSuffix(&stem, kSessionRecordSuffix)) {
    session_kind = UploadsEntry::kSessionRecord;
  } else {
    return UploadsEntry::kDebris;
  }
  if (!IsSessionKey(stem)) return UploadsEntry::kDebris;
  *key = std::string(stem);
  return session_kind;
}

std::string DirOf(const std::string& path) { return path.substr(0, path.rfind('/')); }

// Hashes a blob's bytes once, for both its SHA-256 and its chunk chain (common/chunk_chain.h).
class BlobHasher : public ChunkChainBuilder {
 public:
  BlobHasher() : ChunkChainBuilder(kChunkDigestBytes) {}
};

// Feeds the whole file `fd` (named `path` in errors) to `hasher`; returns how many bytes.
absl::StatusOr<int64_t> HashWholeFile(int fd, const std::string& path, BlobHasher* hasher) {
  int64_t size = 0;
  std::vector<char> buf(kRehashChunk);
  for (;;) {
    MD_ASSIGN_OR_RETURN(size_t n, PreadAll(fd, buf.data(), buf.size(), size, path));
    if (n == 0) return size;
    hasher->Update(absl::string_view(buf.data(), n));
    size += static_cast<int64_t>(n);
  }
}

}  // namespace

// The in-memory half of an upload. `hash` (whole file and chunks) covers exactly the first
// `offset` bytes of the partial file; the file's identity (device, inode, size, mtime) is
// remembered after each write so that a partial truncated, replaced or removed behind our back is
// noticed and the state rebuilt from what is really on disk instead of trusting a stale hash.
struct BlobStore::Upload {
  absl::Mutex mu;
  bool loaded ABSL_GUARDED_BY(mu) = false;
  BlobHasher hash ABSL_GUARDED_BY(mu);
  int64_t offset ABSL_GUARDED_BY(mu) = 0;
  // Bytes of the partial whose write-back was started (see kWriteBehindBytes).
  int64_t written_back ABSL_GUARDED_BY(mu) = 0;
  dev_t dev ABSL_GUARDED_BY(mu) = 0;
  ino_t ino ABSL_GUARDED_BY(mu) = 0;
  struct timespec mtime ABSL_GUARDED_BY(mu) = {};

  void Reset() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    loaded = true;
    hash = BlobHasher();
    offset = 0;
    written_back = 0;
    dev = 0;
    ino = 0;
    mtime = {};
  }

  void Remember(const struct stat& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    dev = st.st_dev;
    ino = st.st_ino;
    mtime = st.st_mtim;
  }

  bool Matches(const struct stat& st) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return loaded && st.st_dev == dev && st.st_ino == ino && st.st_size == offset &&
           st.st_mtim.tv_sec == mtime.tv_sec && st.st_mtim.tv_nsec == mtime.tv_nsec;
  }

  // Opens the partial at `path` (creating it when `create`) and makes the state describe it,
  // hashing the file once when the state is missing (restart) or stale. Returns an invalid
  // fd, with an empty state, when the partial does not exist and `create` is false.
  absl::StatusOr<ScopedFd> Sync(const std::string& path, bool create)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    ScopedFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), kPartialMode));
    if (!fd.valid()) {
      if (errno == ENOENT && !create) {
        Reset();
        return fd;
      }
      return ErrnoStatus(errno, absl::StrCat("open ", path));
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", path));
    if (Matches(st)) return fd;

    // Rebuild: hash what is on disk, chunk chain included. Mark unloaded first so that a
    // failure part way leaves the next call to try again rather than trust half a hash.
    loaded = false;
    BlobHasher rebuilt;
    MD_ASSIGN_OR_RETURN(int64_t size, HashWholeFile(fd.get(), path, &rebuilt));
    if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", path));
    hash = rebuilt;
    offset = size;
    written_back = 0;
    loaded = true;
    Remember(st);
    return fd;
  }
};

absl::Status ValidateDeclaredSize(int64_t declared_size) {
  if (declared_size >= 0 && declared_size <= kMaxBlobBytes) return absl::OkStatus();
  return InvalidArgument("size_bytes", "INVALID_SIZE",
                         absl::StrCat("size_bytes must be 1 to ", kMaxBlobBytes,
                                      " bytes, or 0 when not known; got ", declared_size));
}

BlobReader::BlobReader(BlobReader&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), record_(std::move(other.record_)) {}

BlobReader& BlobReader::operator=(BlobReader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    record_ = std::move(other.record_);
  }
  return *this;
}

BlobReader::~BlobReader() {
  if (fd_ >= 0) ::close(fd_);
}

bool BlobReader::Unchanged() const {
  struct stat st;
  return fd_ >= 0 && ::fstat(fd_, &st) == 0 && FileIdentity::Of(st) == record_->identity();
}

absl::StatusOr<size_t> BlobReader::ReadAt(int64_t offset, char* buf, size_t size) const {
  return Read(offset, buf, size, /*flags=*/0);
}

absl::StatusOr<size_t> BlobReader::ReadCachedAt(int64_t offset, char* buf, size_t size) const {
  return Read(offset, buf, size, RWF_NOWAIT);
}

absl::StatusOr<size_t> BlobReader::Read(int64_t offset, char* buf, size_t size, int flags) const {
  if (fd_ < 0) return absl::FailedPreconditionError("read from a closed (moved-from) BlobReader");
  if (offset < 0) {
    return InvalidArgument("read_offset", "INVALID_OFFSET",
                           absl::StrCat("read offset must not be negative, got ", offset));
  }
  const int64_t blob_size = record_->size();
  if (offset >= blob_size) return size_t{0};
  size = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(size), blob_size - offset));
  // Fill the whole request (reads may return short counts) so callers see 0 only at the end.
  size_t done = 0;
  while (done < size) {
    iovec iov{buf + done, size - done};
    ssize_t n = ::preadv2(fd_, &iov, 1, offset + static_cast<int64_t>(done), flags);
    if (n < 0 && errno == EINTR) continue;
    // With RWF_NOWAIT: EAGAIN, the next page is not cached; EOPNOTSUPP, this file system (or
    // kernel) cannot tell without blocking. Either way the caller reads the rest with ReadAt.
    if (n < 0 && (flags & RWF_NOWAIT) != 0 && (errno == EAGAIN || errno == EOPNOTSUPP)) break;
    if (n < 0) return ErrnoStatus(errno, "read blob");
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

BlobStore::BlobStore(std::string root, Options options)
    : root_(std::move(root)), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(const std::string& root,
                                                           Options options) {
  std::unique_ptr<BlobStore> store(new BlobStore(root, std::move(options)));
  MD_RETURN_IF_ERROR(MakeDirs(root + "/blobs/sha256"));
  const std::string uploads = root + "/uploads";
  MD_RETURN_IF_ERROR(MakeDirs(uploads));

  // uploads/ holds only partials and session records. Anything else is debris from a crash
  // (or from an older layout) and is removed; partials are kept so that uploads resume after
  // a restart, unless their blob is stored already or their session expired.
  DIR* dir = ::opendir(uploads.c_str());
  if (dir == nullptr) return ErrnoStatus(errno, absl::StrCat("opendir ", uploads));
  std::vector<std::string> stale;
  std::vector<std::string> partials;  // keys
  while (struct dirent* entry = ::readdir(dir)) {
    absl::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    std::string key;
    switch (ClassifyUploadsEntry(name, &key)) {
      case UploadsEntry::kDigestPartial:
        if (store->Contains(key)) {
          stale.emplace_back(name);
        } else {
          partials.push_back(std::move(key));
        }
        break;
      case UploadsEntry::kSessionPartial:
        partials.push_back(std::move(key));
        break;
      case UploadsEntry::kSessionRecord:
        break;
      case UploadsEntry::kDebris:
        stale.emplace_back(name);
        break;
    }
  }
  ::closedir(dir);
  for (const std::string& key : partials) {
    // Finish makes the partial read-only just before renaming it; a crash in between
    // leaves a read-only partial that the next Append could not open for writing.
    ::chmod(store->PartialPath(key).c_str(), kPartialMode);
  }
  for (const std::string& name : stale) {
    std::string path = absl::StrCat(uploads, "/", name);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      // A directory or an unremovable file is not ours to force; it is never read either.
      if (errno != EISDIR && errno != EPERM) return ErrnoStatus(errno, absl::StrCat("rm ", path));
    }
  }
  MD_RETURN_IF_ERROR(store->RemoveExpiredSessions(absl::Now()));
  return store;
}

std::string BlobStore::BlobPath(absl::string_view hex) const {
  return absl::StrCat(root_, "/blobs/sha256/", hex.substr(0, 2), "/", hex);
}

std::string BlobStore::PartialPath(absl::string_view key) const {
  return absl::StrCat(root_, "/uploads/", key, kPartialSuffix);
}

std::string BlobStore::SessionRecordPath(absl::string_view key) const {
  return absl::StrCat(root_, "/uploads/", key, kSessionRecordSuffix);
}

std::string BlobStore::ChainPath(absl::string_view hex) const {
  return absl::StrCat(BlobPath(hex), kChainSuffix);
}

bool BlobStore::Contains(absl::string_view hex) const {
  if (!IsHex64(hex)) return false;
  struct stat st;
  return ::stat(BlobPath(hex).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<int64_t> BlobStore::Size(absl::string_view hex) const {
  MD_ASSIGN_OR_RETURN(auto opened, OpenWithRecord(hex));
  return opened.second->size();
}

absl::StatusOr<BlobReader> BlobStore::OpenBlob(absl::string_view hex) const {
  MD_ASSIGN_OR_RETURN(auto opened, OpenWithRecord(hex));
  return BlobReader(opened.first.Release(), std::move(opened.second));
}

absl::StatusOr<std::pair<ScopedFd, std::shared_ptr<const BlobRecord>>> BlobStore::OpenWithRecord(
    absl::string_view hex) const {
  MD_RETURN_IF_ERROR(ValidateHex(hex));
  const std::string path = BlobPath(hex);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno != ENOENT) return ErrnoStatus(errno, absl::StrCat("open ", path));
    if (WasQuarantined(hex)) {
      return MakeError(absl::StatusCode::kNotFound, "BLOB_QUARANTINED",
                       absl::StrCat("blob ", FormatDigest(hex),
                                    " was quarantined (its bytes on disk were damaged); "
                                    "publishing the file again restores it"));
    }
    return MakeError(absl::StatusCode::kNotFound, "BLOB_NOT_FOUND",
                     absl::StrCat("blob ", FormatDigest(hex), " is not stored"));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", path));
  MD_ASSIGN_OR_RETURN(std::shared_ptr<const BlobRecord> record, LoadRecord(hex, fd.get(), st));
  if (record->size() != static_cast<int64_t>(st.st_size)) {
    return SizeMismatchError(*record, static_cast<int64_t>(st.st_size));
  }
  return std::make_pair(std::move(fd), std::move(record));
}

absl::StatusOr<std::shared_ptr<const BlobRecord>> BlobStore::LoadRecord(
    absl::string_view hex, int fd, const struct stat& st) const {
  const FileIdentity identity = FileIdentity::Of(st);
  {
    absl::MutexLock lock(&records_mu_);
    auto it = records_.find(hex);
    if (it != records_.end() && it->second->identity() == identity) return it->second;
  }
  std::optional<ChainSidecar> sidecar;
  bool rewrite = false;  // a usable sidecar of the older layout, to be upgraded
  if (absl::StatusOr<std::string> raw = ReadFileToString(ChainPath(hex)); raw.ok()) {
    sidecar = DecodeChainSidecar(*raw);
    if (!sidecar.has_value()) {
      // Stores before the recorded size wrote the entries alone. Taking the file's size as
      // the recorded one keeps an upgrade from rereading every blob; a file already damaged
      // then still fails its chunk checks, and its last entry must be its digest anyway.
      sidecar = DecodeLegacyChainSidecar(*raw, identity.size);
      rewrite = sidecar.has_value();
    }
    // The last entry is the blob's digest: a cheap check that the sidecar is this blob's.
    if (sidecar.has_value() && !sidecar->chain.empty() &&
        HexEncode(
            absl::string_view(sidecar->chain).substr(sidecar->chain.size() - kChainEntryBytes)) !=
            hex) {
      sidecar.reset();
      rewrite = false;
    }
  } else if (!absl::IsNotFound(raw.status())) {
    return raw.status();
  }
  if (rewrite) {
    MD_RETURN_IF_ERROR(WriteChain(hex, sidecar->size, sidecar->chain));
  } else if (!sidecar.has_value()) {
    // No usable sidecar: one pass over the blob gives the chunk chain and, for free, a check
    // that the blob still holds the bytes of its name, so corrupt bytes never get a chain.
    BlobHasher hasher;
    MD_ASSIGN_OR_RETURN(int64_t read, HashWholeFile(fd, BlobPath(hex), &hasher));
    std::string actual = hasher.DigestHex();
    if (actual != hex) {
      return MakeError(
          absl::StatusCode::kDataLoss, "BLOB_CORRUPT",
          absl::StrCat("stored blob ", FormatDigest(hex), " now hashes to ", FormatDigest(actual),
                       " (", read, " bytes); its bytes on disk are damaged"),
          {{"expected_digest", FormatDigest(hex)}, {"actual_digest", FormatDigest(actual)}});
    }
    sidecar = ChainSidecar{read, hasher.Chain()};
    MD_RETURN_IF_ERROR(WriteChain(hex, sidecar->size, sidecar->chain));
    ::unlink(absl::StrCat(BlobPath(hex), kLegacyChunkDigestsSuffix).c_str());
  }
  auto record = std::make_shared<const BlobRecord>(std::string(hex), identity, *std::move(sidecar));
  RememberRecord(record);
  return record;
}

void BlobStore::RememberRecord(std::shared_ptr<const BlobRecord> record) const {
  absl::MutexLock lock(&records_mu_);
  if (records_.size() >= kMaxCachedRecords) records_.clear();
  records_[record->hex()] = std::move(record);
}

void BlobStore::ForgetRecord(absl::string_view hex) const {
  absl::MutexLock lock(&records_mu_);
  if (auto it = records_.find(hex); it != records_.end()) records_.erase(it);
}

std::shared_ptr<BlobStore::Upload> BlobStore::GetUpload(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  auto it = uploads_.find(key);
  if (it == uploads_.end()) {
    it = uploads_.emplace(std::string(key), std::make_shared<Upload>()).first;
  }
  return it->second;
}

void BlobStore::ForgetUpload(absl::string_view key, const Upload* upload) {
  absl::MutexLock lock(&mu_);
  auto it = uploads_.find(key);
  // Only when the map and the caller are the sole holders: a thread waiting on this upload's
  // mutex must find the same object, or two threads could write one partial at once. New
  // references are only taken under mu_, so the count cannot grow behind this check.
  if (it != uploads_.end() && it->second.get() == upload && it->second.use_count() <= 2) {
    uploads_.erase(it);
  }
}

namespace {

// The size a stored blob must have for `expected_size` to describe it. A digest fixes the
// size, so a disagreement means the caller's metadata is wrong, not the blob.
absl::Status CheckStoredSize(const BlobStore& store, absl::string_view hex, int64_t expected_size) {
  MD_ASSIGN_OR_RETURN(int64_t stored, store.Size(hex));
  if (stored == expected_size) return absl::OkStatus();
  return MakeError(absl::StatusCode::kInvalidArgument, "SIZE_MISMATCH",
                   absl::StrCat("blob ", FormatDigest(hex), " is stored with ", stored,
                                " bytes, not ", expected_size),
                   {{"field", "size_bytes"}, {"stored_size", absl::StrCat(stored)}});
}

absl::Status AlreadyStored(absl::string_view hex) {
  return MakeError(absl::StatusCode::kAlreadyExists, "BLOB_EXISTS",
                   absl::StrCat("blob ", FormatDigest(hex), " is already stored"));
}

absl::Status SessionFinished(absl::string_view key, absl::string_view hex) {
  return MakeError(absl::StatusCode::kAlreadyExists, "UPLOAD_SESSION_FINISHED",
                   absl::StrCat(UploadName(key), " is already finished as ", FormatDigest(hex),
                                "; QueryUpload returns its digest"),
                   {{"field", "upload_id"}, {"digest", FormatDigest(hex)}});
}

}  // namespace

absl::StatusOr<int64_t> BlobStore::UploadOffset(absl::string_view hex, int64_t expected_size) {
  MD_RETURN_IF_ERROR(ValidateHex(hex));
  MD_RETURN_IF_ERROR(ValidateExpectedSize(expected_size));
  std::shared_ptr<Upload> upload = GetUpload(hex);
  absl::MutexLock lock(&upload->mu);
  if (Contains(hex)) {
    ForgetUpload(hex, upload.get());
    MD_RETURN_IF_ERROR(CheckStoredSize(*this, hex, expected_size));
    return expected_size;
  }
  // A query must not create a partial file, hence create=false; nor keep state for a digest
  // nobody uploads, or queries for random digests would grow the map without bound.
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload->Sync(PartialPath(hex), /*create=*/false));
  if (!fd.valid()) ForgetUpload(hex, upload.get());
  return upload->offset;
}

absl::Status BlobStore::Append(absl::string_view hex, int64_t expected_size, int64_t offset,
                               absl::string_view data) {
  MD_RETURN_IF_ERROR(ValidateHex(hex));
  MD_RETURN_IF_ERROR(ValidateExpectedSize(expected_size));
  std::shared_ptr<Upload> upload = GetUpload(hex);
  absl::MutexLock lock(&upload->mu);
  // Checked under the upload's lock: a Finish that just completed must not be followed by a
  // new partial for the same digest.
  if (Contains(hex)) {
    ForgetUpload(hex, upload.get());
    return AlreadyStored(hex);
  }
  return AppendLocked(*upload, hex, expected_size, offset, data);
}

absl::Status BlobStore::AppendLocked(Upload& upload, absl::string_view key, int64_t max_size,
                                     int64_t offset, absl::string_view data) {
  const std::string path = PartialPath(key);
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload.Sync(path, /*create=*/true));
  if (offset != upload.offset) {
    return MakeError(absl::StatusCode::kInvalidArgument, "WRONG_OFFSET",
                     absl::StrCat(UploadName(key), " has committed ", upload.offset,
                                  " bytes; write_offset must be ", upload.offset, ", not ", offset),
                     {{"field", "write_offset"}, {"committed_size", absl::StrCat(upload.offset)}});
  }
  if (static_cast<int64_t>(data.size()) > max_size - offset) {
    return MakeError(absl::StatusCode::kInvalidArgument, "TOO_MANY_BYTES",
                     absl::StrCat("writing ", data.size(), " bytes at offset ", offset,
                                  " exceeds the size ", max_size, " of ", UploadName(key)),
                     {{"field", "data"}, {"committed_size", absl::StrCat(upload.offset)}});
  }
  if (data.empty()) return absl::OkStatus();

  absl::Status written = PwriteAll(fd.get(), data.data(), data.size(), offset, path);
  if (!written.ok()) {
    // Cut off whatever part of `data` reached the file so it matches the hash again; if even
    // that fails, the next call rebuilds the state from the file.
    if (::ftruncate(fd.get(), offset) != 0) upload.loaded = false;
    struct stat st;
    if (upload.loaded && ::fstat(fd.get(), &st) == 0) {
      upload.Remember(st);
    } else {
      upload.loaded = false;
    }
    return written;
  }
  upload.hash.Update(data);
  upload.offset += static_cast<int64_t>(data.size());
  if (upload.offset - upload.written_back >= kWriteBehindBytes) {
    // Only starts the write; CommitLocked's fsync still makes it durable and reports any error.
    ::sync_file_range(fd.get(), upload.written_back, upload.offset - upload.written_back,
                      SYNC_FILE_RANGE_WRITE);
    upload.written_back = upload.offset;
  }
  struct stat st;
  if (::fstat(fd.get(), &st) == 0) {
    upload.Remember(st);
  } else {
    upload.loaded = false;
  }
  return absl::OkStatus();
}

void BlobStore::DiscardLocked(Upload& upload, absl::string_view key) {
  ::unlink(PartialPath(key).c_str());
  upload.Reset();
}

absl::Status BlobStore::Finish(absl::string_view hex, int64_t expected_size) {
  MD_RETURN_IF_ERROR(ValidateHex(hex));
  MD_RETURN_IF_ERROR(ValidateExpectedSize(expected_size));
  std::shared_ptr<Upload> upload = GetUpload(hex);
  absl::MutexLock lock(&upload->mu);
  absl::Status status = FinishLocked(*upload, hex, expected_size);
  // After DATA_LOSS the partial is gone; a stored blob needs no upload state either.
  if (status.code() == absl::StatusCode::kDataLoss || Contains(hex)) {
    ForgetUpload(hex, upload.get());
  }
  return status;
}

absl::Status BlobStore::FinishLocked(Upload& upload, absl::string_view hex, int64_t expected_size) {
  // A second Finish (a retried RPC) finds the blob stored and succeeds.
  if (Contains(hex)) return CheckStoredSize(*this, hex, expected_size);
  MD_ASSIGN_OR_RETURN(ScopedFd fd, VerifyLocked(upload, hex, expected_size, hex));
  return CommitLocked(upload, hex, hex, fd.get());
}

absl::StatusOr<ScopedFd> BlobStore::VerifyLocked(Upload& upload, absl::string_view key,
                                                 int64_t expected_size, absl::string_view hex) {
  // create=true so that the empty blob, which needs no Append, can be finished too.
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload.Sync(PartialPath(key), /*create=*/true));
  if (expected_size != kAnySize && upload.offset != expected_size) {
    int64_t got = upload.offset;
    DiscardLocked(upload, key);
    return MakeError(
        absl::StatusCode::kDataLoss, "SIZE_MISMATCH",
        absl::StrCat(UploadName(key), " has ", got, " bytes, expected ", expected_size,
                     "; it was discarded, upload again from offset 0"),
        {{"expected_size", absl::StrCat(expected_size)}, {"actual_size", absl::StrCat(got)}});
  }
  // DigestHex finishes a copy, so the upload's own hash stays usable if a later step fails.
  std::string actual = upload.hash.DigestHex();
  if (actual != hex) {
    DiscardLocked(upload, key);
    return MakeError(
        absl::StatusCode::kDataLoss, "DIGEST_MISMATCH",
        absl::StrCat("the uploaded bytes hash to ", FormatDigest(actual), ", not ",
                     FormatDigest(hex), "; the upload was discarded, upload again from offset 0"),
        {{"expected_digest", FormatDigest(hex)}, {"actual_digest", FormatDigest(actual)}});
  }
  return fd;
}

absl::Status BlobStore::CommitLocked(Upload& upload, absl::string_view key, absl::string_view hex,
                                     int fd) {
  const std::string partial = PartialPath(key);
  // Durable bytes first, then the name: after a crash blobs/ holds the whole blob or nothing.
  if (::fsync(fd) != 0) return ErrnoStatus(errno, absl::StrCat("fsync ", partial));
  if (::fchmod(fd, kBlobMode) != 0) {
    return ErrnoStatus(errno, absl::StrCat("chmod ", partial));
  }
  const std::string blob = BlobPath(hex);
  const std::string blob_dir = DirOf(blob);
  struct stat st;
  bool new_dir = ::stat(blob_dir.c_str(), &st) != 0;
  absl::Status status = MakeDirs(blob_dir);
  // A new fan-out directory must itself be durable in blobs/sha256, or the rename is lost.
  if (status.ok() && new_dir) status = FsyncDir(DirOf(blob_dir));
  // The sidecar is durable (WriteChain fsyncs the directory) before the blob's name exists,
  // so no crash leaves a stored blob without it. A crash in between leaves a sidecar without
  // a blob, which is harmless: the digest fixes the bytes, so it is right for any later blob
  // of that name, and the next Finish replaces it anyway.
  const std::string chain = upload.hash.Chain();
  if (status.ok()) status = WriteChain(hex, upload.offset, chain);
  if (status.ok() && ::rename(partial.c_str(), blob.c_str()) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("rename ", partial, " to ", blob));
  }
  if (!status.ok()) {
    // Still a partial: keep it writable so the upload can be finished later.
    ::fchmod(fd, kPartialMode);
    upload.loaded = false;
    return status;
  }
  MD_RETURN_IF_ERROR(FsyncDir(blob_dir));
  // Every chunk was just hashed from the very bytes written, and their pages are cached: the
  // first reads may skip hashing under the same rule as later ones (served_bytes_check.h).
  // fstat after the rename, which moves ctime.
  if (::fstat(fd, &st) == 0) {
    auto record = std::make_shared<const BlobRecord>(std::string(hex), FileIdentity::Of(st),
                                                     ChainSidecar{upload.offset, chain});
    for (int64_t i = 0; i < record->chunks(); ++i) record->MarkVerified(i);
    RememberRecord(std::move(record));
  }
  // The partial's name is gone from uploads/; losing that unlink in a crash is harmless
  // (Open removes partials of stored blobs), so its directory needs no fsync.
  upload.Reset();
  ForgetUpload(key, &upload);
  return absl::OkStatus();
}

absl::Status BlobStore::Put(absl::string_view hex, absl::string_view data) {
  MD_RETURN_IF_ERROR(ValidateHex(hex));
  const int64_t size = static_cast<int64_t>(data.size());
  std::shared_ptr<Upload> upload = GetUpload(hex);
  absl::MutexLock lock(&upload->mu);
  if (Contains(hex)) {
    // Storing the same bytes again is a no-op, but bytes that do not match must not pass.
    if (Sha256::HexOf(data) != hex) {
      return MakeError(absl::StatusCode::kDataLoss, "DIGEST_MISMATCH",
                       absl::StrCat("the bytes do not hash to ", FormatDigest(hex)));
    }
    return CheckStoredSize(*this, hex, size);
  }
  // Continue an interrupted upload of the same digest instead of clobbering it; if what it
  // had committed turns out wrong (Finish reports DATA_LOSS and discards it), start over
  // once from 0 with our own bytes.
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload->Sync(PartialPath(hex), /*create=*/false));
  int64_t committed = upload->offset;
  if (committed > size) {
    DiscardLocked(*upload, hex);
    committed = 0;
  }
  absl::Status status =
      AppendLocked(*upload, hex, size, committed, data.substr(static_cast<size_t>(committed)));
  if (status.ok()) status = FinishLocked(*upload, hex, size);
  if (committed > 0 && status.code() == absl::StatusCode::kDataLoss) {
    status = AppendLocked(*upload, hex, size, 0, data);
    if (status.ok()) status = FinishLocked(*upload, hex, size);
  }
  return status;
}

// --- upload sessions -------------------------------------------------------------------------

std::string BlobStore::FinishedDigestLocked(absl::string_view key) const {
  struct stat st;
  if (::stat(PartialPath(key).c_str(), &st) == 0) return "";
  absl::StatusOr<std::string> record = ReadFileToString(SessionRecordPath(key));
  if (!record.ok() || !IsHex64(*record) || !Contains(*record)) return "";
  return *std::move(record);
}

absl::StatusOr<UploadSessionState> BlobStore::QuerySession(absl::string_view id) {
  MD_RETURN_IF_ERROR(ValidateUploadId("upload_id", id));
  const std::string key = SessionKey(id);
  std::shared_ptr<Upload> upload = GetUpload(key);
  absl::MutexLock lock(&upload->mu);
  UploadSessionState state;
  state.digest_hex = FinishedDigestLocked(key);
  if (state.finished()) {
    ForgetUpload(key, upload.get());
    MD_ASSIGN_OR_RETURN(state.committed_size, Size(state.digest_hex));
    return state;
  }
  // As in UploadOffset: a query creates neither a partial nor lasting state.
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload->Sync(PartialPath(key), /*create=*/false));
  if (!fd.valid()) ForgetUpload(key, upload.get());
  state.committed_size = upload->offset;
  return state;
}

absl::Status BlobStore::AppendToSession(absl::string_view id, int64_t declared_size, int64_t offset,
                                        absl::string_view data) {
  MD_RETURN_IF_ERROR(ValidateUploadId("upload_id", id));
  MD_RETURN_IF_ERROR(ValidateDeclaredSize(declared_size));
  // Before taking this session's lock: the sweep takes the locks of the sessions it removes.
  MaybeRemoveExpiredSessions(absl::Now());
  const std::string key = SessionKey(id);
  std::shared_ptr<Upload> upload = GetUpload(key);
  absl::MutexLock lock(&upload->mu);
  if (std::string done = FinishedDigestLocked(key); !done.empty()) {
    ForgetUpload(key, upload.get());
    return SessionFinished(key, done);
  }
  return AppendLocked(*upload, key, declared_size == 0 ? kMaxBlobBytes : declared_size, offset,
                      data);
}

absl::StatusOr<int64_t> BlobStore::FinishSession(absl::string_view id, int64_t declared_size,
                                                 absl::string_view hex) {
  MD_RETURN_IF_ERROR(ValidateUploadId("upload_id", id));
  MD_RETURN_IF_ERROR(ValidateDeclaredSize(declared_size));
  MD_RETURN_IF_ERROR(ValidateHex(hex));
  const std::string key = SessionKey(id);
  std::shared_ptr<Upload> upload = GetUpload(key);
  absl::MutexLock lock(&upload->mu);
  absl::StatusOr<int64_t> size = FinishSessionLocked(*upload, key, declared_size, hex);
  if (size.status().code() == absl::StatusCode::kDataLoss) {
    // Discarded: no record of an earlier finish may outlive it either.
    ::unlink(SessionRecordPath(key).c_str());
  }
  if (!size.ok() && size.status().code() != absl::StatusCode::kDataLoss) return size;
  ForgetUpload(key, upload.get());
  return size;
}

absl::StatusOr<int64_t> BlobStore::FinishSessionLocked(Upload& upload, absl::string_view key,
                                                       int64_t declared_size,
                                                       absl::string_view hex) {
  // A retried finish (the answer to the first one was lost) succeeds again.
  if (std::string done = FinishedDigestLocked(key); !done.empty()) {
    if (done != hex) return SessionFinished(key, done);
    return Size(done);
  }
  MD_ASSIGN_OR_RETURN(
      ScopedFd fd, VerifyLocked(upload, key, declared_size == 0 ? kAnySize : declared_size, hex));
  const int64_t size = upload.offset;
  // From here until the blob is in place this session claims it: RemoveUnwantedBlobs either
  // ran before (and the blob is stored again below) or sees the record and keeps it.
  absl::ReaderMutexLock claim(&claim_mu_);
  // The record goes first and durably: once the partial is renamed away, it is the only
  // trace of which blob this session became. Until then the partial outranks it.
  MD_RETURN_IF_ERROR(WriteFileAtomically(SessionRecordPath(key), hex, kPartialMode));
  // An upload of the same bytes under another key (a digest upload, another session) holds
  // another lock and may store them at the same moment; whichever rename comes last replaces
  // a file with identical, verified bytes, which readers cannot tell apart.
  if (Contains(hex)) {
    // The same bytes arrived earlier (another session, or a digest upload): keep one copy.
    // Stored blobs are only ever complete and verified, so this one is the same bytes.
    DiscardLocked(upload, key);
    return size;
  }
  MD_RETURN_IF_ERROR(CommitLocked(upload, key, hex, fd.get()));
  return size;
}

absl::StatusOr<std::vector<std::string>> BlobStore::SessionKeys(bool records_only) const {
  const std::string uploads = absl::StrCat(root_, "/uploads");
  DIR* dir = ::opendir(uploads.c_str());
  if (dir == nullptr) return ErrnoStatus(errno, absl::StrCat("opendir ", uploads));
  std::vector<std::string> keys;
  while (struct dirent* entry = ::readdir(dir)) {
    std::string key;
    UploadsEntry kind = ClassifyUploadsEntry(entry->d_name, &key);
    if (kind == UploadsEntry::kSessionRecord ||
        (kind == UploadsEntry::kSessionPartial && !records_only)) {
      keys.push_back(std::move(key));
    }
  }
  ::closedir(dir);
  return keys;
}

absl::Status BlobStore::RemoveExpiredSessions(absl::Time now) {
  MD_ASSIGN_OR_RETURN(std::vector<std::string> keys, SessionKeys(/*records_only=*/false));
  const absl::Time cutoff = now - kUploadSessionTtl;
  auto expired = [cutoff](const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && absl::TimeFromTimespec(st.st_mtim) < cutoff;
  };
  std::vector<std::string> stored_by_expired;  // digests named by the records removed
  for (const std::string& key : keys) {
    const std::string partial = PartialPath(key);
    const std::string record = SessionRecordPath(key);
    if (!expired(partial) && !expired(record)) continue;
    // Checked again under the session's lock, so that a session written meanwhile survives
    // and no writer finds its partial gone half way through a call.
    std::shared_ptr<Upload> upload = GetUpload(key);
    absl::MutexLock lock(&upload->mu);
    if (expired(partial)) DiscardLocked(*upload, key);
    if (expired(record)) {
      absl::StatusOr<std::string> hex = ReadFileToString(record);
      if (hex.ok() && IsHex64(*hex)) stored_by_expired.push_back(*std::move(hex));
      ::unlink(record.c_str());
    }
    // The state of a live session carries its hash; only a session without a partial may go.
    struct stat st;
    if (::stat(partial.c_str(), &st) != 0) ForgetUpload(key, upload.get());
  }
  if (!options_.is_referenced || stored_by_expired.empty()) return absl::OkStatus();
  return RemoveUnwantedBlobs(stored_by_expired);
}

absl::Status BlobStore::RemoveUnwantedBlobs(const std::vector<std::string>& candidates) {
  absl::MutexLock claim(&claim_mu_);
  // Digests that live session records name: their writers may still declare them.
  std::set<std::string, std::less<>> claimed;
  MD_ASSIGN_OR_RETURN(std::vector<std::string> record_keys, SessionKeys(/*records_only=*/true));
  for (const std::string& key : record_keys) {
    absl::StatusOr<std::string> hex = ReadFileToString(SessionRecordPath(key));
    if (hex.ok()) claimed.insert(*std::move(hex));
  }
  for (const std::string& hex : candidates) {
    if (claimed.contains(hex) || !Contains(hex)) continue;
    absl::StatusOr<bool> referenced = options_.is_referenced(hex);
    if (!referenced.ok() || *referenced) continue;
    const std::string path = BlobPath(hex);
    struct stat st {};
    ::stat(path.c_str(), &st);
    // The blob first: a crash before the sidecar goes leaves only a small sidecar behind,
    // which is never taken for a blob (names ending in .chain are not digests).
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, absl::StrCat("rm ", path));
    }
    ::unlink(ChainPath(hex).c_str());
    std::cerr << "modeldist: removed blob sha256:" << hex << " (" << st.st_size
              << " bytes): an upload session stored it, the session expired, and no version "
                 "declares it\n";
  }
  return absl::OkStatus();
}

void BlobStore::MaybeRemoveExpiredSessions(absl::Time now) {
  {
    absl::MutexLock lock(&sweep_mu_);
    if (now < next_sweep_) return;
    next_sweep_ = now + kSessionSweepInterval;
  }
  if (absl::Status status = RemoveExpiredSessions(now); !status.ok()) {
    std::cerr << "modeldist: removing expired upload sessions failed (will retry): " << status
              << "\n";
  }
}

absl::Status BlobStore::WriteChain(absl::string_view hex, int64_t size,
                                   absl::string_view chain) const {
  const std::string sidecar = EncodeChainSidecar(size, chain);
  // A unique temp name, because two threads may write the same sidecar at once (ChunkChain
  // of one legacy blob); the content is the same, so the last rename winning is fine.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = absl::StrCat(root_, "/uploads/", hex, kChainSuffix, ".tmp.", ::getpid(),
                                       ".", counter.fetch_add(1));
  const std::string path = ChainPath(hex);
  ScopedFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kBlobMode));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("create ", tmp));
  absl::Status status = PwriteAll(fd.get(), sidecar.data(), sidecar.size(), 0, tmp);
  if (status.ok() && ::fsync(fd.get()) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("fsync ", tmp));
  }
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  return FsyncDir(DirOf(path));
}

absl::StatusOr<std::vector<std::string>> BlobStore::ChunkChain(absl::string_view hex) const {
  MD_ASSIGN_OR_RETURN(auto opened, OpenWithRecord(hex));
  const BlobRecord& record = *opened.second;
  std::vector<std::string> entries;
  entries.reserve(static_cast<size_t>(record.chunks()));
  for (int64_t i = 0; i < record.chunks(); ++i) entries.emplace_back(record.entry(i));
  return entries;
}

}  // namespace modeldist::storage
