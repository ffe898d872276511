// ParseReadResponse (client/download/raw_read.h): the hand-written ReadResponse parser, against
// protobuf's own serializer and parser as the reference, with messages cut into slices at every
// byte; and RawReadStream end to end against a real server and a server sending bad bytes.
#include "client/download/raw_read.h"

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/artifact.grpc.pb.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using client::ParseReadResponse;
using client::RawReadStream;
using client::ReadChunk;
using ::testing::HasSubstr;

std::string Varint(uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out.push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
  return out;
}

std::string Tag(uint32_t field, uint32_t wire_type) { return Varint(field << 3 | wire_type); }

std::string OffsetField(uint64_t offset) { return Tag(1, 0) + Varint(offset); }

std::string DataField(const std::string& data) { return Tag(2, 2) + Varint(data.size()) + data; }

std::string Serialized(int64_t offset, const std::string& data) {
  v1::ReadResponse response;
  response.set_offset(offset);
  response.set_data(data);
  return response.SerializeAsString();
}

// What ParseReadResponse found, with the data pieces checked to lie inside `message` (no copy)
// and to be non-empty.
struct Parsed {
  absl::Status status;
  int64_t offset = 0;
  std::string data;
  size_t pieces = 0;
};

Parsed Parse(const std::string& message, const std::vector<absl::string_view>& slices) {
  Parsed parsed;
  std::vector<absl::string_view> pieces;
  parsed.status = ParseReadResponse(slices, &parsed.offset, &pieces);
  parsed.pieces = pieces.size();
  for (absl::string_view piece : pieces) {
    EXPECT_FALSE(piece.empty());
    EXPECT_GE(piece.data(), message.data());
    EXPECT_LE(piece.data() + piece.size(), message.data() + message.size());
    parsed.data.append(piece.data(), piece.size());
  }
  return parsed;
}

Parsed ParseWhole(const std::string& message) { return Parse(message, {message}); }

// Cuts `message` at `cuts` (ascending positions); empty slices included where cuts repeat.
std::vector<absl::string_view> Cut(const std::string& message, const std::vector<size_t>& cuts) {
  std::vector<absl::string_view> slices;
  size_t begin = 0;
  for (size_t cut : cuts) {
    slices.push_back(absl::string_view(message).substr(begin, cut - begin));
    begin = cut;
  }
  slices.push_back(absl::string_view(message).substr(begin));
  return slices;
}

// Checks that the parser agrees with protobuf on `message`.
void ExpectSameAsProtobuf(const std::string& message, const Parsed& parsed) {
  v1::ReadResponse reference;
  ASSERT_TRUE(reference.ParseFromString(message));
  MD_ASSERT_OK(parsed.status);
  EXPECT_EQ(parsed.offset, reference.offset());
  EXPECT_EQ(parsed.data, reference.data());
}

TEST(ParseReadResponseTest, EveryTwoWaySplit) {
  // A 4-byte offset varint and a 2-byte length varint, so cuts land inside both.
  for (int64_t offset : {int64_t{0}, int64_t{123456789}, int64_t{-1}}) {
    const std::string data = RandomBytes(300, 3);
    const std::string message = Serialized(offset, data);
    for (size_t cut = 0; cut <= message.size(); ++cut) {
      SCOPED_TRACE(absl::StrCat("offset ", offset, ", cut at ", cut));
      Parsed parsed = Parse(message, Cut(message, {cut}));
      MD_ASSERT_OK(parsed.status);
      EXPECT_EQ(parsed.offset, offset);
      EXPECT_EQ(parsed.data, data);
      // One piece per slice the data spans.
      const size_t data_start = message.size() - data.size();
      EXPECT_EQ(parsed.pieces, cut > data_start && cut < message.size() ? 2u : 1u);
    }
  }
}

