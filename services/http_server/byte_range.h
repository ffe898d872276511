// File: byte_range.h
//
// The Range request header of RFC 9110 (section 14), as an origin for caches and CDNs needs it:
// one range of bytes, explicit ("bytes=0-99", "bytes=100-") or a suffix ("bytes=-100"). What is
// not a valid byte range is ignored, as the RFC allows (the whole body is sent), and so are
// several ranges at once (a multipart answer helps no CDN; they ask for one range).
#ifndef MODELDIST_SERVICES_HTTP_SERVER_BYTE_RANGE_H_
#define MODELDIST_SERVICES_HTTP_SERVER_BYTE_RANGE_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace modeldist::http_server {

struct ByteRange {
  enum class Kind {
    kWhole,          // no usable Range: send everything (200)
    kPart,           // send [first, last] (206)
    kUnsatisfiable,  // no byte of the range exists (416, "Content-Range: bytes */size")
  };
  Kind kind = Kind::kWhole;
  int64_t first = 0;
  int64_t last = 0;  // inclusive, as in Content-Range
};

// The range `header` (a Range header's value) asks of a body of `size` bytes. A range that
// starts inside the body and ends past it is cut at the end; one that covers the whole body is
// still a part (206), as a cache asked for it.
ByteRange ParseByteRange(absl::string_view header, int64_t size);

}  // namespace modeldist::http_server

#endif  // MODELDIST_SERVICES_HTTP_SERVER_BYTE_RANGE_H_
