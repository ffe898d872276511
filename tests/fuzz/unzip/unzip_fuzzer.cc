// libFuzzer target for the agent's zip extractor (client/agent/unzip.h): the fuzzer's bytes are
// written as a zip file and extracted with UnzipSafely into a folder three levels below a
// scratch root on tmpfs (/dev/shm when there is one, so that the fsyncs cost nothing).
//
// Properties: no crash or sanitizer finding; every error is one a parser may give
// (fuzz_util.h); after an error the destination does not exist; after success the destination
// holds only regular files and directories (no symlink, device or fifo) whose sizes sum to at
// most the limit; and either way the scratch root holds nothing but the zip and the
// destination, so no entry escaped (`..` up to three levels would land inside the root).
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/agent/unzip.h"
#include "common/file_util.h"
#include "tests/fuzz/fuzz_util.h"

namespace modeldist {
namespace {

namespace fs = std::filesystem;
using fuzz::Require;

constexpr int64_t kMaxTotalBytes = 1 << 20;

// root/ holds in.zip and a/b/c/ (the parent of the destination out/).
const std::string& Root() {
  static const std::string* root = [] {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string templ = base + "/modeldist-fuzz-unzip-XXXXXX";
    Require(mkdtemp(templ.data()) != nullptr, "mkdtemp");
    return new std::string(templ);
  }();
  return *root;
}

// Every path under `dir`, checked to be a directory or a regular file; returns the bytes of
// the files.
uint64_t CheckTree(const fs::path& dir) {
  uint64_t bytes = 0;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(dir)) {
    const fs::file_status st = e.symlink_status();
    Require(fs::is_directory(st) || fs::is_regular_file(st),
            "extracted something that is neither a file nor a directory: " + e.path().string());
    if (fs::is_regular_file(st)) bytes += fs::file_size(e.path());
  }
  return bytes;
}

// Whether `root` holds exactly in.zip and a/b/c, plus `out` under it when `with_out`.
void CheckNothingEscaped(const fs::path& root, bool with_out) {
  int count = 0;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(root)) {
    const std::string rel = fs::relative(e.path(), root).string();
    if (rel == "in.zip" || rel == "a" || rel == "a/b" || rel == "a/b/c") {
      ++count;
      continue;
    }
    Require(with_out && (rel == "a/b/c/out" || rel.rfind("a/b/c/out/", 0) == 0),
            "written outside the destination: " + rel);
  }
  Require(count == 4, "the scratch root lost a file it had");
}

// A zip made with libzip from (name, contents) entries; a name ending in '/' is a directory.
std::string MakeZip(const std::vector<std::pair<std::string, std::string>>& entries,
                    bool deflate = true) {
  const std::string path = Root() + "/seed.zip";
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  Require(archive != nullptr, "zip_open");
  for (const auto& [name, contents] : entries) {
    if (!name.empty() && name.back() == '/') {
      Require(zip_dir_add(archive, name.c_str(), ZIP_FL_ENC_UTF_8) >= 0, "zip_dir_add");
      continue;
    }
    zip_source_t* source = zip_source_buffer(archive, contents.data(), contents.size(), 0);
    const zip_int64_t index = zip_file_add(archive, name.c_str(), source, ZIP_FL_ENC_UTF_8);
    Require(index >= 0, "zip_file_add");
    zip_set_file_compression(archive, index, deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  }
  Require(zip_close(archive) == 0, "zip_close");
  auto bytes = ReadFileToString(path);
  Require(bytes.ok(), "read seed zip");
  unlink(path.c_str());
  return *bytes;
}

void WriteSeeds(const std::string& dir) {
  const std::string text(200, 'x');
  fuzz::WriteSeed(dir, "one-file.zip", MakeZip({{"model.bin", "hello"}}));
  fuzz::WriteSeed(dir, "stored.zip", MakeZip({{"a.txt", text}, {"b.txt", "b"}}, false));
  fuzz::WriteSeed(dir, "mlpackage.zip",
                  MakeZip({{"m.mlpackage/", ""},
                           {"m.mlpackage/Manifest.json", R"({"fileFormatVersion":"1.0.0"})"},
                           {"m.mlpackage/Data/", ""},
                           {"m.mlpackage/Data/weights.bin", text}}));
  fuzz::WriteSeed(dir, "dot-dot.zip", MakeZip({{"../../escape.txt", "x"}}));
  fuzz::WriteSeed(dir, "duplicate.zip", MakeZip({{"d/", ""}, {"d", "file"}}, false));
  // libzip writes no file for an archive without entries: the end record alone is one.
  fuzz::WriteSeed(dir, "empty.zip", std::string("PK\x05\x06", 4) + std::string(18, '\0'));
}

}  // namespace
}  // namespace modeldist

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  modeldist::fuzz::Initialize(modeldist::WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldist;
  namespace fs = std::filesystem;
  const std::string& root = Root();
  const std::string zip = root + "/in.zip";
  const fs::path parent = fs::path(root) / "a" / "b" / "c";
  const fs::path out = parent / "out";
  fs::create_directories(parent);
  const absl::Status written =
      WriteFileAtomically(zip, absl::string_view(reinterpret_cast<const char*>(data), size), 0644);
  fuzz::Require(written.ok(), written.ToString());

  agent::UnzipLimits limits;
  limits.max_total_bytes = kMaxTotalBytes;
  limits.max_entries = 1000;
  const absl::Status status = agent::UnzipSafely(zip, out.string(), limits);
  fuzz::RequireParserError(status, "UnzipSafely");
  if (status.ok()) {
    fuzz::Require(CheckTree(out) <= kMaxTotalBytes, "extracted more than max_total_bytes");
  } else {
    fuzz::Require(!fs::exists(fs::symlink_status(out)), "an error left the destination behind");
  }
  CheckNothingEscaped(root, status.ok());
  fs::remove_all(out);
  return 0;
}
