// File: model_check_matchers.h
//
// What the model check tests assert about a refusal (INVALID_ARGUMENT, the ErrorInfo reason,
// and a message that says what and where) and about what a check read (fit to store and print).
#ifndef MODELDIST_TESTS_COMMON_MODEL_CHECK_MODEL_CHECK_MATCHERS_H_
#define MODELDIST_TESTS_COMMON_MODEL_CHECK_MODEL_CHECK_MATCHERS_H_

#include <string>

#include "absl/strings/escaping.h"
#include "common/status.h"
#include "google/protobuf/util/json_util.h"
#include "modeldist/v1/resources.pb.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {

// Matches a Status or StatusOr that is INVALID_ARGUMENT with ErrorInfo reason `reason` and a
// message containing `substring`.
MATCHER_P2(RefusedWith, reason, substring, "") {
  const absl::Status& s = ::modeldist::testing::GetStatus(arg);
  *result_listener << "status is " << s << " (reason " << ::modeldist::ErrorReason(s) << ")";
  return s.code() == absl::StatusCode::kInvalidArgument &&
         ::modeldist::ErrorReason(s) == std::string(reason) &&
         std::string(s.message()).find(substring) != std::string::npos;
}

// Matches a v1::ModelInfo whose text fields are fit to store and
// print: no byte below 0x20 or 0x7F (an ESC would reach terminals), serializable, parsed back
// equal (proto3 parsing refuses strings that are not UTF-8) and printable as JSON.
MATCHER(IsStorableModelInfo, "") {
  const ::modeldist::v1::ModelInfo& info = arg;
  for (const std::string* text : {&info.architecture(), &info.name(), &info.tokenizer(),
                                  &info.quantization(), &info.container()}) {
    for (char c : *text) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
        *result_listener << "control character in \"" << absl::CHexEscape(*text) << "\"";
        return false;
      }
    }
  }
  ::modeldist::v1::ModelInfo parsed;
  if (!parsed.ParseFromString(info.SerializeAsString())) {
    *result_listener << "does not parse back: " << absl::CHexEscape(info.ShortDebugString());
    return false;
  }
  if (parsed.SerializeAsString() != info.SerializeAsString()) {
    *result_listener << "parses back as " << parsed.ShortDebugString();
    return false;
  }
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(info, &json).ok()) {
    *result_listener << "does not print as JSON";
    return false;
  }
  return true;
}

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_COMMON_MODEL_CHECK_MODEL_CHECK_MATCHERS_H_
