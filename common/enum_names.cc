#include "common/enum_names.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace modeldist {

bool ParsePlatformName(absl::string_view text, v1::Platform* out) {
  return v1::Platform_Parse(absl::StrCat("PLATFORM_", absl::AsciiStrToUpper(text)), out);
}

bool ParseArchName(absl::string_view text, v1::Arch* out) {
  return v1::Arch_Parse(absl::StrCat("ARCH_", absl::AsciiStrToUpper(text)), out);
}

bool ParseAcceleratorName(absl::string_view text, v1::Accelerator* out) {
  return v1::Accelerator_Parse(absl::StrCat("ACCELERATOR_", absl::AsciiStrToUpper(text)), out);
}

}  // namespace modeldist
