// File: enum_names.h
//
// The short names people and apps write for the fleet's proto enums: "macos", "arm64", "ane"
// (the enum value names without their prefix, any case). The agent's flags and C ABI and the
// HTTP edge endpoint accept the same names through these.
#ifndef MODELDIST_COMMON_ENUM_NAMES_H_
#define MODELDIST_COMMON_ENUM_NAMES_H_

#include "absl/strings/string_view.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist {

// False for anything that is not such a name.
bool ParsePlatformName(absl::string_view text, v1::Platform* out);
bool ParseArchName(absl::string_view text, v1::Arch* out);
bool ParseAcceleratorName(absl::string_view text, v1::Accelerator* out);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_ENUM_NAMES_H_
