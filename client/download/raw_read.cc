#include "client/download/raw_read.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace modeldist::client {
namespace {

// The method's full name. The generic stub does not own the string it is given, so this one
// lives for the whole process.
const std::string& ReadMethod() {
  static const std::string& method = *new std::string("/modeldist.v1.ArtifactService/Read");
  return method;
}

// Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
enum WireType : uint32_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

// ReadResponse's fields.
constexpr uint32_t kOffsetField = 1;
constexpr uint32_t kDataField = 2;

// protobuf's own recursion limit; deeper groups can only come from a hostile peer.
constexpr int kMaxGroupDepth = 100;

absl::Status Malformed(size_t position, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("malformed ReadResponse at byte ", position, ": ", what));
}

// Reads a message spread over several slices, front to back, without copying it.
class SliceCursor {
 public:
  explicit SliceCursor(absl::Span<const absl::string_view> slices) : slices_(slices) {
    for (absl::string_view s : slices) remaining_ += s.size();
    total_ = remaining_;
  }

  size_t remaining() const { return remaining_; }
  // Bytes consumed so far, for error messages.
  size_t position() const { return total_ - remaining_; }

  // Precondition: remaining() > 0.
  uint8_t NextByte() {
    SkipExhausted();
    const uint8_t byte = static_cast<uint8_t>(slices_[index_][pos_]);
    ++pos_;
    --remaining_;
    return byte;
  }

  // Appends views of the next `n` bytes to `out`, one per slice. Precondition: n <= remaining().
  void Take(size_t n, std::vector<absl::string_view>* out) {
    while (n > 0) {
      SkipExhausted();
      const size_t k = std::min(n, slices_[index_].size() - pos_);
      if (out != nullptr) out->push_back(slices_[index_].substr(pos_, k));
      pos_ += k;
      remaining_ -= k;
      n -= k;
    }
  }

  // Precondition: n <= remaining().
  void Skip(size_t n) { Take(n, nullptr); }

 private:
  // Moves to the first slice with an unread byte; only called while remaining_ > 0.
  void SkipExhausted() {
    while (pos_ == slices_[index_].size()) {
      ++index_;
      pos_ = 0;
    }
  }

  absl::Span<const absl::string_view> slices_;
  size_t index_ = 0;
  size_t pos_ = 0;
  size_t remaining_ = 0;
  size_t total_ = 0;
};

// A base-128 varint of at most 10 bytes (64 bits), as protobuf writes them.
absl::Status ReadVarint(SliceCursor& in, absl::string_view what, uint64_t* value) {
  const size_t start = in.position();
  uint64_t result = 0;
  for (int i = 0;; ++i) {
    if (in.remaining() == 0) {
      return Malformed(start, absl::StrCat(what, " varint runs past the end of the message"));
    }
    const uint8_t byte = in.NextByte();
    // The 10th byte holds bit 63 only; anything more is an 11th byte or lost bits.
    if (i == 9 && byte > 1) {
      return Malformed(start,
                       absl::StrCat(what, " varint is longer than 10 bytes or overflows 64 bits"));
    }
    result |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      *value = result;
      return absl::OkStatus();
    }
  }
}

// A length prefix that fits in what is left of the message.
absl::Status ReadLength(SliceCursor& in, absl::string_view what, size_t* length) {
  const size_t start = in.position();
  uint64_t value = 0;
  if (absl::Status s = ReadVarint(in, absl::StrCat(what, " length"), &value); !s.ok()) return s;
  if (value > in.remaining()) {
    return Malformed(
        start, absl::StrCat(what, " says ", value, " bytes but only ", in.remaining(), " remain"));
  }
  *length = static_cast<size_t>(value);
  return absl::OkStatus();
}

struct Tag {
  uint32_t field = 0;
  uint32_t wire_type = 0;
};

absl::Status ReadTag(SliceCursor& in, Tag* tag) {
  const size_t start = in.position();
  uint64_t value = 0;
  if (absl::Status s = ReadVarint(in, "tag", &value); !s.ok()) return s;
  if (value > UINT32_MAX) return Malformed(start, absl::StrCat("tag ", value, " exceeds 32 bits"));
  tag->field = static_cast<uint32_t>(value >> 3);
  tag->wire_type = static_cast<uint32_t>(value & 7);
  if (tag->field == 0) return Malformed(start, "field number 0");
  return absl::OkStatus();
}