TEST(ParseReadResponseTest, EveryThreeWaySplitWithUnknownFields) {
  const std::string data = RandomBytes(20, 4);
  const std::string message = Tag(9, 5) + "abcd" + DataField(data) + Tag(3, 1) + "12345678" +
                              OffsetField(1 << 20) + Tag(4, 2) + Varint(3) + "xyz";
  for (size_t a = 0; a <= message.size(); ++a) {
    for (size_t b = a; b <= message.size(); ++b) {
      SCOPED_TRACE(absl::StrCat("cuts at ", a, " and ", b));
      Parsed parsed = Parse(message, Cut(message, {a, b}));
      MD_ASSERT_OK(parsed.status);
      EXPECT_EQ(parsed.offset, 1 << 20);
      EXPECT_EQ(parsed.data, data);
    }
  }
}

TEST(ParseReadResponseTest, OneByteSlices) {
  const std::string data = RandomBytes(1000, 5);
  const std::string message = Serialized(7777777777, data);
  std::vector<size_t> cuts;
  for (size_t i = 1; i < message.size(); ++i) cuts.push_back(i);
  Parsed parsed = Parse(message, Cut(message, cuts));
  MD_ASSERT_OK(parsed.status);
  EXPECT_EQ(parsed.offset, 7777777777);
  EXPECT_EQ(parsed.data, data);
  EXPECT_EQ(parsed.pieces, data.size());
}

TEST(ParseReadResponseTest, FullSizeChunkMatchesProtobuf) {
  const std::string message = Serialized(int64_t{5} << 40, RandomBytes(4 << 20, 6));
  ExpectSameAsProtobuf(message, ParseWhole(message));
}

TEST(ParseReadResponseTest, EmptyMessageIsOffsetZeroNoData) {
  Parsed parsed = Parse("", {});
  MD_ASSERT_OK(parsed.status);
  EXPECT_EQ(parsed.offset, 0);
  EXPECT_EQ(parsed.pieces, 0u);
  const std::string empty;
  parsed = Parse(empty, {empty, empty});
  MD_ASSERT_OK(parsed.status);
  EXPECT_EQ(parsed.pieces, 0u);
}

TEST(ParseReadResponseTest, FieldsInAnyOrderLastOneWins) {
  for (const std::string& message : {
           DataField("hello") + OffsetField(42),
           OffsetField(1) + DataField("first") + OffsetField(42) + DataField("hello"),
           DataField("") + OffsetField(42) + DataField("hello"),
           OffsetField(42) + DataField("hello"),
       }) {
    SCOPED_TRACE(absl::CEscape(message));
    Parsed parsed = ParseWhole(message);
    ExpectSameAsProtobuf(message, parsed);
    EXPECT_EQ(parsed.offset, 42);
    EXPECT_EQ(parsed.data, "hello");
  }
}

TEST(ParseReadResponseTest, SkipsUnknownFieldsOfEveryWireType) {
  const std::string unknown = Tag(3, 0) + Varint(UINT64_MAX) +           // varint
                              Tag(4, 1) + "8 bytes!" +                   // fixed64
                              Tag(5, 2) + Varint(6) + "ignore" +         // length-delimited
                              Tag(6, 5) + "4byt" +                       // fixed32
                              Tag(7, 3) + Tag(1, 0) + Varint(99) +       // group 7 holding
                              Tag(8, 3) + Tag(2, 2) + Varint(1) + "z" +  // group 8 holding data
                              Tag(8, 4) + Tag(7, 4) +                    // (not ours: nested)
                              Tag(536870911, 0) + Varint(1);             // the largest field
  const std::string message = unknown + OffsetField(5) + unknown + DataField("bytes") + unknown;
  Parsed parsed = ParseWhole(message);
  ExpectSameAsProtobuf(message, parsed);
  EXPECT_EQ(parsed.offset, 5);
  EXPECT_EQ(parsed.data, "bytes");
}

