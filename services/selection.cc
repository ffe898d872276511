#include "services/selection.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"
#include "common/limits.h"

namespace modeldist::services {
namespace {

// Lower is better.
int FormatRank(v1::Platform platform, v1::Arch arch, v1::Format format) {
  const bool apple_silicon =
      (platform == v1::PLATFORM_MACOS || platform == v1::PLATFORM_IOS) && arch == v1::ARCH_ARM64;
  static constexpr v1::Format kAppleSilicon[] = {v1::FORMAT_COREML_ZIP, v1::FORMAT_GGUF,
                                                 v1::FORMAT_ONNX, v1::FORMAT_TFLITE,
                                                 v1::FORMAT_SAFETENSORS};
  static constexpr v1::Format kOther[] = {v1::FORMAT_GGUF, v1::FORMAT_ONNX, v1::FORMAT_TFLITE,
                                          v1::FORMAT_SAFETENSORS, v1::FORMAT_COREML_ZIP};
  const auto& order = apple_silicon ? kAppleSilicon : kOther;
  auto it = std::find(std::begin(order), std::end(order), format);
  return static_cast<int>(it - std::begin(order));
}

std::string FormatBytes(int64_t bytes) { return absl::StrCat(bytes / (1024 * 1024), " MiB"); }

}  // namespace

std::vector<const v1::Artifact*> RankArtifacts(const v1::Version& version, v1::Platform platform,
                                               v1::Arch arch) {
  std::vector<const v1::Artifact*> out;
  for (const v1::Artifact& a : version.artifacts()) {
    if (a.platform() == platform && (a.arch() == arch || a.arch() == v1::ARCH_ANY)) {
      out.push_back(&a);
    }
  }
  std::stable_sort(out.begin(), out.end(), [&](const v1::Artifact* x, const v1::Artifact* y) {
    const bool x_exact = x->arch() == arch, y_exact = y->arch() == arch;
    if (x_exact != y_exact) return x_exact;
    return FormatRank(platform, arch, x->format()) < FormatRank(platform, arch, y->format());
  });
  return out;
}

int CompareDottedVersions(absl::string_view a, absl::string_view b) {
  std::vector<absl::string_view> pa = absl::StrSplit(a, '.');
  std::vector<absl::string_view> pb = absl::StrSplit(b, '.');
  const size_t n = std::max(pa.size(), pb.size());
  for (size_t i = 0; i < n; ++i) {
    int64_t x = 0, y = 0;
    if (i < pa.size() && !absl::SimpleAtoi(pa[i], &x)) x = 0;
    if (i < pb.size() && !absl::SimpleAtoi(pb[i], &y)) y = 0;
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

std::string UnmetConstraints(const v1::ArtifactConstraints& constraints,
                             const v1::DeviceInfo& device) {
  std::vector<std::string> missing;
  if (!constraints.min_os_version().empty() &&
      (device.os_version().empty() ||
       CompareDottedVersions(device.os_version(), constraints.min_os_version()) < 0)) {
    missing.push_back(
        absl::StrCat("needs OS >= ", constraints.min_os_version(), " (device has ",
                     device.os_version().empty() ? "none reported" : device.os_version(), ")"));
  }
  if (constraints.min_ram_bytes() > 0 && device.ram_bytes() < constraints.min_ram_bytes()) {
    missing.push_back(absl::StrCat("needs RAM >= ", FormatBytes(constraints.min_ram_bytes()),
                                   " (device has ", FormatBytes(device.ram_bytes()), ")"));
  }
  for (int needed : constraints.required_accelerators()) {
    const auto& have = device.accelerators();
    if (std::find(have.begin(), have.end(), needed) == have.end()) {
      missing.push_back(
          absl::StrCat("needs ", v1::Accelerator_Name(static_cast<v1::Accelerator>(needed))));
    }
  }
  return absl::StrJoin(missing, "; ");
}

uint32_t CohortBucket(absl::string_view rollout_id, absl::string_view device_id) {
  Sha256 hash;
  hash.Update(rollout_id.data(), rollout_id.size());
  hash.Update(":", 1);
  hash.Update(device_id.data(), device_id.size());
  const std::string hex = hash.FinishHex();
  uint64_t value = 0;
  for (int i = 0; i < 16; ++i) {
    const char c = hex[i];
    value = (value << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return static_cast<uint32_t>(value % kMaxBasisPoints);
}

bool InCohort(absl::string_view rollout_id, absl::string_view device_id, int32_t basis_points) {
  if (basis_points >= kMaxBasisPoints) return true;
  if (basis_points <= 0 || device_id.empty()) return false;
  return CohortBucket(rollout_id, device_id) < static_cast<uint32_t>(basis_points);
}

}  // namespace modeldist::services
