// File: enums.h
//
// The names modeldistctl accepts and prints for the proto enums. Input is forgiving: the short
// names from the help (`macos`, `x86_64`, `coreml-zip`) and the proto names (`COREML_ZIP`,
// `FORMAT_COREML_ZIP`) in any case, with `-` and `_` interchangeable. Output always uses the
// short lower-case names. UNSPECIFIED is never accepted.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_ENUMS_H_
#define MODELDIST_CLIENT_MODELDISTCTL_ENUMS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::ctl {

// Each returns a usage error (see errors.h) naming `flag` and listing the accepted values. An
// empty `flag` leaves the flag out, for values that did not come from a flag (the parts of a
// publish PLATFORM/ARCH/FORMAT=FILE argument), whose caller names the argument instead.
absl::StatusOr<v1::Platform> ParsePlatform(absl::string_view flag, absl::string_view text);
absl::StatusOr<v1::Arch> ParseArch(absl::string_view flag, absl::string_view text);
absl::StatusOr<v1::Format> ParseFormat(absl::string_view flag, absl::string_view text);
absl::StatusOr<v1::Accelerator> ParseAccelerator(absl::string_view flag, absl::string_view text);

// A comma-separated list of accelerators, e.g. "ane,metal", in order with duplicates dropped
// (a device either has one or not, so a repeat adds nothing). Empty items are usage errors,
// so "ane,,metal" and a trailing comma do not pass silently.
absl::StatusOr<std::vector<v1::Accelerator>> ParseAccelerators(absl::string_view flag,
                                                               absl::string_view text);

// Short names, e.g. "macos", "arm64", "coreml-zip"; "unspecified" for 0 and unknown values.
std::string PlatformName(v1::Platform platform);
std::string ArchName(v1::Arch arch);
std::string FormatName(v1::Format format);
std::string AcceleratorName(v1::Accelerator accelerator);
// "DRAFT", "PUBLISHED", "YANKED".
std::string StateName(v1::Version::State state);
// "ACTIVE", "PAUSED", "COMPLETED", "ABORTED".
std::string RolloutStateName(v1::Rollout::State state);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_ENUMS_H_
