// libFuzzer target for what a device reads from a bundle before any signature check
// (tools/fuzz.sh builds it): the fuzzer's bytes as a tar through TarReader, reading each
// entry as InstallBundle does (INDEX through ParseBundleIndex, other entries streamed), and the
// bytes themselves as an INDEX text. Any error but the documented reasons aborts, as do a
// returned entry that breaks the reader's promises (an unsafe name, a size past the cap) and an
// INDEX that does not survive its own serialization; and the sanitizers' findings.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/bundle_format.h"
#include "common/entry_names.h"
#include "common/status.h"
#include "common/tar.h"

namespace {

void Expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "broken promise: %s\n", what);
    abort();
  }
}

void ExpectReason(const absl::Status& status, std::initializer_list<const char*> reasons) {
  if (status.ok()) return;
  const std::string reason = modeldist::ErrorReason(status);
  for (const char* allowed : reasons) {
    if (reason == allowed) return;
  }
  std::fprintf(stderr, "unexpected result: %s\n", status.ToString().c_str());
  abort();
}

void CheckIndex(const std::string& text) {
  absl::StatusOr<modeldist::BundleIndex> index = modeldist::ParseBundleIndex(text);
  ExpectReason(index.status(), {"BUNDLE_MALFORMED"});
  if (!index.ok()) return;
  Expect(index->root_count >= 1 && index->root_count <= modeldist::kMaxBundleRoots,
         "root count within bounds");
  Expect(index->first_root >= 1 &&
             index->first_root + index->root_count - 1 <= modeldist::kMaxBundleRootVersion,
         "root versions within bounds");
  absl::StatusOr<modeldist::BundleIndex> again =
      modeldist::ParseBundleIndex(modeldist::SerializeBundleIndex(*index));
  Expect(again.ok() && again->first_root == index->first_root &&
             again->root_count == index->root_count &&
             again->blob.has_value() == index->blob.has_value() &&
             (!again->blob || (again->blob->digest == index->blob->digest &&
                               again->blob->size == index->blob->size)),
         "INDEX round-trips");
}

absl::Status ReadArchive(int fd) {
  modeldist::TarReader tar(fd, "fuzz.bundle");
  modeldist::TarEntry entry;
  for (int entries = 0; entries < 64; ++entries) {
    MD_ASSIGN_OR_RETURN(bool more, tar.Next(&entry));
    if (!more) return absl::OkStatus();
    std::vector<std::string> components;
    bool is_dir = false;
    Expect(
        modeldist::UnsafeEntryNameProblem(entry.name, 100, &components, &is_dir).empty() && !is_dir,
        "entry names are safe");
    Expect(entry.size >= 0 && entry.size <= modeldist::kMaxTarEntryBytes, "entry size bounded");
    Expect(tar.Remaining() == entry.size, "the whole body is ahead");
    if (entry.name == modeldist::kBundleIndexEntry) {
      MD_ASSIGN_OR_RETURN(std::string text, tar.ReadSmall(modeldist::kMaxBundleIndexBytes));
      CheckIndex(text);
    } else if (entries % 2 == 1) {  // half streamed, half left for Next to skip
      int64_t got = 0;
      MD_RETURN_IF_ERROR(tar.Read(entry.size, [&got](absl::string_view piece) {
        got += static_cast<int64_t>(piece.size());
        return absl::OkStatus();
      }));
      Expect(got == entry.size && tar.Remaining() == 0, "Read hands out the whole body");
    }
  }
  return absl::OkStatus();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  CheckIndex(std::string(reinterpret_cast<const char*>(data), size));
  const int fd = memfd_create("bundle", MFD_CLOEXEC);
  if (fd < 0) abort();
  if (size > 0 && write(fd, data, size) != static_cast<ssize_t>(size)) abort();
  if (lseek(fd, 0, SEEK_SET) != 0) abort();
  ExpectReason(ReadArchive(fd), {"TAR_TRUNCATED", "TAR_BAD_HEADER", "TAR_ENTRY_TOO_LARGE"});
  close(fd);
  return 0;
}
