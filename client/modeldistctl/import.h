// File: import.h
//
// `modeldistctl publish --import`: the artifact's bytes are not sent from this machine; the
// server fetches them itself (RegistryService.ImportArtifact) from an object a team already
// hosts, in one of the server's origins or at a URL, and stores them only when they hash to
// the SHA-256 and size given, which are exactly what the seed's secrets hold. The rest of the
// publish (version, publish, tier) is as for a file (publish.h).
#ifndef MODELDIST_CLIENT_MODELDISTCTL_IMPORT_H_
#define MODELDIST_CLIENT_MODELDISTCTL_IMPORT_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/modeldistctl/registry_client.h"
#include "common/digest.h"

namespace modeldist::ctl {

// Where the server finds an artifact's bytes, and what they must be.
struct ImportFrom {
  std::string origin;  // with `key`: object `key` of the server's origin `origin`
  std::string key;
  std::string url;  // or an http(s) URL, fetched without credentials
  FileDigest expected;
};

// Parses `--import SOURCE` (`ORIGIN:KEY`, or an http:// or https:// URL) with `--sha256 HEX`
// (64 hex digits, optionally `sha256:`-prefixed) and `--size BYTES`. Usage errors name the
// flag.
absl::StatusOr<ImportFrom> ParseImportFlags(const std::string& source, const std::string& sha256,
                                            const std::string& size);

// How the command line names the source: "ORIGIN:KEY" or the URL without its query (a signed
// URL's token stays off the terminal and logs).
std::string ImportName(const ImportFrom& from);

// Has the server import `from`, drawing a progress line labelled `label` on `log` when `draw`.
// Returns once the blob is stored (at once when it was already).
absl::Status ImportArtifact(RegistryClient& client, const ImportFrom& from,
                            const std::string& label, std::ostream* log, bool draw);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_IMPORT_H_