TEST(ParseReadResponseTest, MalformedInputsAreDataLoss) {
  struct Case {
    std::string name;
    std::string message;
    std::string error;
    // protobuf reads a known field with the wrong wire type as an unknown field; we refuse it,
    // as no server of ours sends one.
    bool protobuf_accepts = false;
  };
  const std::vector<Case> cases = {
      {"truncated offset varint", Tag(1, 0) + "\x80\x80", "field 1 (offset) varint runs past"},
      {"truncated tag", DataField("x") + "\x80", "tag varint runs past"},
      {"varint longer than 10 bytes", Tag(1, 0) + std::string(10, '\xff') + "\x01",
       "longer than 10 bytes"},
      {"11-byte varint", Tag(1, 0) + std::string(9, '\x80') + "\x81\x01", "longer than 10 bytes"},
      {"data length past the end", Tag(2, 2) + Varint(10) + "short",
       "field 2 (data) says 10 bytes but only 5 remain"},
      {"absurd data length", Tag(2, 2) + Varint(UINT64_MAX) + "x",
       "field 2 (data) says 18446744073709551615 bytes but only 1 remain"},
      {"truncated data length", Tag(2, 2), "field 2 (data) length varint runs past"},
      {"offset as length-delimited", Tag(1, 2) + Varint(1) + "x",
       "field 1 (offset) has wire type 2, expected 0", true},
      {"data as varint", Tag(2, 0) + Varint(5), "field 2 (data) has wire type 0, expected 2", true},
      {"data as fixed32", Tag(2, 5) + "abcd", "field 2 (data) has wire type 5, expected 2", true},
      {"field number 0", Tag(0, 0) + Varint(1), "field number 0"},
      {"tag over 32 bits", Varint(uint64_t{1} << 35), "exceeds 32 bits"},
      {"wire type 6", Tag(3, 6), "field 3 has invalid wire type 6"},
      {"wire type 7", Tag(3, 7), "field 3 has invalid wire type 7"},
      {"unknown length past the end", Tag(5, 2) + Varint(100) + "x",
       "unknown field 5 says 100 bytes but only 1 remain"},
      {"truncated fixed64", Tag(4, 1) + "1234567", "unknown field 4 (fixed64) runs past"},
      {"truncated fixed32", Tag(4, 5) + "123", "unknown field 4 (fixed32) runs past"},
      {"end group without start", Tag(4, 4), "end of group 4 without a start"},
      {"unclosed group", Tag(4, 3) + Tag(3, 0) + Varint(1), "group 4 is not closed"},
      {"mismatched group end", Tag(4, 3) + Tag(5, 4), "group 4 closed as group 5"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(v1::ReadResponse().ParseFromString(c.message), c.protobuf_accepts);
    EXPECT_THAT(ParseWhole(c.message).status,
                StatusIs(absl::StatusCode::kDataLoss,
                         ::testing::AllOf(HasSubstr("malformed ReadResponse at byte "),
                                          HasSubstr(c.error))));
    // The same error wherever the message is cut.
    for (size_t cut = 0; cut <= c.message.size(); ++cut) {
      EXPECT_THAT(Parse(c.message, Cut(c.message, {cut})).status,
                  StatusIs(absl::StatusCode::kDataLoss, HasSubstr(c.error)))
          << "cut at " << cut;
    }
  }
}

TEST(ParseReadResponseTest, DeeplyNestedGroupsAreDataLoss) {
  std::string message;
  for (int i = 0; i < 200; ++i) message += Tag(4, 3);
  for (int i = 0; i < 200; ++i) message += Tag(4, 4);
  EXPECT_THAT(ParseWhole(message).status,
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("groups nested deeper than 100")));
}

TEST(ParseReadResponseTest, ErrorsNameTheBytePosition) {
  const std::string message = OffsetField(300) + Tag(2, 2) + Varint(50) + "abc";
  EXPECT_THAT(ParseWhole(message).status,
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("at byte 4:")));
}

