// BlobStore's core: opening the store (and clearing uploads/ of crash debris), the layout's
// paths, and reading blobs with their records (chain sidecars, cached while the file is the
// same). Uploads, sessions and integrity checks are in the other blob_store_*.cc files
// (blob_store_internal.h says which).
#include "storage/blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <optional>
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
#include "storage/blob_store_internal.h"

namespace modeldist::storage {
namespace {

constexpr absl::string_view kPartialSuffix = ".partial";
constexpr absl::string_view kChainSuffix = ".chain";
// Upload session files are uploads/session-<upload id>{.partial,.done}.
constexpr absl::string_view kSessionPrefix = "session-";
constexpr absl::string_view kSessionRecordSuffix = ".done";
// The sidecar of versions that listed each chunk's own SHA-256; removed when its blob's chain
// is computed.
constexpr absl::string_view kLegacyChunkDigestsSuffix = ".chunks";
// Buffer for rebuilding a hash from a partial file after a restart, or for computing the
// chunk chain of a blob that has no sidecar.
constexpr size_t kRehashChunk = 1 << 20;
// Records kept in memory; 4096 sidecars of 16 GiB blobs would be 512 MiB, but stores that big
// hold far fewer blobs, and a typical record is a few KiB.
constexpr size_t kMaxCachedRecords = 4096;

bool IsSessionKey(absl::string_view key) {
  return absl::StartsWith(key, kSessionPrefix) &&
         ValidateUploadId("upload_id", key.substr(kSessionPrefix.size())).ok();
}

}  // namespace

bool IsHex64(absl::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::Status ValidateHex(absl::string_view hex) {
  if (IsHex64(hex)) return absl::OkStatus();
  return InvalidArgument("digest", "INVALID_DIGEST",
                         absl::StrCat("a blob digest is 64 lowercase hex digits, got \"",
                                      absl::CHexEscape(hex.substr(0, 80)), "\""));
}

std::string SessionKey(absl::string_view id) { return absl::StrCat(kSessionPrefix, id); }

std::string UploadName(absl::string_view key) {
  if (absl::StartsWith(key, kSessionPrefix)) {
    return absl::StrCat("upload session ", key.substr(kSessionPrefix.size()));
  }
  return absl::StrCat("the upload of ", FormatDigest(key));
}

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

bool IsNotStored(const absl::Status& status) {
  return absl::IsNotFound(status) && ErrorReason(status) == "BLOB_NOT_FOUND";
}

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

bool BlobReader::Resident(int64_t offset, int64_t size) const {
  if (fd_ < 0 || offset < 0 || size <= 0) return size == 0;
  const int64_t page = ::sysconf(_SC_PAGESIZE);
  const int64_t start = offset / page * page;
  const size_t length = static_cast<size_t>(offset + size - start);
  // Mapping reads nothing; mincore only asks the kernel which pages it holds.
  void* map = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, fd_, start);
  if (map == MAP_FAILED) return false;
  std::vector<unsigned char> pages((length + page - 1) / page);
  bool all = ::mincore(map, length, pages.data()) == 0;
  for (size_t i = 0; all && i < pages.size(); ++i) all = (pages[i] & 1) != 0;
  ::munmap(map, length);
  return all;
}

ScopedFd BlobReader::Dup() const {
  return ScopedFd(fd_ < 0 ? -1 : ::fcntl(fd_, F_DUPFD_CLOEXEC, 0));
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

absl::Status BlobStore::WriteChain(absl::string_view hex, int64_t size,
                                   absl::string_view chain) const {
  const std::string sidecar = EncodeChainSidecar(size, chain);
  // A unique temp name, because two threads may write the same sidecar at once (ChunkChain
  // of one legacy blob); the content is the same, so the last rename winning is fine.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = absl::StrCat(root_, "/uploads/", hex, kChainSuffix, ".tmp.", ::getpid(),
                                       ".", counter.fetch_add(1));
  const std::string path = ChainPath(hex);
  ScopedFd fd(fs().Open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kBlobMode));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("create ", tmp));
  absl::Status status = PwriteAll(fd.get(), sidecar.data(), sidecar.size(), 0, tmp, fs());
  if (status.ok() && fs().Fsync(fd.get()) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("fsync ", tmp));
  }
  if (status.ok() && fs().Rename(tmp, path) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
  }
  if (!status.ok()) {
    fs().Unlink(tmp);
    return status;
  }
  return FsyncDir(DirOf(path), fs());
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
