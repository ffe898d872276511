#include "storage/blob_record.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/base/internal/endian.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status.h"

namespace modeldist::storage {
namespace {

constexpr absl::string_view kSidecarMagic = "mdchain2";
constexpr size_t kSidecarHeaderBytes = 16;

bool SameTime(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

}  // namespace

FileIdentity FileIdentity::Of(const struct stat& st) {
  return FileIdentity{st.st_dev, st.st_ino, static_cast<int64_t>(st.st_size), st.st_mtim,
                      st.st_ctim};
}

bool FileIdentity::operator==(const FileIdentity& other) const {
  return dev == other.dev && ino == other.ino && size == other.size &&
         SameTime(mtime, other.mtime) && SameTime(ctime, other.ctime);
}

std::string EncodeChainSidecar(int64_t size, absl::string_view chain) {
  std::string out(kSidecarMagic);
  char le[8];
  absl::little_endian::Store64(le, static_cast<uint64_t>(size));
  out.append(le, sizeof(le));
  out.append(chain.data(), chain.size());
  return out;
}

std::optional<ChainSidecar> DecodeChainSidecar(absl::string_view raw) {
  if (raw.size() < kSidecarHeaderBytes || raw.substr(0, kSidecarMagic.size()) != kSidecarMagic) {
    return std::nullopt;
  }
  const uint64_t size = absl::little_endian::Load64(raw.data() + kSidecarMagic.size());
  if (size > (uint64_t{1} << 62)) return std::nullopt;
  ChainSidecar out;
  out.size = static_cast<int64_t>(size);
  if (raw.size() - kSidecarHeaderBytes !=
      static_cast<size_t>(ChunkCount(out.size)) * kChainEntryBytes) {
    return std::nullopt;
  }
  out.chain = std::string(raw.substr(kSidecarHeaderBytes));
  return out;
}

std::optional<ChainSidecar> DecodeLegacyChainSidecar(absl::string_view raw, int64_t file_size) {
  if (raw.substr(0, kSidecarMagic.size()) == kSidecarMagic ||
      raw.size() != static_cast<size_t>(ChunkCount(file_size)) * kChainEntryBytes) {
    return std::nullopt;
  }
  return ChainSidecar{file_size, std::string(raw)};
}

BlobRecord::BlobRecord(std::string hex, FileIdentity identity, ChainSidecar sidecar)
    : hex_(std::move(hex)),
      identity_(identity),
      size_(sidecar.size),
      chain_(std::move(sidecar.chain)),
      verified_(new std::atomic<uint64_t>[static_cast<size_t>((chunks() + 63) / 64)]()) {}

absl::string_view BlobRecord::entry(int64_t index) const {
  return absl::string_view(chain_).substr(static_cast<size_t>(index) * kChainEntryBytes,
                                          kChainEntryBytes);
}

bool BlobRecord::verified(int64_t index) const {
  return (verified_[static_cast<size_t>(index / 64)].load(std::memory_order_acquire) >>
          (index % 64)) &
         1;
}

void BlobRecord::MarkVerified(int64_t index) const {
  verified_[static_cast<size_t>(index / 64)].fetch_or(uint64_t{1} << (index % 64),
                                                      std::memory_order_release);
}

absl::Status ChunkMismatchError(const BlobRecord& record, int64_t chunk) {
  const int64_t start = chunk * kChunkDigestBytes;
  const int64_t end = std::min(record.size(), start + kChunkDigestBytes);
  return MakeError(absl::StatusCode::kDataLoss, "BLOB_CORRUPT",
                   absl::StrCat("blob ", FormatDigest(record.hex()), ": chunk ", chunk, " of ",
                                record.chunks(), " (bytes ", start, "-", end - 1,
                                ") does not match its recorded chain; its bytes on disk are "
                                "damaged"),
                   {{"digest", FormatDigest(record.hex())}, {"chunk", absl::StrCat(chunk)}});
}

absl::Status SizeMismatchError(const BlobRecord& record, int64_t actual) {
  return MakeError(
      absl::StatusCode::kDataLoss, "BLOB_SIZE_MISMATCH",
      absl::StrCat("blob ", FormatDigest(record.hex()), " has ", actual, " bytes on disk, but ",
                   record.size(), " were stored; its file is damaged"),
      {{"digest", FormatDigest(record.hex())},
       {"expected_size", absl::StrCat(record.size())},
       {"actual_size", absl::StrCat(actual)}});
}

}  // namespace modeldist::storage
