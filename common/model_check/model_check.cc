// CheckModel's dispatch by format, DisplayText and DescribeModelInfo.
#include "common/model_check/model_check.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/utf8.h"

namespace modeldist::model_check {
namespace {

// The length of the UTF-8 sequence at the start of `s` (not empty) when it is a printable
// character, else 0: bytes that are not UTF-8 (as strict as protobuf: no overlong forms, no
// surrogates, nothing above U+10FFFF) and control characters (C0, DEL, and the C1 range
// U+0080-U+009F, which some terminals read as escape sequences: U+009B is CSI).
size_t PrintableSequenceLength(absl::string_view s) {
  const size_t length = Utf8SequenceLength(s);
  const auto byte = [&s](size_t i) { return static_cast<unsigned char>(s[i]); };
  if (length == 1 && (byte(0) < 0x20 || byte(0) == 0x7F)) return 0;
  if (length == 2 && byte(0) == 0xC2 && byte(1) < 0xA0) return 0;  // U+0080-U+009F
  return length;
}

}  // namespace

bool HasCheck(v1::Format format) {
  return format == v1::FORMAT_GGUF || format == v1::FORMAT_COREML_ZIP;
}

absl::StatusOr<v1::ModelInfo> CheckModel(v1::Format format, const ByteSource& source,
                                         const CheckOptions& options) {
  switch (format) {
    case v1::FORMAT_GGUF:
      return CheckGguf(source, options);
    case v1::FORMAT_COREML_ZIP:
      return CheckCoreMlZip(source, options);
    default:
      return v1::ModelInfo();
  }
}

std::string DisplayText(absl::string_view raw, size_t max_bytes) {
  constexpr absl::string_view kCut = "...";
  max_bytes = std::max(max_bytes, kCut.size() + 1);
  bool printable = true;
  for (size_t i = 0; i < raw.size() && printable;) {
    const size_t n = PrintableSequenceLength(raw.substr(i));
    printable = n > 0;
    i += n;
  }
  // Built a character (or an escape) at a time, so that a cut never splits one.
  std::string out;
  size_t cut = std::string::npos;
  bool after_hex_escape = false;
  for (size_t i = 0; i < raw.size() && out.size() <= max_bytes;) {
    std::string piece;
    if (printable) {
      const size_t n = PrintableSequenceLength(raw.substr(i));
      piece = std::string(raw.substr(i, n));
      i += n;
    } else {
      const unsigned char c = static_cast<unsigned char>(raw[i]);
      piece = absl::CHexEscape(raw.substr(i++, 1));
      // As CHexEscape does for a whole string: a hex digit after \xNN is escaped too, or it
      // would read as part of the escape.
      if (after_hex_escape && piece.size() == 1 && absl::ascii_isxdigit(c)) {
        piece = absl::StrFormat("\\x%02x", c);
      }
      after_hex_escape = absl::StartsWith(piece, "\\x");
    }
    if (cut == std::string::npos && out.size() + piece.size() > max_bytes - kCut.size()) {
      cut = out.size();
    }
    out += piece;
  }
  if (out.size() > max_bytes) {
    out.resize(cut);
    absl::StrAppend(&out, kCut);
  }
  return out;
}

std::string DescribeModelInfo(const v1::ModelInfo& info) {
  std::string out;
  const auto line = [&out](absl::string_view label, const auto& value) {
    absl::StrAppend(&out, "  ", label, ": ", value, "\n");
  };
  if (!info.architecture().empty()) line("architecture", info.architecture());
  if (!info.name().empty()) line("name", info.name());
  if (info.parameter_count() > 0) line("parameters", info.parameter_count());
  if (!info.quantization().empty()) line("quantization", info.quantization());
  if (info.context_length() > 0) line("context length", info.context_length());
  if (!info.tokenizer().empty()) line("tokenizer", info.tokenizer());
  if (info.vocabulary_size() > 0) line("vocabulary", info.vocabulary_size());
  if (!info.container().empty()) line("container", info.container());
  if (info.item_count() > 0) {
    line(info.container().rfind("gguf", 0) == 0 ? "tensors" : "files", info.item_count());
  }
  return out;
}

}  // namespace modeldist::model_check
