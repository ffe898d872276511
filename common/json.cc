#include "common/json.h"

#include "absl/strings/str_format.h"
#include "common/utf8.h"

namespace modeldist {

std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (byte < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", byte);
    } else if (byte < 0x80) {
      out.push_back(c);
    } else if (const size_t n = Utf8SequenceLength(text.substr(i)); n > 0) {
      out.append(text.data() + i, n);
      i += n - 1;
    } else {
      // JSON is UTF-8 (RFC 8259): a strict reader (Swift's JSONDecoder) refuses a whole answer
      // over one stray byte, e.g. of a request body echoed in an error message.
      out += "\\ufffd";
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace modeldist
