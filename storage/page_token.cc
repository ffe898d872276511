#include "storage/page_token.h"

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/limits.h"
#include "common/status.h"

namespace modeldist::storage {

absl::StatusOr<int> EffectivePageSize(int page_size) {
  if (page_size < 0) {
    return InvalidArgument("page_size", "INVALID_PAGE_SIZE",
                           absl::StrCat("page_size must not be negative, got ", page_size));
  }
  if (page_size == 0) return kDefaultPageSize;
  return page_size > kMaxPageSize ? kMaxPageSize : page_size;
}

std::string EncodePageToken(const std::vector<std::string>& parts) {
  std::string raw;
  for (const std::string& part : parts) absl::StrAppend(&raw, part.size(), ":", part);
  return absl::WebSafeBase64Escape(raw);
}

absl::Status InvalidPageToken() {
  return InvalidArgument("page_token", "INVALID_PAGE_TOKEN",
                         "page_token is malformed or belongs to another list; pass the "
                         "next_page_token of the previous page unchanged");
}

absl::StatusOr<std::vector<std::string>> DecodePageToken(absl::string_view token,
                                                         absl::string_view kind, size_t count) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) return InvalidPageToken();
  std::vector<std::string> parts;
  absl::string_view rest = raw;
  while (!rest.empty()) {
    size_t colon = rest.find(':');
    size_t length = 0;
    if (colon == absl::string_view::npos || colon == 0 || colon > 10 ||
        !absl::SimpleAtoi(rest.substr(0, colon), &length) || length > rest.size() - colon - 1) {
      return InvalidPageToken();
    }
    parts.emplace_back(rest.substr(colon + 1, length));
    rest.remove_prefix(colon + 1 + length);
  }
  if (parts.size() != count + 1 || parts[0] != kind) return InvalidPageToken();
  parts.erase(parts.begin());
  return parts;
}

}  // namespace modeldist::storage
