// File: errors.h
//
// How modeldistctl turns a failure into an exit code. Scripts rely on the codes:
//   0 ok, 1 usage error, 2 server/RPC error, 3 local file error,
//   4 the command worked and found a problem (`scrub`: damaged or missing blobs;
//     `origins check`: an origin that fails its check; `import-env`: a fetched object whose
//     size or SHA-256 is not what its variables say, or that is not a valid model file).
// A status is an RPC error unless it was marked as a usage or local error here, because every
// status that is not made by the CLI itself came back from the server.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_ERRORS_H_
#define MODELDIST_CLIENT_MODELDISTCTL_ERRORS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace modeldist::ctl {

enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 1,
  kExitRpc = 2,
  kExitLocal = 3,
  // Not a failure of the command: it ran to the end and found what it looks for (scrub:
  // damaged or missing blobs). Kept apart from kExitRpc so a cron job can tell "the store
  // is damaged" from "the scrub could not run".
  kExitDamage = 4,
};

// INVALID_ARGUMENT marked as a usage error (bad or missing flags or arguments).
absl::Status UsageError(absl::string_view message);

// Returns `status` marked as a local error (a file could not be read or written). OK stays OK.
absl::Status LocalError(absl::Status status);

// A status marked as "the command found damage" (kExitDamage); `message` is its summary.
absl::Status DamageFound(absl::string_view message);

// The exit code for `status`: kExitOk, or kExitUsage/kExitLocal/kExitDamage for marked
// statuses, else kExitRpc.
ExitCode ExitCodeFor(const absl::Status& status);

// One line for people: "CODE_NAME: message", plus " [REASON]" when the server attached an
// ErrorInfo reason. Usage and local errors omit the code name (it says nothing to a user).
std::string DescribeError(const absl::Status& status);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_ERRORS_H_