// Skips the value of an unknown field whose tag was just read.
absl::Status SkipField(SliceCursor& in, const Tag& tag, int depth) {
  const std::string what = absl::StrCat("unknown field ", tag.field);
  switch (tag.wire_type) {
    case kVarint: {
      uint64_t ignored = 0;
      return ReadVarint(in, what, &ignored);
    }
    case kFixed64:
    case kFixed32: {
      const size_t width = tag.wire_type == kFixed64 ? 8 : 4;
      if (in.remaining() < width) {
        return Malformed(in.position(), absl::StrCat(what, " (fixed", width * 8,
                                                     ") runs past the end of the message"));
      }
      in.Skip(width);
      return absl::OkStatus();
    }
    case kLengthDelimited: {
      size_t length = 0;
      if (absl::Status s = ReadLength(in, what, &length); !s.ok()) return s;
      in.Skip(length);
      return absl::OkStatus();
    }
    case kStartGroup: {
      if (depth >= kMaxGroupDepth) {
        return Malformed(in.position(), absl::StrCat("groups nested deeper than ", kMaxGroupDepth));
      }
      for (;;) {
        if (in.remaining() == 0) {
          return Malformed(in.position(), absl::StrCat("group ", tag.field, " is not closed"));
        }
        const size_t start = in.position();
        Tag inner;
        if (absl::Status s = ReadTag(in, &inner); !s.ok()) return s;
        if (inner.wire_type == kEndGroup) {
          if (inner.field != tag.field) {
            return Malformed(start,
                             absl::StrCat("group ", tag.field, " closed as group ", inner.field));
          }
          return absl::OkStatus();
        }
        if (absl::Status s = SkipField(in, inner, depth + 1); !s.ok()) return s;
      }
    }
    case kEndGroup:
      return Malformed(in.position(), absl::StrCat("end of group ", tag.field, " without a start"));
    default:
      return Malformed(in.position(),
                       absl::StrCat("field ", tag.field, " has invalid wire type ", tag.wire_type));
  }
}

absl::Status WrongWireType(size_t position, absl::string_view field, uint32_t got, uint32_t want) {
  return Malformed(position, absl::StrCat(field, " has wire type ", got, ", expected ", want));
}

}  // namespace

absl::Status ParseReadResponse(absl::Span<const absl::string_view> slices, int64_t* offset,
                               std::vector<absl::string_view>* data) {
  *offset = 0;
  data->clear();
  SliceCursor in(slices);
  while (in.remaining() > 0) {
    const size_t start = in.position();
    Tag tag;
    if (absl::Status s = ReadTag(in, &tag); !s.ok()) return s;
    if (tag.field == kOffsetField) {
      if (tag.wire_type != kVarint) {
        return WrongWireType(start, "field 1 (offset)", tag.wire_type, kVarint);
      }
      uint64_t value = 0;
      if (absl::Status s = ReadVarint(in, "field 1 (offset)", &value); !s.ok()) return s;
      *offset = static_cast<int64_t>(value);  // int64 is two's complement on the wire
    } else if (tag.field == kDataField) {
      if (tag.wire_type != kLengthDelimited) {
        return WrongWireType(start, "field 2 (data)", tag.wire_type, kLengthDelimited);
      }
      size_t length = 0;
      if (absl::Status s = ReadLength(in, "field 2 (data)", &length); !s.ok()) return s;
      data->clear();  // a repeated singular field: the last one wins
      in.Take(length, data);
    } else if (absl::Status s = SkipField(in, tag, 0); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

size_t ReadChunk::size() const {
  size_t n = 0;
  for (absl::string_view piece : data) n += piece.size();
  return n;
}

void ReadChunk::Clear() {
  offset = 0;
  data.clear();
  slices.clear();
}

RawReadStream::RawReadStream(std::shared_ptr<grpc::ChannelInterface> channel,
                             grpc::ClientContext* context, const v1::ReadRequest& request)
    : context_(context), stub_(std::move(channel)) {
  // Corked: the initial metadata leaves with the request and the half-close in one batch, and
  // StartCall itself completes nothing (it shares that batch).
  context_->set_initial_metadata_corked(true);
  call_ = stub_.PrepareCall(context_, ReadMethod(), &cq_);
  call_->StartCall(this);
  call_->WriteLast(request, grpc::WriteOptions(), this);
  // A failed write shows up as a failed Read and in Finish's status.
  Wait();
}

RawReadStream::~RawReadStream() {
  if (!finished_) {
    context_->TryCancel();
    (void)Finish();
  }
  cq_.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) {
  }
}

bool RawReadStream::Wait() {
  void* tag = nullptr;
  bool ok = false;
  // Next fails only after Shutdown, which only the destructor calls.
  if (!cq_.Next(&tag, &ok)) return false;
  return ok;
}

bool RawReadStream::Next(ReadChunk* chunk) {
  chunk->Clear();
  if (finished_ || !parse_error_.ok()) return false;
  call_->Read(&buffer_, this);
  if (!Wait()) return false;
  // Dump takes references on the received slices; nothing is copied.
  grpc::Status dumped = buffer_.Dump(&chunk->slices);
  buffer_.Clear();
  if (!dumped.ok()) {
    parse_error_ = absl::DataLossError(
        absl::StrCat("cannot read a received ReadResponse: ", dumped.error_message()));
  } else {
    views_.clear();
    for (const grpc::Slice& slice : chunk->slices) {
      views_.emplace_back(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
    parse_error_ = ParseReadResponse(views_, &chunk->offset, &chunk->data);
  }
  if (!parse_error_.ok()) {
    chunk->Clear();
    context_->TryCancel();
    return false;
  }
  return true;
}

absl::Status RawReadStream::Finish() {
  grpc::Status status;
  call_->Finish(&status, this);
  Wait();
  finished_ = true;
  if (!parse_error_.ok()) return parse_error_;
  return FromGrpcStatus(status);
}

}  // namespace modeldist::client
