// File: tar_entries.h
//
// Every entry of a small tar (a test-sized bundle) with its bytes, in order, read with the
// project's own reader (common/tar.h); a read error fails the test. Header-only: the bundle
// tests of the agent and of modeldistctl share it.
#ifndef MODELDIST_TESTS_TESTING_TAR_ENTRIES_H_
#define MODELDIST_TESTS_TESTING_TAR_ENTRIES_H_

#include <fcntl.h>

#include <string>
#include <utility>
#include <vector>

#include "common/file_util.h"
#include "common/tar.h"
#include "gtest/gtest.h"

namespace modeldist::testing {

using TarEntries = std::vector<std::pair<std::string, std::string>>;

inline TarEntries ReadTarEntries(const std::string& path) {
  TarEntries entries;
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  TarReader tar(fd.get(), path);
  TarEntry entry;
  for (;;) {
    absl::StatusOr<bool> more = tar.Next(&entry);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    absl::StatusOr<std::string> body = tar.ReadSmall(1 << 30);
    EXPECT_TRUE(body.ok()) << body.status();
    entries.emplace_back(entry.name, body.ok() ? *std::move(body) : std::string());
  }
  return entries;
}

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_TAR_ENTRIES_H_
