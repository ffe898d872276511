// File: env_import.h
//
// `modeldistctl import-env`: moves a deployment of the seed's manual setup (docs in the seed's
// macos-llm-model-hosting-guide.md) into modeldist in one command. The seed keeps each model
// file as three secrets of its edge function:
//   LOCAL_LLM_MACOS_COREML_ZIP_URL / _SHA256 / _SIZE_BYTES   CoreML zip, macOS arm64
//   LOCAL_LLM_MACOS_INTEL_GGUF_URL / _SHA256 / _SIZE_BYTES   GGUF, macOS x86_64 (optional)
// This file reads them (from the environment or a .env file), and fetches and checks each
// object; import_env_command.cc then publishes the checked files with publish.h's flow.
//
// Why the CLI fetches instead of having the server import the URL (import.h): the objects are
// checked as model files (common/model_check) before anything is created on the server, so a
// secret that points at the wrong or a broken object leaves the catalog untouched.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_ENV_IMPORT_H_
#define MODELDIST_CLIENT_MODELDISTCTL_ENV_IMPORT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"
#include "common/retry_policy.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::ctl {

// One of the seed's objects: where it is and what it must be.
struct SeedObject {
  std::string prefix;  // e.g. "LOCAL_LLM_MACOS_COREML_ZIP": the variables' common part
  v1::Platform platform = v1::PLATFORM_UNSPECIFIED;
  v1::Arch arch = v1::ARCH_UNSPECIFIED;
  v1::Format format = v1::FORMAT_UNSPECIFIED;
  std::string url;
  FileDigest expected;  // hex and size from _SHA256 and _SIZE_BYTES
};

// The seed's variable prefixes and what each names, in the order import-env handles them.
struct SeedTarget {
  const char* prefix;
  v1::Platform platform;
  v1::Arch arch;
  v1::Format format;
};
inline constexpr SeedTarget kSeedTargets[] = {
    {"LOCAL_LLM_MACOS_COREML_ZIP", v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP},
    {"LOCAL_LLM_MACOS_INTEL_GGUF", v1::PLATFORM_MACOS, v1::ARCH_X86_64, v1::FORMAT_GGUF},
};

// The seed's tier (its edge function answers {"platform": "macos", "tier": "llama8b"}).
inline constexpr absl::string_view kSeedTier = "llama8b";

// Parses a .env file's text: `KEY=VALUE` lines, optionally prefixed by `export `; blank lines
// and lines starting with `#` are skipped. A value may be in double quotes (with \" \\ \n
// escapes) or single quotes (taken literally), each optionally followed by a ` # comment`; an
// unquoted value ends at ` #` and is trimmed. A later line for the same key wins, as in a
// shell. A malformed line is a usage error naming `path` and the line number.
absl::StatusOr<std::map<std::string, std::string>> ParseEnvFile(absl::string_view text,
                                                                absl::string_view path);

// A variable's value, or nullopt when it is not set. Empty values count as not set.
using VariableLookup = std::function<std::optional<std::string>(const std::string&)>;

// The objects the variables describe (`source` says where they were read, for messages:
// "the environment" or the .env file's path). Each prefix's three variables must all be set
// or all be unset, and at least one prefix set; otherwise a usage error names the missing
// variable. A malformed URL (not http/https), SHA-256 (64 hex digits, `sha256:` allowed) or
// size (a whole number of bytes, at least 1) is a usage error naming its variable.
absl::StatusOr<std::vector<SeedObject>> SeedObjectsFrom(const VariableLookup& lookup,
                                                        absl::string_view source);

// How the fetches are made.
struct FetchOptions {
  RetryPolicy retry;    // the one retry policy: transport failures and 5xx, resuming
  std::string ca_file;  // extra trust for HTTPS (a private CA); empty: the system's
  std::ostream* log = nullptr;
  bool show_progress = false;  // a progress line on `log` (a terminal)
};

// HEAD `url` (following redirects, with retries): the object's size as the server states it
// (Content-Length), or -1 when it states none. An HTTP error is a local error (exit 3) naming
// the URL without its query.
absl::StatusOr<int64_t> HeadSize(const std::string& url, const FetchOptions& options);

// Fetches `object` into the open, empty file `fd` (`path`, for messages), hashing the bytes as
// they are written: the file is never read back to check it. Interrupted transfers resume
// where they stopped (RangedGet, under options.retry). Returns once the bytes are the size and
// SHA-256 `object` declares. A mismatch is DamageFound (exit 4) with both the expected and the
// actual value; it stops as soon as it is known (a HEAD that states another size, or more bytes
// than declared). Fetch failures are local errors (exit 3).
absl::Status FetchSeedObject(const SeedObject& object, int fd, const std::string& path,
                             const FetchOptions& options);

// The model checks of common/model_check on the fetched file: what it says about itself, or
// DamageFound (exit 4) with the check's message (what is wrong and where) and the URL.
absl::StatusOr<v1::ModelInfo> CheckSeedObject(const SeedObject& object, const std::string& path);

// "macos/arm64/coreml-zip".
std::string SeedTargetName(const SeedObject& object);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_ENV_IMPORT_H_
