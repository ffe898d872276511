// BlobStore's uploads by digest, and the steps every upload shares: append (hashing as it
// writes), verify, and commit (fsync, chain sidecar, rename into blobs/). Upload sessions
// (blob_store_sessions.cc) run the same steps under their own keys.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "storage/blob_store.h"
#include "storage/blob_store_internal.h"

namespace modeldist::storage {
namespace {

// An upload starts the write-back of its partial every this many bytes (sync_file_range), so
// the disk writes while the rest arrives and the fsync before the rename has at most this much
// left to write, instead of the whole blob.
constexpr int64_t kWriteBehindBytes = 8 << 20;

absl::Status ValidateExpectedSize(int64_t expected_size) {
  if (expected_size >= 0) return absl::OkStatus();
  return InvalidArgument("size_bytes", "INVALID_SIZE",
                         absl::StrCat("the blob size must not be negative, got ", expected_size));
}

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

}  // namespace

absl::Status BlobStore::CheckFreeSpace(absl::string_view key, int64_t bytes) const {
  if (options_.min_free_bytes <= 0) return absl::OkStatus();
  MD_ASSIGN_OR_RETURN(int64_t free_bytes, FreeBytes(fs(), root_));
  if (free_bytes - bytes >= options_.min_free_bytes) return absl::OkStatus();
  return MakeError(
      absl::StatusCode::kResourceExhausted, "INSUFFICIENT_SPACE",
      absl::StrCat("the server refuses ", UploadName(key), ": its ", bytes,
                   " bytes still to write would leave ", free_bytes - bytes,
                   " bytes free on the server's data disk (", free_bytes,
                   " free now), less than the required margin of ", options_.min_free_bytes,
                   " bytes (--min-free-space); none of them was written. Free space on the server "
                   "(remove unused versions, add disk) and upload again"),
      {{"free_bytes", absl::StrCat(free_bytes)},
       {"needed_bytes", absl::StrCat(bytes)},
       {"min_free_bytes", absl::StrCat(options_.min_free_bytes)}});
}

void BlobStore::Upload::Reset() {
  loaded = true;
  hash = BlobHasher();
  offset = 0;
  written_back = 0;
  checked_chunks = 0;
  dev = 0;
  ino = 0;
  mtime = {};
  reread_from_disk = false;
}

void BlobStore::Upload::Remember(const struct stat& st) {
  dev = st.st_dev;
  ino = st.st_ino;
  mtime = st.st_mtim;
}

bool BlobStore::Upload::Matches(const struct stat& st) const {
  return loaded && st.st_dev == dev && st.st_ino == ino && st.st_size == offset &&
         st.st_mtim.tv_sec == mtime.tv_sec && st.st_mtim.tv_nsec == mtime.tv_nsec;
}

absl::StatusOr<ScopedFd> BlobStore::Upload::Sync(const std::string& path, bool create, Fs& fs) {
  ScopedFd fd(fs.Open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), kPartialMode));
  if (!fd.valid()) {
    if (errno == ENOENT && !create) {
      Reset();
      return fd;
    }
    return ErrnoStatus(errno, absl::StrCat("open ", path));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", path));
  if (Matches(st) && !reread_from_disk) return fd;

  // Rebuild: hash what is on disk, chunk chain included. Mark unloaded first so that a
  // failure part way leaves the next call to try again rather than trust half a hash.
  loaded = false;
  // After a failed fsync: clean cached pages are dropped, so the hash below reads the disk.
  // (Pages still dirty stay, and the next fsync writes them back or fails again.)
  if (reread_from_disk) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  BlobHasher rebuilt;
  MD_ASSIGN_OR_RETURN(int64_t size, HashWholeFile(fd.get(), path, &rebuilt));
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", path));
  hash = rebuilt;
  offset = size;
  written_back = 0;
  checked_chunks = 0;
  loaded = true;
  reread_from_disk = false;
  Remember(st);
  return fd;
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
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload->Sync(PartialPath(hex), /*create=*/false, fs()));
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

absl::StatusOr<int64_t> BlobStore::AppendVerified(absl::string_view hex, int64_t expected_size,
                                                  int64_t offset, absl::string_view data,
                                                  absl::string_view expected_chain) {
  MD_RETURN_IF_ERROR(ValidateHex(hex));
  MD_RETURN_IF_ERROR(ValidateExpectedSize(expected_size));
  const int64_t entries = ChunkCount(expected_size);
  if (static_cast<int64_t>(expected_chain.size()) != entries * int64_t{kChainEntryBytes}) {
    return InvalidArgument(
        "chunk_chain", "INVALID_CHAIN",
        absl::StrCat("a chain of ", expected_chain.size(), " bytes cannot describe a blob of ",
                     expected_size, " bytes (", entries, " entries of 32 bytes)"));
  }
  std::shared_ptr<Upload> upload = GetUpload(hex);
  absl::MutexLock lock(&upload->mu);
  if (Contains(hex)) {
    ForgetUpload(hex, upload.get());
    return AlreadyStored(hex);
  }
  MD_RETURN_IF_ERROR(
      AppendLocked(*upload, hex, expected_size, offset, data, /*keep_margin=*/false));
  // The last chunk's entry is the digest, which Finish checks.
  const int64_t whole = std::min(upload->hash.WholeChunks(), std::max<int64_t>(entries - 1, 0));
  for (int64_t i = upload->checked_chunks; i < whole; ++i) {
    if (upload->hash.WholeChunkEntry(i) !=
        expected_chain.substr(static_cast<size_t>(i) * kChainEntryBytes, kChainEntryBytes)) {
      DiscardLocked(*upload, hex);
      ForgetUpload(hex, upload.get());
      return MakeError(absl::StatusCode::kDataLoss, "CHUNK_MISMATCH",
                       absl::StrCat("chunk ", i, " of the bytes written for ", FormatDigest(hex),
                                    " does not match its chain entry; the upload was dropped"),
                       {{"chunk", absl::StrCat(i)}});
    }
  }
  upload->checked_chunks = std::max(upload->checked_chunks, whole);
  // All there: the last chunk is checked by the digest now, so that readers need not wait
  // for Finish's fsync. Finish checks it again before the blob is stored.
  if (upload->offset == expected_size && upload->hash.DigestHex() == hex) return expected_size;
  return upload->checked_chunks * kChunkDigestBytes;
}

