// File: blob_store_fixture.h
//
// What the blob store's tests share (blob_store_test.cc: uploads by digest and reads;
// blob_chain_test.cc: chunk chains and their sidecars; upload_session_test.cc: upload sessions
// and their expiry): a store in a scratch directory, its files' paths, and expected chains.
#ifndef MODELDIST_TESTS_STORAGE_BLOB_STORE_FIXTURE_H_
#define MODELDIST_TESTS_STORAGE_BLOB_STORE_FIXTURE_H_

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/blob_store.h"
#include "tests/testing/test_util.h"

namespace modeldist::storage {

// Matches an OK StatusOr holding exactly the raw digests `expected`; explains a mismatch in
// hex instead of printing raw bytes.
MATCHER_P(HoldsChain, expected, "") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  const std::vector<std::string>& got = *arg;
  if (got.size() != expected.size()) {
    *result_listener << "has " << got.size() << " entries, expected " << expected.size();
    return false;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != expected[i]) {
      *result_listener << "entry " << i << " is " << HexEncode(got[i]) << ", expected "
                       << HexEncode(expected[i]);
      return false;
    }
  }
  return true;
}

constexpr int64_t kMiB = 1 << 20;

// The store at `root`, or null (with a test failure) when it cannot be opened.
std::unique_ptr<BlobStore> OpenStore(const std::string& root);

// Reads a whole stored blob through BlobReader, in deliberately odd-sized pieces.
std::string ReadAll(const BlobStore& store, const std::string& hex);

// Every regular file below `dir`, relative paths.
std::vector<std::string> FilesUnder(const std::string& dir);

// The chunk chain of `data` by its definition (common/chunk_chain.h), from Sha256 alone:
// the chaining value after each whole chunk that more bytes follow, then the file digest.
std::vector<std::string> ExpectedChain(const std::string& data);

std::string Concat(const std::vector<std::string>& parts);

// The `.chain` sidecar of `data`, as the store must write it (blob_record.h).
std::string ExpectedSidecar(absl::string_view data);

std::string ReadFile(const std::string& path);

// Uploads `data` in `chunk`-byte appends, then finishes.
absl::Status Upload(BlobStore& store, const std::string& hex, const std::string& data,
                    size_t chunk);

// Writes `data` to upload session `id` in `chunk`-byte appends, without finishing it.
absl::Status WriteSession(BlobStore& store, const std::string& id, const std::string& data,
                          size_t chunk, int64_t declared_size, size_t from = 0);

// Sets the modification time of `path` to `age` ago.
void Age(const std::string& path, absl::Duration age);

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenStore(dir_.path());
    ASSERT_NE(store_, nullptr);
  }
  std::string PartialPath(const std::string& hex) const {
    return dir_.Join(absl::StrCat("uploads/", hex, ".partial"));
  }
  std::string ChainPath(const std::string& hex) const { return store_->BlobPath(hex) + ".chain"; }
  std::string SessionPartial(const std::string& id) const {
    return dir_.Join(absl::StrCat("uploads/session-", id, ".partial"));
  }
  std::string SessionRecord(const std::string& id) const {
    return dir_.Join(absl::StrCat("uploads/session-", id, ".done"));
  }
  // Writes a blob the way a version without sidecars left it: the blob file alone.
  void WriteLegacyBlob(const std::string& hex, const std::string& data) {
    const std::string path = store_->BlobPath(hex);
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    FILE* f = fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fwrite(data.data(), 1, data.size(), f), data.size());
    ASSERT_EQ(fclose(f), 0);
    ASSERT_EQ(::chmod(path.c_str(), 0444), 0);
  }
  bool Exists(const std::string& path) const { return ::access(path.c_str(), F_OK) == 0; }

  ::modeldist::testing::ScratchDir dir_;
  std::unique_ptr<BlobStore> store_;
};

}  // namespace modeldist::storage

#endif  // MODELDIST_TESTS_STORAGE_BLOB_STORE_FIXTURE_H_
