// BlobStore's upload sessions: uploads named by a client-chosen id whose digest comes with the
// last bytes (blob_store.h), their `.done` records, and their expiry with the blobs nothing
// wants any more.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/names.h"
#include "common/status.h"
#include "storage/blob_store.h"
#include "storage/blob_store_internal.h"

namespace modeldist::storage {
namespace {

// How often writes to sessions may trigger a sweep of expired ones.
constexpr absl::Duration kSessionSweepInterval = absl::Hours(1);

absl::Status SessionFinished(absl::string_view key, absl::string_view hex) {
  return MakeError(absl::StatusCode::kAlreadyExists, "UPLOAD_SESSION_FINISHED",
                   absl::StrCat(UploadName(key), " is already finished as ", FormatDigest(hex),
                                "; QueryUpload returns its digest"),
                   {{"field", "upload_id"}, {"digest", FormatDigest(hex)}});
}

}  // namespace

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
  MD_ASSIGN_OR_RETURN(ScopedFd fd, upload->Sync(PartialPath(key), /*create=*/false, fs()));
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
    fs().Unlink(SessionRecordPath(key));
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
  MD_RETURN_IF_ERROR(
      WriteFileAtomically(SessionRecordPath(key), hex, kPartialMode, /*overwrite=*/true, fs()));
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
    MD_ASSIGN_OR_RETURN(const int64_t removed, RemoveBlobFiles(hex));
    std::cerr << "modeldist: removed blob sha256:" << hex << " (" << removed
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

}  // namespace modeldist::storage
