// Table tests for device-aware selection and rollout cohorts.
#include "services/selection.h"

#include <string>

#include "gtest/gtest.h"

namespace modeldist::services {
namespace {

v1::Artifact Art(v1::Platform p, v1::Arch a, v1::Format f) {
  v1::Artifact art;
  art.set_platform(p);
  art.set_arch(a);
  art.set_format(f);
  art.set_digest("sha256:" + std::string(64, 'a' + static_cast<char>(f)));
  return art;
}

// Every platform x arch x format: an artifact is offered to exactly the devices of its platform
// whose arch equals its arch, or to every arch of the platform when it is ARCH_ANY.
TEST(RankArtifactsTest, EveryPlatformArchFormatCombination) {
  const v1::Platform platforms[] = {v1::PLATFORM_MACOS, v1::PLATFORM_IOS, v1::PLATFORM_LINUX,
                                    v1::PLATFORM_WINDOWS, v1::PLATFORM_ANDROID};
  const v1::Arch arches[] = {v1::ARCH_ARM64, v1::ARCH_X86_64, v1::ARCH_ANY};
  const v1::Format formats[] = {v1::FORMAT_COREML_ZIP, v1::FORMAT_GGUF, v1::FORMAT_SAFETENSORS,
                                v1::FORMAT_ONNX, v1::FORMAT_TFLITE};
  const v1::Arch device_arches[] = {v1::ARCH_ARM64, v1::ARCH_X86_64};
  for (v1::Platform p : platforms) {
    for (v1::Arch a : arches) {
      for (v1::Format f : formats) {
        v1::Version version;
        *version.add_artifacts() = Art(p, a, f);
        for (v1::Platform dp : platforms) {
          for (v1::Arch da : device_arches) {
            const bool want = dp == p && (a == da || a == v1::ARCH_ANY);
            EXPECT_EQ(RankArtifacts(version, dp, da).size(), want ? 1u : 0u)
                << v1::Platform_Name(p) << "/" << v1::Arch_Name(a) << "/" << v1::Format_Name(f)
                << " for device " << v1::Platform_Name(dp) << "/" << v1::Arch_Name(da);
          }
        }
      }
    }
  }
}

TEST(RankArtifactsTest, SeedChoicesAppleSiliconCoreMlIntelGguf) {
  v1::Version version;
  *version.add_artifacts() = Art(v1::PLATFORM_MACOS, v1::ARCH_ANY, v1::FORMAT_GGUF);
  *version.add_artifacts() = Art(v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_GGUF);
  *version.add_artifacts() = Art(v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP);
  auto arm = RankArtifacts(version, v1::PLATFORM_MACOS, v1::ARCH_ARM64);
  ASSERT_EQ(arm.size(), 3u);
  EXPECT_EQ(arm[0]->format(), v1::FORMAT_COREML_ZIP);  // exact arch, CoreML preferred
  EXPECT_EQ(arm[1]->format(), v1::FORMAT_GGUF);
  EXPECT_EQ(arm[1]->arch(), v1::ARCH_ARM64);
  EXPECT_EQ(arm[2]->arch(), v1::ARCH_ANY);  // ANY comes last
  auto intel = RankArtifacts(version, v1::PLATFORM_MACOS, v1::ARCH_X86_64);
  ASSERT_EQ(intel.size(), 1u);
  EXPECT_EQ(intel[0]->format(), v1::FORMAT_GGUF);
}

TEST(RankArtifactsTest, LinuxArmPrefersGgufOverCoreMl) {
  v1::Version version;
  *version.add_artifacts() = Art(v1::PLATFORM_LINUX, v1::ARCH_ARM64, v1::FORMAT_ONNX);
  *version.add_artifacts() = Art(v1::PLATFORM_LINUX, v1::ARCH_ARM64, v1::FORMAT_GGUF);
  auto ranked = RankArtifacts(version, v1::PLATFORM_LINUX, v1::ARCH_ARM64);
  ASSERT_EQ(ranked.size(), 2u);
  EXPECT_EQ(ranked[0]->format(), v1::FORMAT_GGUF);
}

TEST(DottedVersionTest, ComparesNumerically) {
  EXPECT_LT(CompareDottedVersions("14.9", "14.10"), 0);
  EXPECT_EQ(CompareDottedVersions("14", "14.0.0"), 0);
  EXPECT_GT(CompareDottedVersions("15.0.1", "15"), 0);
  EXPECT_LT(CompareDottedVersions("", "1"), 0);
}

TEST(ConstraintsTest, EachConstraint) {
  v1::DeviceInfo device;
  device.set_os_version("14.4.1");
  device.set_ram_bytes(16LL << 30);
  device.add_accelerators(v1::ACCELERATOR_METAL);

  v1::ArtifactConstraints none;
  EXPECT_EQ(UnmetConstraints(none, device), "");
  EXPECT_EQ(UnmetConstraints(none, v1::DeviceInfo()), "");

  v1::ArtifactConstraints os;
  os.set_min_os_version("14.0");
  EXPECT_EQ(UnmetConstraints(os, device), "");
  os.set_min_os_version("15.0");
  EXPECT_EQ(UnmetConstraints(os, device), "needs OS >= 15.0 (device has 14.4.1)");
  EXPECT_EQ(UnmetConstraints(os, v1::DeviceInfo()), "needs OS >= 15.0 (device has none reported)");

  v1::ArtifactConstraints ram;
  ram.set_min_ram_bytes(16LL << 30);
  EXPECT_EQ(UnmetConstraints(ram, device), "");
  ram.set_min_ram_bytes(32LL << 30);
  EXPECT_EQ(UnmetConstraints(ram, device), "needs RAM >= 32768 MiB (device has 16384 MiB)");

  v1::ArtifactConstraints acc;
  acc.add_required_accelerators(v1::ACCELERATOR_METAL);
  EXPECT_EQ(UnmetConstraints(acc, device), "");
  acc.add_required_accelerators(v1::ACCELERATOR_ANE);
  EXPECT_EQ(UnmetConstraints(acc, device), "needs ACCELERATOR_ANE");

  v1::ArtifactConstraints all = os;
  all.MergeFrom(ram);
  all.MergeFrom(acc);
  EXPECT_EQ(UnmetConstraints(all, device),
            "needs OS >= 15.0 (device has 14.4.1); needs RAM >= 32768 MiB (device has 16384 "
            "MiB); needs ACCELERATOR_ANE");
}

// Over 100,000 synthetic device ids the share in the cohort is within +-0.5 % of p.
TEST(CohortTest, ShareMatchesBasisPoints) {
  constexpr int kDevices = 100000;
  for (int32_t bp : {100, 1000, 5000}) {
    int in = 0;
    for (int i = 0; i < kDevices; ++i) in += InCohort("r-7", "device-" + std::to_string(i), bp);
    const double share = 100.0 * in / kDevices;
    EXPECT_NEAR(share, bp / 100.0, 0.5) << "basis points " << bp;
  }
}

// Raising the share never moves a device out of the cohort (from B back to A).
TEST(CohortTest, GrowingShareNeverMovesADeviceBack) {
  const int32_t steps[] = {0, 1, 100, 500, 1000, 2500, 5000, 9999, 10000};
  for (int i = 0; i < 20000; ++i) {
    const std::string id = "mac-" + std::to_string(i);
    bool was_in = false;
    for (int32_t bp : steps) {
      const bool in = InCohort("r-1", id, bp);
      EXPECT_FALSE(was_in && !in) << id << " left the cohort at " << bp;
      was_in = in;
    }
    EXPECT_TRUE(was_in);  // 10000 = everyone
  }
}

TEST(CohortTest, DeterministicAndPerRollout) {
  EXPECT_EQ(CohortBucket("r-1", "abc"), CohortBucket("r-1", "abc"));
  int differ = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = "d" + std::to_string(i);
    differ += CohortBucket("r-1", id) != CohortBucket("r-2", id);
  }
  EXPECT_GT(differ, 900);                   // another rollout draws a fresh cohort
  EXPECT_FALSE(InCohort("r-1", "", 9999));  // no device id: never in a partial cohort
  EXPECT_TRUE(InCohort("r-1", "", 10000));
}

}  // namespace
}  // namespace modeldist::services
