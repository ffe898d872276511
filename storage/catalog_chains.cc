// Chunk chains recorded for read-through (migrations/0005_blob_chains.sql).
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"

namespace modeldist::storage {
namespace {

// OR IGNORE: a digest's chain never changes, so the first record stands.
constexpr char kRecordChain[] =
    "INSERT OR IGNORE INTO blob_chains (digest, size_bytes, chunk_size, chain)"
    " VALUES (?, ?, ?, ?)";
constexpr char kRecordedChain[] =
    "SELECT size_bytes, chunk_size, chain FROM blob_chains WHERE digest = ?";

}  // namespace

absl::Status Catalog::RecordChain(absl::string_view digest, const RecordedChain& chain) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kRecordChain));
  s.BindText(0, digest);
  s.BindInt64(1, chain.size);
  s.BindInt64(2, chain.chunk_size);
  s.BindBlob(3, chain.chain);
  return s.Run();
}

absl::StatusOr<RecordedChain> Catalog::GetRecordedChain(absl::string_view digest) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kRecordedChain));
  s.BindText(0, digest);
  MD_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return MakeError(absl::StatusCode::kNotFound, "CHAIN_NOT_RECORDED",
                     absl::StrCat("no chunk chain is recorded for ", digest),
                     {{"digest", std::string(digest)}});
  }
  RecordedChain out;
  out.size = s.ColumnInt64(0);
  out.chunk_size = s.ColumnInt64(1);
  out.chain = s.ColumnBlob(2);
  return out;
}

}  // namespace modeldist::storage
