// File: page_token.h
//
// Paging for the catalog's List methods. A page token is the web-safe base64 of
// length-prefixed parts ("<n>:<bytes>"...): the list kind, its parent (if any) and the last key
// returned. Keyset paging stays correct when rows are added between pages, and the kind and
// parent let a token from another list be refused instead of silently skipping rows.
#ifndef MODELDIST_STORAGE_PAGE_TOKEN_H_
#define MODELDIST_STORAGE_PAGE_TOKEN_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist::storage {

// The page size a List method uses for the requested `page_size`: 0 means 100, values above
// 1000 are treated as 1000, negative is INVALID_ARGUMENT (field page_size).
absl::StatusOr<int> EffectivePageSize(int page_size);

// The token for `parts`: the kind first, then the parent (if any) and the last key returned.
std::string EncodePageToken(const std::vector<std::string>& parts);

// The parts after the kind of `token`, which must be of `kind` and have `count` parts after
// it; anything else is InvalidPageToken().
absl::StatusOr<std::vector<std::string>> DecodePageToken(absl::string_view token,
                                                         absl::string_view kind, size_t count);

// INVALID_ARGUMENT (field page_token, reason INVALID_PAGE_TOKEN): for a token that does not
// decode, and for one that decodes but does not fit the request (another parent or filter).
absl::Status InvalidPageToken();

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_PAGE_TOKEN_H_
