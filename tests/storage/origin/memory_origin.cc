#include "tests/storage/origin/memory_origin.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "common/status.h"

namespace modeldist::testing {

absl::Status MemoryOrigin::Put(const std::string& key, const http::BodyReader& source, int64_t size,
                               const std::string& /*sha256_hex*/,
                               const origin::PutProgress& progress) {
  ++puts;
  if (!put_error.ok()) return put_error;
  std::string bytes(static_cast<size_t>(size), '\0');
  // In pieces of at most 1 MiB, as a real upload reads, so that a check in `source` runs.
  for (int64_t done = 0; done < size;) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(1 << 20, size - done));
    if (before_read) before_read(done);
    MD_ASSIGN_OR_RETURN(size_t got, source(done, bytes.data() + done, want));
    if (got == 0) return MakeError(absl::StatusCode::kInternal, "TEST_SHORT_READ", "short read");
    done += static_cast<int64_t>(got);
  }
  if (flip_stored_byte) bytes[bytes.size() / 2] ^= 1;
  objects[key] = bytes;
  if (progress) progress(size, size);
  return absl::OkStatus();
}

absl::StatusOr<origin::ObjectInfo> MemoryOrigin::Head(const std::string& key) {
  if (!head_error.ok()) return head_error;
  auto it = objects.find(key);
  if (it == objects.end()) {
    return MakeError(absl::StatusCode::kNotFound, "HTTP_NOT_FOUND", key + " not found");
  }
  return origin::ObjectInfo{.size = static_cast<int64_t>(it->second.size()) + size_skew};
}

absl::Status MemoryOrigin::Get(const std::string& key, int64_t offset, int64_t length,
                               const origin::ByteSink& sink, const std::atomic<bool>* cancel) {
  ++gets;
  if (stall_get) {
    // A peer that keeps the connection and sends nothing: only the caller's cancel ends it.
    while (cancel == nullptr || !cancel->load()) absl::SleepFor(absl::Milliseconds(5));
    return MakeError(absl::StatusCode::kCancelled, "CANCELLED", "the transfer was cancelled");
  }
  if (!get_error.ok()) return get_error;
  auto it = objects.find(key);
  if (it == objects.end()) {
    return MakeError(absl::StatusCode::kNotFound, "HTTP_NOT_FOUND", key + " not found");
  }
  absl::string_view rest = absl::string_view(it->second).substr(static_cast<size_t>(offset));
  if (length >= 0) rest = rest.substr(0, static_cast<size_t>(length));
  // In pieces, as a transfer arrives, so that a test can act between them.
  int64_t at = offset;
  while (!rest.empty()) {
    if (cancel != nullptr && cancel->load()) {
      return MakeError(absl::StatusCode::kCancelled, "CANCELLED", "the transfer was cancelled");
    }
    if (before_piece) {
      absl::Status go_on = before_piece(at);
      if (!go_on.ok()) return go_on;
    }
    const absl::string_view piece = rest.substr(0, static_cast<size_t>(get_piece_bytes));
    absl::Status sent = sink(piece);
    if (!sent.ok()) return sent;
    at += static_cast<int64_t>(piece.size());
    rest.remove_prefix(piece.size());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MemoryOrigin::DeviceUrl(const std::string& key,
                                                    int64_t /*expires_unix*/) {
  ++device_urls;
  if (!device_url_error.ok()) return device_url_error;
  if (!device_url_base.empty()) return device_url_base + "/" + key;
  return "memory://" + name() + "/" + key;
}

absl::Status MemoryOrigin::Delete(const std::string& key) {
  ++deletes;
  if (!ignore_delete) objects.erase(key);
  return absl::OkStatus();
}

}  // namespace modeldist::testing
