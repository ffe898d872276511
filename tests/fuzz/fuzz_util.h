// File: fuzz_util.h
//
// What the libFuzzer targets under tests/fuzz/ share (tools/fuzz.sh builds them): the check
// that aborts on a property violation, the seed writer each target's generator uses, fixed
// signing keys (so a seed's signatures stay valid from run to run), and an in-memory ByteSource.
//
// Seeds: each target writes its seed corpus when run with MODELDIST_FUZZ_SEEDS=<dir> (see
// Initialize); `tools/fuzz.sh --seeds` regenerates tests/fuzz/<target>/corpus/ that way.
#ifndef MODELDIST_TESTS_FUZZ_FUZZ_UTIL_H_
#define MODELDIST_TESTS_FUZZ_FUZZ_UTIL_H_

#include <google/protobuf/stubs/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::fuzz {

// Aborts (a finding for libFuzzer) with `what` when `ok` is false.
inline void Require(bool ok, absl::string_view what) {
  if (ok) return;
  std::fprintf(stderr, "property violated: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

// Aborts unless `status` is OK or has one of the codes a parser may answer untrusted bytes with
// (INVALID_ARGUMENT, PERMISSION_DENIED, FAILED_PRECONDITION, OUT_OF_RANGE, RESOURCE_EXHAUSTED,
// DATA_LOSS, ALREADY_EXISTS) and an ErrorInfo reason: an error without a reason, or INTERNAL /
// UNKNOWN, is a bug of the parser.
inline void RequireParserError(const absl::Status& status, absl::string_view where) {
  if (status.ok()) return;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kAlreadyExists:
      if (!ErrorReason(status).empty()) return;
      break;
    default:
      break;
  }
  std::fprintf(stderr, "%.*s: unexpected error %s\n", static_cast<int>(where.size()), where.data(),
               status.ToString().c_str());
  std::abort();
}

// Splits "<2-byte little-endian length><first><second>" (the length clamped to what is there):
// how a target takes two inputs from one.
inline std::pair<absl::string_view, absl::string_view> Split(absl::string_view data) {
  if (data.size() < 2) return {data, {}};
  const size_t n = std::min<size_t>(
      static_cast<uint8_t>(data[0]) | (static_cast<size_t>(static_cast<uint8_t>(data[1])) << 8),
      data.size() - 2);
  return {data.substr(2, n), data.substr(2 + n)};
}

// The input Split takes apart into `first` and `second` (for seeds).
inline std::string Join(absl::string_view first, absl::string_view second) {
  std::string out;
  out.push_back(static_cast<char>(first.size() & 0xff));
  out.push_back(static_cast<char>(first.size() >> 8));
  return out + std::string(first) + std::string(second);
}

// What every target's LLVMFuzzerInitialize does: silences protobuf's log (a parse of fuzzed
// bytes logs each invalid UTF-8 string, which costs more than the parse), and when
// MODELDIST_FUZZ_SEEDS names a directory, calls `write_seeds(dir)` and exits, so that the
// committed corpus can be remade from code (tools/fuzz.sh --seeds).
inline void Initialize(const std::function<void(const std::string&)>& write_seeds) {
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  const char* dir = std::getenv("MODELDIST_FUZZ_SEEDS");
  if (dir == nullptr || *dir == '\0') return;
  write_seeds(dir);
  std::exit(0);
}

// Writes one seed file `dir`/`name`; aborts on failure (a generator bug).
inline void WriteSeed(const std::string& dir, const std::string& name, absl::string_view bytes) {
  const absl::Status status = WriteFileAtomically(dir + "/" + name, bytes, 0644);
  Require(status.ok(), status.ToString());
}

// A fixed Ed25519 key from PKCS#8 PEM text (through a temporary file: LoadPemFile is the one
// way in). Fixed keys keep the signatures in the seed corpus valid across runs.
inline Ed25519PrivateKey FixedKey(absl::string_view pem) {
  char path[] = "/tmp/modeldist-fuzz-key-XXXXXX";
  const int fd = mkstemp(path);
  Require(fd >= 0, "mkstemp");
  close(fd);
  Require(WriteFileAtomically(path, pem, 0600).ok(), "write key");
  auto key = Ed25519PrivateKey::LoadPemFile(path);
  unlink(path);
  Require(key.ok(), "load key");
  return std::move(key).value();
}

// Three fixed keys (openssl genpkey -algorithm ed25519): the online, root and release roles.
inline constexpr absl::string_view kOnlineKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIIgXvh8iNOqGcayey1c5P/2oBoS9SIS7cZpvBTM9n3O/\n"
    "-----END PRIVATE KEY-----\n";
inline constexpr absl::string_view kRootKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIIv2qzuJ4lgtRBxIGQbhghTbMlwf7bciKKZjj5glbS/I\n"
    "-----END PRIVATE KEY-----\n";
inline constexpr absl::string_view kReleaseKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIChZjFOMclOEyp/qrcy52p7tLr+Wk6di3veHW2Or9+++\n"
    "-----END PRIVATE KEY-----\n";

}  // namespace modeldist::fuzz

#endif  // MODELDIST_TESTS_FUZZ_FUZZ_UTIL_H_