// RawReadStream against a real server: same bytes and offsets as the generated stub gives.
class RawReadStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    digest_ =
        server_.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes_);
  }

  absl::Status Read(const std::string& digest, int64_t offset, int64_t limit, std::string* out) {
    v1::ReadRequest request;
    request.set_digest(digest);
    request.set_offset(offset);
    request.set_limit(limit);
    grpc::ClientContext context;
    RawReadStream stream(server_.channel(), &context, request);
    ReadChunk chunk;
    int64_t expect = offset;
    while (stream.Next(&chunk)) {
      EXPECT_EQ(chunk.offset, expect);
      EXPECT_GT(chunk.size(), 0u);
      expect += static_cast<int64_t>(chunk.size());
      for (absl::string_view piece : chunk.data) out->append(piece.data(), piece.size());
    }
    return stream.Finish();
  }

  TestServer server_;
  const std::string bytes_ = RandomBytes(3 * 1024 * 1024 + 17, 8);
  std::string digest_;
};

TEST_F(RawReadStreamTest, ReadsWholeBlobAndRanges) {
  std::string got;
  MD_ASSERT_OK(Read(digest_, 0, 0, &got));
  EXPECT_EQ(got, bytes_);
  got.clear();
  MD_ASSERT_OK(Read(digest_, 1000001, 2 * 1024 * 1024, &got));
  EXPECT_EQ(got, bytes_.substr(1000001, 2 * 1024 * 1024));
  got.clear();
  MD_ASSERT_OK(Read(digest_, static_cast<int64_t>(bytes_.size()), 0, &got));
  EXPECT_TRUE(got.empty());
}

TEST_F(RawReadStreamTest, ServerErrorsKeepCodeAndMessage) {
  std::string got;
  EXPECT_THAT(Read(digest_, static_cast<int64_t>(bytes_.size()) + 1, 0, &got),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("past the end")));
  EXPECT_THAT(Read(FormatDigest(std::string(64, 'a')), 0, 0, &got),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(Read("sha256:00", 0, 0, &got),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST_F(RawReadStreamTest, AbandonedStreamIsCancelledCleanly) {
  v1::ReadRequest request;
  request.set_digest(digest_);
  grpc::ClientContext context;
  {
    RawReadStream stream(server_.channel(), &context, request);
    ReadChunk chunk;
    ASSERT_TRUE(stream.Next(&chunk));
    // Destroyed without Finish: cancels and drains; the server must not hang on shutdown.
  }
  grpc::ClientContext context2;
  RawReadStream stream(server_.channel(), &context2, request);
  ReadChunk chunk;
  ASSERT_TRUE(stream.Next(&chunk));
  context2.TryCancel();
  while (stream.Next(&chunk)) {
  }
  EXPECT_THAT(stream.Finish(), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
}

// A server whose Read sends one hand-made message, then finishes OK.
class BadBytesService final
    : public v1::ArtifactService::WithRawCallbackMethod_Read<v1::ArtifactService::Service> {
 public:
  explicit BadBytesService(std::string message) : message_(std::move(message)) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Read(grpc::CallbackServerContext*,
                                                   const grpc::ByteBuffer*) override {
    class Reactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
     public:
      explicit Reactor(const std::string& message) {
        grpc::Slice slice(message);
        buffer_ = grpc::ByteBuffer(&slice, 1);
        StartWrite(&buffer_);
      }
      void OnWriteDone(bool) override { Finish(grpc::Status::OK); }
      void OnDone() override { delete this; }

     private:
      grpc::ByteBuffer buffer_;
    };
    return new Reactor(message_);
  }

 private:
  const std::string message_;
};

TEST(RawReadStreamBadServerTest, MalformedMessageIsDataLoss) {
  BadBytesService service(Tag(2, 2) + Varint(1000) + "short");
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  v1::ReadRequest request;
  request.set_digest(FormatDigest(std::string(64, 'c')));
  grpc::ClientContext context;
  RawReadStream stream(server->InProcessChannel(grpc::ChannelArguments()), &context, request);
  ReadChunk chunk;
  EXPECT_FALSE(stream.Next(&chunk));
  EXPECT_FALSE(stream.Next(&chunk));  // stays failed
  EXPECT_THAT(stream.Finish(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("field 2 (data) says 1000 bytes but only 5 remain")));
  server->Shutdown();
}

}  // namespace
}  // namespace modeldist::testing