absl::Status BlobStore::RewindUpload(absl::string_view hex, int64_t offset) {
  MD_RETURN_IF_ERROR(ValidateHex(hex));
  std::shared_ptr<Upload> upload = GetUpload(hex);
  absl::MutexLock lock(&upload->mu);
  const std::string path = PartialPath(hex);
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload->Sync(path, /*create=*/false, fs()));
  if (offset % kChunkDigestBytes != 0 || offset > upload->offset) {
    return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_OFFSET",
                     absl::StrCat("cannot rewind ", UploadName(hex), " to byte ", offset,
                                  ": not a chunk boundary within its ", upload->offset, " bytes"),
                     {{"field", "offset"}});
  }
  if (offset == upload->offset) return absl::OkStatus();
  const int64_t chunks = offset / kChunkDigestBytes;
  MD_RETURN_IF_ERROR(upload->hash.RewindTo(chunks));
  if (fs().Ftruncate(fd.get(), offset) != 0) {
    upload->loaded = false;  // the next call rebuilds the state from the file
    return ErrnoStatus(errno, absl::StrCat("truncate ", path));
  }
  upload->offset = offset;
  upload->checked_chunks = std::min(upload->checked_chunks, chunks);
  upload->written_back = std::min(upload->written_back, offset);
  struct stat st;
  if (::fstat(fd.get(), &st) == 0) {
    upload->Remember(st);
  } else {
    upload->loaded = false;
  }
  return absl::OkStatus();
}

absl::StatusOr<ScopedFd> BlobStore::OpenPartial(absl::string_view hex) const {
  MD_RETURN_IF_ERROR(ValidateHex(hex));
  const std::string path = PartialPath(hex);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("open ", path));
  return fd;
}

absl::Status BlobStore::AppendLocked(Upload& upload, absl::string_view key, int64_t max_size,
                                     int64_t offset, absl::string_view data, bool keep_margin) {
  const std::string path = PartialPath(key);
  // Before the partial is created or grown, so that a refused upload leaves nothing behind.
  if (keep_margin && !data.empty()) {
    // A session of unknown size (max_size kMaxBlobBytes) is checked as its bytes arrive.
    const int64_t still_to_write = max_size >= kMaxBlobBytes || offset > max_size
                                       ? static_cast<int64_t>(data.size())
                                       : max_size - offset;
    MD_RETURN_IF_ERROR(CheckFreeSpace(key, still_to_write));
  }
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload.Sync(path, /*create=*/true, fs()));
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

  absl::Status written = PwriteAll(fd.get(), data.data(), data.size(), offset, path, fs());
  if (!written.ok()) {
    // Cut off whatever part of `data` reached the file so it matches the hash again; if even
    // that fails, the next call rebuilds the state from the file.
    if (fs().Ftruncate(fd.get(), offset) != 0) upload.loaded = false;
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
  fs().Unlink(PartialPath(key));
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
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload.Sync(PartialPath(key), /*create=*/true, fs()));
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
  if (fs().Fsync(fd) != 0) {
    // The state in memory describes bytes that may never reach the disk: a retried Finish
    // must not commit on its word (see Upload::reread_from_disk), it verifies them again.
    const int err = errno;
    upload.loaded = false;
    upload.reread_from_disk = true;
    return ErrnoStatus(err, absl::StrCat("fsync ", partial));
  }
  if (::fchmod(fd, kBlobMode) != 0) {
    return ErrnoStatus(errno, absl::StrCat("chmod ", partial));
  }
  const std::string blob = BlobPath(hex);
  const std::string blob_dir = DirOf(blob);
  struct stat st;
  bool new_dir = ::stat(blob_dir.c_str(), &st) != 0;
  absl::Status status = MakeDirs(blob_dir, 0755, fs());
  // A new fan-out directory must itself be durable in blobs/sha256, or the rename is lost.
  if (status.ok() && new_dir) status = FsyncDir(DirOf(blob_dir), fs());
  // The sidecar is durable (WriteChain fsyncs the directory) before the blob's name exists,
  // so no crash leaves a stored blob without it. A crash in between leaves a sidecar without
  // a blob, which is harmless: the digest fixes the bytes, so it is right for any later blob
  // of that name, and the next Finish replaces it anyway.
  const std::string chain = upload.hash.Chain();
  if (status.ok()) status = WriteChain(hex, upload.offset, chain);
  if (status.ok() && fs().Rename(partial, blob) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("rename ", partial, " to ", blob));
  }
  if (!status.ok()) {
    // Still a partial: keep it writable so the upload can be finished later.
    ::fchmod(fd, kPartialMode);
    upload.loaded = false;
    return status;
  }
  MD_RETURN_IF_ERROR(FsyncDir(blob_dir, fs()));
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
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload->Sync(PartialPath(hex), /*create=*/false, fs()));
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

}  // namespace modeldist::storage
