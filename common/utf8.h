// File: utf8.h
//
// Strict UTF-8 decoding of one sequence, header-only so that the abseil-only metrics library
// can share it with the model checks: as strict as Go's utf8.ValidString (which Prometheus
// applies to label values) and protobuf's string check: no overlong forms, no surrogates,
// nothing above U+10FFFF.
#ifndef MODELDIST_COMMON_UTF8_H_
#define MODELDIST_COMMON_UTF8_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace modeldist {

// The length of the valid UTF-8 sequence at the start of `s` (which is not empty), or 0.
inline size_t Utf8SequenceLength(absl::string_view s) {
  const auto byte = [&s](size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto continuation = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < s.size() && byte(i) >= lo && byte(i) <= hi;
  };
  const unsigned char b = byte(0);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return continuation(1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    const unsigned char lo = b == 0xE0 ? 0xA0 : 0x80;
    const unsigned char hi = b == 0xED ? 0x9F : 0xBF;
    return continuation(1, lo, hi) && continuation(2) ? 3 : 0;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    const unsigned char lo = b == 0xF0 ? 0x90 : 0x80;
    const unsigned char hi = b == 0xF4 ? 0x8F : 0xBF;
    return continuation(1, lo, hi) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

}  // namespace modeldist

#endif  // MODELDIST_COMMON_UTF8_H_
