#include "client/modeldistctl/enums.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/modeldistctl/errors.h"

namespace modeldist::ctl {
namespace {

template <typename E>
struct EnumName {
  E value;
  absl::string_view name;  // The short name, already normalized.
};

constexpr EnumName<v1::Platform> kPlatforms[] = {{v1::PLATFORM_MACOS, "macos"},
                                                 {v1::PLATFORM_IOS, "ios"},
                                                 {v1::PLATFORM_LINUX, "linux"},
                                                 {v1::PLATFORM_WINDOWS, "windows"},
                                                 {v1::PLATFORM_ANDROID, "android"}};
constexpr EnumName<v1::Arch> kArchs[] = {
    {v1::ARCH_ARM64, "arm64"}, {v1::ARCH_X86_64, "x86_64"}, {v1::ARCH_ANY, "any"}};
constexpr EnumName<v1::Format> kFormats[] = {{v1::FORMAT_COREML_ZIP, "coreml-zip"},
                                             {v1::FORMAT_GGUF, "gguf"},
                                             {v1::FORMAT_SAFETENSORS, "safetensors"},
                                             {v1::FORMAT_ONNX, "onnx"},
                                             {v1::FORMAT_TFLITE, "tflite"}};
constexpr EnumName<v1::Accelerator> kAccelerators[] = {{v1::ACCELERATOR_ANE, "ane"},
                                                       {v1::ACCELERATOR_METAL, "metal"},
                                                       {v1::ACCELERATOR_CUDA, "cuda"},
                                                       {v1::ACCELERATOR_VULKAN, "vulkan"}};

// Lower case with '-' for '_', so "COREML_ZIP", "coreml_zip" and "coreml-zip" compare equal.
std::string Normalize(absl::string_view text) {
  std::string out = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  std::replace(out.begin(), out.end(), '_', '-');
  return out;
}

// `proto_prefix` is the normalized enum prefix ("format-") that proto names carry.
template <typename E, size_t N>
absl::StatusOr<E> ParseEnum(const EnumName<E> (&table)[N], absl::string_view proto_prefix,
                            absl::string_view what, absl::string_view flag,
                            absl::string_view text) {
  std::string key = Normalize(text);
  if (absl::StartsWith(key, proto_prefix)) key = key.substr(proto_prefix.size());
  std::vector<absl::string_view> names;
  for (const EnumName<E>& e : table) {
    if (key == Normalize(e.name)) return e.value;
    names.push_back(e.name);
  }
  return UsageError(absl::StrCat(flag.empty() ? "" : absl::StrCat("--", flag, ": "), "unknown ",
                                 what, " \"", text, "\"; one of ", absl::StrJoin(names, ", ")));
}

template <typename E, size_t N>
std::string NameOf(const EnumName<E> (&table)[N], E value) {
  for (const EnumName<E>& e : table) {
    if (e.value == value) return std::string(e.name);
  }
  return "unspecified";
}

}  // namespace

absl::StatusOr<v1::Platform> ParsePlatform(absl::string_view flag, absl::string_view text) {
  return ParseEnum(kPlatforms, "platform-", "platform", flag, text);
}

absl::StatusOr<v1::Arch> ParseArch(absl::string_view flag, absl::string_view text) {
  return ParseEnum(kArchs, "arch-", "arch", flag, text);
}

absl::StatusOr<v1::Format> ParseFormat(absl::string_view flag, absl::string_view text) {
  return ParseEnum(kFormats, "format-", "format", flag, text);
}

absl::StatusOr<v1::Accelerator> ParseAccelerator(absl::string_view flag, absl::string_view text) {
  return ParseEnum(kAccelerators, "accelerator-", "accelerator", flag, text);
}

absl::StatusOr<std::vector<v1::Accelerator>> ParseAccelerators(absl::string_view flag,
                                                               absl::string_view text) {
  std::vector<v1::Accelerator> out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    if (absl::StripAsciiWhitespace(item).empty()) {
      return UsageError(absl::StrCat("--", flag, ": empty item in \"", text,
                                     "\"; expected a comma-separated list like ane,metal"));
    }
    absl::StatusOr<v1::Accelerator> accelerator = ParseAccelerator(flag, item);
    if (!accelerator.ok()) return accelerator.status();
    if (std::find(out.begin(), out.end(), *accelerator) == out.end()) out.push_back(*accelerator);
  }
  return out;
}

std::string PlatformName(v1::Platform platform) { return NameOf(kPlatforms, platform); }
std::string ArchName(v1::Arch arch) { return NameOf(kArchs, arch); }
std::string FormatName(v1::Format format) { return NameOf(kFormats, format); }
std::string AcceleratorName(v1::Accelerator accelerator) {
  return NameOf(kAccelerators, accelerator);
}

std::string StateName(v1::Version::State state) {
  switch (state) {
    case v1::Version::DRAFT:
      return "DRAFT";
    case v1::Version::PUBLISHED:
      return "PUBLISHED";
    case v1::Version::YANKED:
      return "YANKED";
    default:
      return "UNSPECIFIED";
  }
}

std::string RolloutStateName(v1::Rollout::State state) {
  switch (state) {
    case v1::Rollout::ACTIVE:
      return "ACTIVE";
    case v1::Rollout::PAUSED:
      return "PAUSED";
    case v1::Rollout::COMPLETED:
      return "COMPLETED";
    case v1::Rollout::ABORTED:
      return "ABORTED";
    default:
      return "UNSPECIFIED";
  }
}

}  // namespace modeldist::ctl
