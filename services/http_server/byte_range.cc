#include "services/http_server/byte_range.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace modeldist::http_server {
namespace {

// A run of digits as a number, saturating at the largest int64 (a range past any body is
// still a valid range). nullopt when `text` is not all digits.
std::optional<int64_t> ParseDigits(absl::string_view text) {
  if (text.empty()) return std::nullopt;
  constexpr int64_t kMax = INT64_MAX;
  int64_t value = 0;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    const int digit = c - '0';
    value = value > (kMax - digit) / 10 ? kMax : value * 10 + digit;
  }
  return value;
}

}  // namespace

ByteRange ParseByteRange(absl::string_view header, int64_t size) {
  ByteRange whole;
  header = absl::StripAsciiWhitespace(header);
  constexpr absl::string_view kUnit = "bytes=";
  if (!absl::StartsWithIgnoreCase(header, kUnit)) return whole;
  absl::string_view spec = absl::StripAsciiWhitespace(header.substr(kUnit.size()));
  if (spec.find(',') != absl::string_view::npos) return whole;  // several ranges
  const size_t dash = spec.find('-');
  if (dash == absl::string_view::npos) return whole;
  const absl::string_view first_text = spec.substr(0, dash);
  const absl::string_view last_text = spec.substr(dash + 1);
  ByteRange range;
  range.kind = ByteRange::Kind::kPart;
  if (first_text.empty()) {  // a suffix: the last N bytes
    const std::optional<int64_t> suffix = ParseDigits(last_text);
    if (!suffix.has_value()) return whole;
    if (*suffix == 0 || size == 0) return {ByteRange::Kind::kUnsatisfiable, 0, 0};
    range.first = *suffix >= size ? 0 : size - *suffix;
    range.last = size - 1;
    return range;
  }
  const std::optional<int64_t> first = ParseDigits(first_text);
  if (!first.has_value()) return whole;
  int64_t last = INT64_MAX;
  if (!last_text.empty()) {
    const std::optional<int64_t> parsed = ParseDigits(last_text);
    if (!parsed.has_value() || *parsed < *first) return whole;  // not a valid range
    last = *parsed;
  }
  if (*first >= size) return {ByteRange::Kind::kUnsatisfiable, 0, 0};
  range.first = *first;
  range.last = last >= size ? size - 1 : last;
  return range;
}

}  // namespace modeldist::http_server
