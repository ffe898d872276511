// File: json.h
//
// The little JSON that modeldist writes by hand (modeldistctl's --json lines, the HTTP
// listener's answers): string literals. Messages go through protobuf's JSON printer instead.
#ifndef MODELDIST_COMMON_JSON_H_
#define MODELDIST_COMMON_JSON_H_

#include <string>

#include "absl/strings/string_view.h"

namespace modeldist {

// `text` as a JSON string literal, quotes included: '"' and '\' escaped, control characters
// as \u00XX, a byte that is not part of valid UTF-8 as \ufffd (so the result is valid JSON
// whatever `text` holds). Valid UTF-8 passes as it is.
std::string JsonQuote(absl::string_view text);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_JSON_H_
