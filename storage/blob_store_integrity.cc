// BlobStore's integrity side: listing, re-reading from disk for a scrub, quarantine and
// eviction. Kept apart from the uploads (blob_store_uploads.cc, blob_store_sessions.cc), which
// are about getting verified bytes in; this is about finding out later that they are no longer
// what was verified, and letting them go.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/chunk_chain.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "storage/blob_store.h"
#include "storage/blob_store_internal.h"

namespace modeldist::storage {
namespace {

// Reads of a scrub: a multiple of the 4 KiB that O_DIRECT needs, and a divisor of the chunk.
constexpr size_t kVerifyReadBytes = 1 << 20;
static_assert(kChunkDigestBytes % kVerifyReadBytes == 0);

std::string QuarantineDir(const std::string& root, absl::string_view hex) {
  return absl::StrCat(root, "/quarantine/", hex);
}

}  // namespace

bool BlobStore::WasQuarantined(absl::string_view hex) const {
  if (!IsHex64(hex)) return false;
  struct stat st;
  return ::stat(QuarantineDir(root_, hex).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

absl::Status BlobStore::Quarantine(absl::string_view hex, absl::string_view details) {
  if (!IsHex64(hex)) {
    return InvalidArgument("digest", "INVALID_DIGEST", "a blob digest is 64 lowercase hex digits");
  }
  const std::string dir = QuarantineDir(root_, hex);
  MD_RETURN_IF_ERROR(MakeDirs(dir, 0750));
  const std::string base = absl::StrCat(dir, "/", absl::ToUnixMicros(absl::Now()));
  MD_RETURN_IF_ERROR(
      WriteFileAtomically(absl::StrCat(base, ".reason"), absl::StrCat(details, "\n"), 0444));
  const std::string blob = BlobPath(hex);
  for (const auto& [from, to] :
       {std::pair{blob, base}, std::pair{ChainPath(hex), base + ".chain"}}) {
    if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, absl::StrCat("rename ", from, " to ", to));
    }
  }
  ForgetRecord(hex);
  MD_RETURN_IF_ERROR(FsyncDir(dir));
  return FsyncDir(blob.substr(0, blob.rfind('/')));
}

absl::Status BlobStore::Evict(absl::string_view hex) {
  if (!IsHex64(hex)) {
    return InvalidArgument("digest", "INVALID_DIGEST", "a blob digest is 64 lowercase hex digits");
  }
  const std::string blob = BlobPath(hex);
  MD_RETURN_IF_ERROR(RemoveBlobFiles(hex).status());
  // Durable like every other change of blobs/: a crash must not bring the file back.
  return FsyncDir(blob.substr(0, blob.rfind('/')));
}

absl::StatusOr<int64_t> BlobStore::RemoveBlobFiles(absl::string_view hex) {
  const std::string path = BlobPath(hex);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) st.st_size = 0;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("rm ", path));
  }
  ::unlink(ChainPath(hex).c_str());
  ForgetRecord(hex);
  return static_cast<int64_t>(st.st_size);
}

absl::StatusOr<std::vector<std::string>> BlobStore::ListBlobs() const {
  const std::string top = absl::StrCat(root_, "/blobs/sha256");
  std::vector<std::string> out;
  DIR* fan = ::opendir(top.c_str());
  if (fan == nullptr) return ErrnoStatus(errno, absl::StrCat("opendir ", top));
  std::vector<std::string> subdirs;
  while (struct dirent* e = ::readdir(fan)) {
    absl::string_view name = e->d_name;
    if (name.size() == 2 && name != "..") subdirs.emplace_back(name);
  }
  ::closedir(fan);
  for (const std::string& sub : subdirs) {
    const std::string path = absl::StrCat(top, "/", sub);
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) continue;  // not a directory
    while (struct dirent* e = ::readdir(dir)) {
      if (IsHex64(e->d_name) && absl::string_view(e->d_name).substr(0, 2) == sub) {
        out.emplace_back(e->d_name);
      }
    }
    ::closedir(dir);
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status BlobStore::Verify(absl::string_view hex,
                               const std::function<bool(int64_t bytes)>& on_read) const {
  // The record first, through the ordinary open (which also catches a wrong size); then a
  // second descriptor that bypasses the page cache, so what is checked is what the disk holds
  // and not a copy that was verified when it was written.
  MD_ASSIGN_OR_RETURN(auto opened, OpenWithRecord(hex));
  const BlobRecord& record = *opened.second;
  const std::string path = BlobPath(hex);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
  bool direct = fd.valid();
  if (!direct) {  // e.g. tmpfs: EINVAL. Drop what is cached so the reads go to the device.
    fd = ScopedFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("open ", path));
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  }
  AlignedBuffer buf = AllocateAligned(kVerifyReadBytes);
  if (buf == nullptr) {
    return MakeError(absl::StatusCode::kResourceExhausted, "OUT_OF_MEMORY",
                     "no memory for the scrub's read buffer");
  }

  ChunkChainBuilder chain(kChunkDigestBytes);
  int64_t offset = 0;
  // Not PreadAll: an O_DIRECT read the file system refuses (EINVAL) switches to a buffered
  // read mid-loop, which a generic loop cannot do.
  while (offset < record.size()) {
    absl::StatusOr<size_t> n =
        direct ? PreadDirect(fd.get(), buf.get(), kVerifyReadBytes, offset, path)
               : PreadAll(fd.get(), buf.get(), kVerifyReadBytes, offset, path);
    if (!n.ok() && direct) {  // the file system refuses direct reads after all
      fd = ScopedFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("open ", path));
      ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
      direct = false;
      continue;
    }
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    const int64_t take = std::min<int64_t>(static_cast<int64_t>(*n), record.size() - offset);
    chain.Update(absl::string_view(buf.get(), static_cast<size_t>(take)));
    offset += take;
    if (on_read && !on_read(take)) {
      return absl::CancelledError(absl::StrCat("the check of ", FormatDigest(hex), " was stopped"));
    }
  }
  if (offset != record.size()) return SizeMismatchError(record, offset);
  const std::string got = chain.Chain();
  if (got != record.chain() && chain.DigestHex() == hex) {
    // The bytes are the blob's (its name is their digest); the sidecar is what is damaged.
    // Replace it rather than quarantine good bytes.
    MD_RETURN_IF_ERROR(WriteChain(hex, record.size(), got));
    ForgetRecord(hex);
    return absl::OkStatus();
  }
  if (got != record.chain()) {
    int64_t bad = 0;  // the first chunk whose entry differs
    while (bad + 1 < record.chunks() &&
           absl::string_view(got).substr(static_cast<size_t>(bad) * kChainEntryBytes,
                                         kChainEntryBytes) == record.entry(bad)) {
      ++bad;
    }
    return ChunkMismatchError(record, bad);
  }
  for (int64_t i = 0; i < record.chunks(); ++i) record.MarkVerified(i);
  return absl::OkStatus();
}

}  // namespace modeldist::storage
