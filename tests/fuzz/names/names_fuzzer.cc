// libFuzzer target for the ids, names and digests clients send (common/names.h,
// common/digest.h ParseDigest) and the request checks built on them
// (services/request_validation.h).
//
// Input: one mode byte, then the text (mode 5: 2-byte length, two texts).
//   0  ValidateId: an accepted id can be one path component (not empty, ".", "..", no '/' or
//      NUL, at most kMaxIdLength, no "..").
//   1  ValidateUploadId: an accepted id is kMinUploadIdLength..kMaxUploadIdLength characters
//      of [A-Za-z0-9_-].
//   2  ParseModelName: an accepted name is ModelName(its model), and the model a valid id.
//   3  ParseVersionName: an accepted name is its ToString(), both parts valid ids.
//   4  ParseDigest: an accepted digest is `sha256:` + the 64 lowercase hex digits returned.
//   5  RequestCheck: TierChannel, OsVersion, Digest, Text, DeviceIds on the two texts; a
//      failure is INVALID_ARGUMENT with a reason and the field.
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"
#include "common/names.h"
#include "services/request_validation.h"
#include "tests/fuzz/fuzz_util.h"

namespace modeldist {
namespace {

using fuzz::Require;

bool IsInvalidArgumentWithReason(const absl::Status& status) {
  return status.code() == absl::StatusCode::kInvalidArgument && !ErrorReason(status).empty();
}

void CheckId(absl::string_view id) {
  const absl::Status status = ValidateId("id", id);
  Require(status.ok() || IsInvalidArgumentWithReason(status), "ValidateId error");
  if (!status.ok()) return;
  Require(!id.empty() && id != "." && id != ".." && id.size() <= kMaxIdLength,
          "ValidateId accepted an id that is no path component");
  Require(
      !absl::StrContains(id, '/') && !absl::StrContains(id, '\0') && !absl::StrContains(id, ".."),
      "ValidateId accepted '/', NUL or \"..\"");
}

void CheckUploadId(absl::string_view id) {
  const absl::Status status = ValidateUploadId("upload_id", id);
  Require(status.ok() || IsInvalidArgumentWithReason(status), "ValidateUploadId error");
  if (!status.ok()) return;
  Require(id.size() >= kMinUploadIdLength && id.size() <= kMaxUploadIdLength, "upload id length");
  for (char c : id) {
    Require(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-',
            "upload id character");
  }
}

void CheckModelName(absl::string_view name) {
  const auto model = ParseModelName("name", name);
  Require(model.ok() || IsInvalidArgumentWithReason(model.status()), "ParseModelName error");
  if (!model.ok()) return;
  Require(ModelName(*model) == name, "ParseModelName does not round-trip");
  Require(ValidateId("model", *model).ok(), "ParseModelName accepted a bad model id");
}

void CheckVersionName(absl::string_view name) {
  const auto version = ParseVersionName("name", name);
  Require(version.ok() || IsInvalidArgumentWithReason(version.status()), "ParseVersionName error");
  if (!version.ok()) return;
  Require(version->ToString() == name, "ParseVersionName does not round-trip");
  Require(ValidateId("model", version->model).ok() && ValidateId("version", version->version).ok(),
          "ParseVersionName accepted a bad id");
}

void CheckDigest(absl::string_view digest) {
  const auto hex = ParseDigest("digest", digest);
  Require(hex.ok() || hex.status().code() == absl::StatusCode::kInvalidArgument,
          "ParseDigest error");
  if (!hex.ok()) return;
  Require(hex->size() == 64 && FormatDigest(*hex) == digest, "ParseDigest does not round-trip");
  for (char c : *hex) Require(absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f'), "hex digit");
}

void CheckRequest(absl::string_view first, absl::string_view second) {
  std::string channel;
  std::string hex;
  google::protobuf::RepeatedPtrField<std::string> ids;
  *ids.Add() = std::string(first);
  *ids.Add() = std::string(second);
  const absl::Status status = services::RequestCheck()
                                  .TierChannel(first, second, &channel)
                                  .OsVersion("os_version", second)
                                  .Text("text", first)
                                  .DeviceIds(ids)
                                  .Digest("digest", first, &hex)
                                  .status();
  Require(status.ok() || IsInvalidArgumentWithReason(status), "RequestCheck error");
  if (status.ok()) {
    Require(channel == (second.empty() ? kDefaultChannel : second), "channel");
    Require(FormatDigest(hex) == first, "RequestCheck digest");
  }
}

void WriteSeeds(const std::string& dir) {
  const std::string digest = FormatDigest(Sha256::HexOf("x"));
  fuzz::WriteSeed(dir, "0-id", std::string(1, 0) + "llama-3.1_8b");
  fuzz::WriteSeed(dir, "0-dot-dot", std::string(1, 0) + "a..b");
  fuzz::WriteSeed(dir, "1-upload-id", std::string(1, 1) + "Zq3_x-0123456789abcdef");
  fuzz::WriteSeed(dir, "2-model-name", std::string(1, 2) + "models/llama");
  fuzz::WriteSeed(dir, "3-version-name", std::string(1, 3) + "models/llama/versions/2024-06.1");
  fuzz::WriteSeed(dir, "4-digest", std::string(1, 4) + digest);
  fuzz::WriteSeed(dir, "5-request", std::string(1, 5) + fuzz::Join(digest, "14.2.1"));
}

}  // namespace
}  // namespace modeldist

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  modeldist::fuzz::Initialize(modeldist::WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldist;
  if (size < 1) return 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0:
      CheckId(rest);
      break;
    case 1:
      CheckUploadId(rest);
      break;
    case 2:
      CheckModelName(rest);
      break;
    case 3:
      CheckVersionName(rest);
      break;
    case 4:
      CheckDigest(rest);
      break;
    case 5: {
      const auto [first, second] = fuzz::Split(rest);
      CheckRequest(first, second);
      break;
    }
  }
  return 0;
}
