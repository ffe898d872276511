// Hostile bytes: valid files damaged many thousand times from a fixed seed (bit flips, bytes
// and 64-bit lengths overwritten, cuts). Every result must be OK or INVALID_ARGUMENT with the
// parser's reason: never a crash, a hang, an unbounded allocation (ASan in CI) or another code.
#include <random>
#include <string>

#include "common/model_check/model_check.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/testing/model_files.h"

namespace modeldist::model_check {
namespace {

using ::modeldist::testing::StringSource;

// Damages `bytes` in 1 to 4 places, mostly within its first `hot` bytes (the header).
void Mutate(std::string& bytes, size_t hot, std::mt19937_64& rng) {
  const int count = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < count; ++i) {
    const size_t span = (rng() % 4 == 0) ? bytes.size() : std::min(hot, bytes.size());
    const size_t at = rng() % span;
    switch (rng() % 5) {
      case 0:
        bytes[at] = static_cast<char>(bytes[at] ^ (1 << (rng() % 8)));
        break;
      case 1:
        bytes[at] = static_cast<char>(rng());
        break;
      case 2: {
        static constexpr unsigned char kEdges[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0x20};
        bytes[at] = static_cast<char>(kEdges[rng() % sizeof(kEdges)]);
        break;
      }
      case 3: {  // a 64-bit length or count: huge, tiny or off by a little
        const uint64_t values[] = {rng(), ~uint64_t{0}, uint64_t{1} << (rng() % 64), rng() % 1024};
        const uint64_t value = values[rng() % 4];
        for (size_t b = 0; b < 8 && at + b < bytes.size(); ++b) {
          bytes[at + b] = static_cast<char>(value >> (8 * b));
        }
        break;
      }
      default:
        bytes.resize(at);
        return;
    }
  }
}

void ExpectOkOrRefused(const absl::StatusOr<v1::ModelInfo>& result, const char* reason, int round) {
  if (result.ok()) return;
  ASSERT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument)
      << "round " << round << ": " << result.status();
  ASSERT_EQ(ErrorReason(result.status()), reason) << "round " << round << ": " << result.status();
}

TEST(MutationTest, DamagedGgufIsReadOrRefused) {
  testing::GgufSpec spec;
  spec.alignment = 64;
  const std::string valid = testing::MakeGguf(spec);
  const size_t header = valid.size() - testing::GgufDataBytes(spec);
  std::mt19937_64 rng(20261207);
  int refused = 0;
  constexpr int kRounds = 30000;
  for (int round = 0; round < kRounds; ++round) {
    std::string bytes = valid;
    Mutate(bytes, header, rng);
    StringSource source(bytes);
    const absl::StatusOr<v1::ModelInfo> result = CheckGguf(source, {});
    ExpectOkOrRefused(result, "GGUF_INVALID", round);
    if (HasFatalFailure()) return;
    if (!result.ok()) ++refused;
  }
  // Most damage to a header is caught; a flip inside a token or the data is harmless.
  EXPECT_GT(refused, kRounds / 3);
  RecordProperty("refused", refused);
}

TEST(MutationTest, DamagedCoreMlZipIsReadOrRefused) {
  for (const bool compiled : {false, true}) {
    testing::CoreMlZipSpec spec;
    spec.compiled = compiled;
    const std::string valid = testing::MakeCoreMlZip(spec);
    std::mt19937_64 rng(compiled ? 7 : 8);
    constexpr int kRounds = 5000;
    int refused = 0;
    for (int round = 0; round < kRounds; ++round) {
      std::string bytes = valid;
      Mutate(bytes, bytes.size(), rng);
      StringSource source(bytes);
      const absl::StatusOr<v1::ModelInfo> result = CheckCoreMlZip(source, {});
      ExpectOkOrRefused(result, "COREML_ZIP_INVALID", round);
      if (HasFatalFailure()) return;
      if (!result.ok()) ++refused;
    }
    EXPECT_GT(refused, kRounds / 10);
  }
}

}  // namespace
}  // namespace modeldist::model_check
