#include "common/status.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist {

absl::Status MakeError(absl::StatusCode code, absl::string_view reason, absl::string_view message,
                       const ErrorMetadata& metadata) {
  absl::Status status(code, message);
  v1::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain("modeldist.dev");
  for (const auto& [key, value] : metadata) (*info.mutable_metadata())[key] = value;
  status.SetPayload(kErrorInfoPayload, absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status InvalidArgument(absl::string_view field, absl::string_view reason,
                             absl::string_view message) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason, message,
                   {{"field", std::string(field)}});
}

namespace {
bool ReadErrorInfo(const absl::Status& status, v1::ErrorInfo* info) {
  auto payload = status.GetPayload(kErrorInfoPayload);
  return payload.has_value() && info->ParseFromString(std::string(*payload));
}
}  // namespace

absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  return WithMessage(status, absl::StrCat(context, ": ", status.message()));
}

absl::Status WithMessage(const absl::Status& status, absl::string_view message) {
  if (status.ok()) return status;
  absl::Status out(status.code(), message);
  status.ForEachPayload([&out](absl::string_view type_url, const absl::Cord& payload) {
    out.SetPayload(type_url, payload);
  });
  return out;
}

absl::Status WithRetryDelay(const absl::Status& status, absl::Duration delay) {
  if (status.ok()) return status;
  v1::RetryInfo info;
  const int64_t micros = absl::ToInt64Microseconds(delay);
  info.mutable_retry_delay()->set_seconds(micros / 1000000);
  info.mutable_retry_delay()->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
  absl::Status out = status;
  out.SetPayload(kRetryInfoPayload, absl::Cord(info.SerializeAsString()));
  return out;
}

std::optional<absl::Duration> RetryDelay(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryInfoPayload);
  v1::RetryInfo info;
  if (!payload.has_value() || !info.ParseFromString(std::string(*payload))) return std::nullopt;
  return absl::Seconds(info.retry_delay().seconds()) +
         absl::Nanoseconds(info.retry_delay().nanos());
}

std::string ErrorReason(const absl::Status& status) {
  v1::ErrorInfo info;
  return ReadErrorInfo(status, &info) ? info.reason() : "";
}

std::string ErrorMetadataValue(const absl::Status& status, absl::string_view key) {
  v1::ErrorInfo info;
  if (!ReadErrorInfo(status, &info)) return "";
  auto it = info.metadata().find(std::string(key));
  return it == info.metadata().end() ? "" : it->second;
}

}  // namespace modeldist
