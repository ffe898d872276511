#include "tests/storage/blob_store_fixture.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/status.h"
#include "storage/blob_record.h"

namespace modeldist::storage {

using ::modeldist::testing::IsOk;

std::unique_ptr<BlobStore> OpenStore(const std::string& root) {
  auto store = BlobStore::Open(root);
  EXPECT_THAT(store, IsOk());
  return store.ok() ? std::move(store).value() : nullptr;
}

std::string ReadAll(const BlobStore& store, const std::string& hex) {
  auto reader = store.OpenBlob(hex);
  EXPECT_THAT(reader, IsOk());
  if (!reader.ok()) return "";
  std::string out;
  char buf[70001];
  for (;;) {
    auto n = reader->ReadAt(static_cast<int64_t>(out.size()), buf, sizeof buf);
    EXPECT_THAT(n, IsOk());
    if (!n.ok() || *n == 0) break;
    out.append(buf, *n);
  }
  return out;
}

std::vector<std::string> FilesUnder(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) {
      files.push_back(std::filesystem::relative(entry.path(), dir).string());
    }
  }
  return files;
}

std::vector<std::string> ExpectedChain(const std::string& data) {
  std::vector<std::string> chain;
  for (size_t end = kChunkDigestBytes; end < data.size(); end += kChunkDigestBytes) {
    Sha256 prefix;
    prefix.Update(absl::string_view(data).substr(0, end));
    chain.push_back(prefix.ChainingValue());
  }
  if (!data.empty()) chain.push_back(absl::HexStringToBytes(Sha256::HexOf(data)));
  return chain;
}

std::string Concat(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& part : parts) out += part;
  return out;
}

std::string ExpectedSidecar(absl::string_view data) {
  return EncodeChainSidecar(static_cast<int64_t>(data.size()),
                            Concat(ExpectedChain(std::string(data))));
}

std::string ReadFile(const std::string& path) {
  auto contents = ReadFileToString(path);
  EXPECT_THAT(contents, IsOk());
  return contents.ok() ? *contents : "";
}

absl::Status Upload(BlobStore& store, const std::string& hex, const std::string& data,
                    size_t chunk) {
  const int64_t size = static_cast<int64_t>(data.size());
  for (size_t off = 0; off < data.size(); off += chunk) {
    MD_RETURN_IF_ERROR(store.Append(hex, size, static_cast<int64_t>(off),
                                    absl::string_view(data).substr(off, chunk)));
  }
  return store.Finish(hex, size);
}

absl::Status WriteSession(BlobStore& store, const std::string& id, const std::string& data,
                          size_t chunk, int64_t declared_size, size_t from) {
  for (size_t off = from; off < data.size(); off += chunk) {
    MD_RETURN_IF_ERROR(store.AppendToSession(id, declared_size, static_cast<int64_t>(off),
                                             absl::string_view(data).substr(off, chunk)));
  }
  return absl::OkStatus();
}

void Age(const std::string& path, absl::Duration age) {
  struct timespec times[2];
  times[0] = absl::ToTimespec(absl::Now() - age);
  times[1] = times[0];
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

}  // namespace modeldist::storage
