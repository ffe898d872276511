// ParseByteRange against RFC 9110 section 14's cases: explicit, open and suffix ranges, ranges
// cut at the end, unsatisfiable ones, and what is ignored (invalid syntax, several ranges).
#include "services/http_server/byte_range.h"

#include "gtest/gtest.h"

namespace modeldist::http_server {
namespace {

using Kind = ByteRange::Kind;

void ExpectPart(absl::string_view header, int64_t size, int64_t first, int64_t last) {
  const ByteRange range = ParseByteRange(header, size);
  EXPECT_EQ(range.kind, Kind::kPart) << header;
  EXPECT_EQ(range.first, first) << header;
  EXPECT_EQ(range.last, last) << header;
}

TEST(ByteRangeTest, ExplicitOpenAndSuffixRanges) {
  ExpectPart("bytes=0-99", 1000, 0, 99);
  ExpectPart("bytes=100-", 1000, 100, 999);
  ExpectPart("bytes=-100", 1000, 900, 999);
  ExpectPart("bytes=999-999", 1000, 999, 999);
  ExpectPart("BYTES=5-9", 1000, 5, 9);     // the unit is case-insensitive
  ExpectPart(" bytes= 5-9 ", 1000, 5, 9);  // optional whitespace
}

TEST(ByteRangeTest, RangesPastTheEndAreCut) {
  ExpectPart("bytes=0-999999", 1000, 0, 999);
  ExpectPart("bytes=-5000", 1000, 0, 999);  // a suffix longer than the body: all of it
  ExpectPart("bytes=10-99999999999999999999999", 1000, 10, 999);  // saturates, no overflow
}

TEST(ByteRangeTest, UnsatisfiableRanges) {
  EXPECT_EQ(ParseByteRange("bytes=1000-", 1000).kind, Kind::kUnsatisfiable);
  EXPECT_EQ(ParseByteRange("bytes=1000-2000", 1000).kind, Kind::kUnsatisfiable);
  EXPECT_EQ(ParseByteRange("bytes=-0", 1000).kind, Kind::kUnsatisfiable);
  EXPECT_EQ(ParseByteRange("bytes=0-", 0).kind, Kind::kUnsatisfiable);  // an empty body
  EXPECT_EQ(ParseByteRange("bytes=-10", 0).kind, Kind::kUnsatisfiable);
}

TEST(ByteRangeTest, WhatIsNotOneValidRangeIsIgnored) {
  for (const char* header :
       {"", "bytes", "bytes=", "bytes=-", "items=0-9", "bytes=9-0", "bytes=a-9", "bytes=0-9x",
        "bytes=+1-9", "bytes=0-1,5-6", "bytes=1-2-3"}) {
    EXPECT_EQ(ParseByteRange(header, 1000).kind, Kind::kWhole) << header;
  }
}

}  // namespace
}  // namespace modeldist::http_server
