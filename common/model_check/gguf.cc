// CheckGguf: the GGUF header, metadata and tensor infos, read through a window of at most
// kWindowBytes so that only the header region is read, never the tensor data.
//
// The layout (ggml's include/gguf.h): "GGUF", u32 version, u64 tensor count, u64 metadata
// count, the metadata (key string, u32 type, value), the tensor infos (name string, u32 n_dims,
// n_dims x i64, u32 ggml type, u64 offset), padding to the alignment, the tensor data. Strings
// are a u64 length and the bytes; everything is little-endian. Versions 2 and 3 share this
// layout (3 only allows big-endian files, which are refused here as llama.cpp refuses them).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/model_check/gguf_types.h"
#include "common/model_check/model_check.h"
#include "common/status.h"

namespace modeldist::model_check {
namespace {

constexpr absl::string_view kReason = "GGUF_INVALID";
constexpr size_t kWindowBytes = size_t{1} << 20;
// The GGUF spec caps keys at 65535 bytes; ggml caps tensor names at GGML_MAX_NAME - 1.
constexpr uint64_t kMaxKeyBytes = 65535;
constexpr uint64_t kMaxTensorNameBytes = 63;
// Longer strings are refused (a name or architecture is short); ModelInfo keeps at most
// kMaxDisplayTextBytes of each (DisplayText).
constexpr uint64_t kMaxKeptStringBytes = 4096;
constexpr uint32_t kMaxDims = 4;
constexpr uint64_t kDefaultAlignment = 32;
// The least bytes a metadata entry (key length, 1-byte key, type, 1-byte value) and a tensor
// info (name length, 1-byte name, n_dims, one dim, type, offset) take: counts that need more
// than the file holds are refused before anything is allocated for them.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;
// Real files hold tens of metadata entries and at most a few thousand tensors; these caps keep
// what a check holds in memory small even when the metadata region is large.
constexpr uint64_t kMaxKvCount = uint64_t{1} << 16;
constexpr uint64_t kMaxTensorCount = uint64_t{1} << 18;

enum ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
  kValueTypeCount = 13,
};

const char* TypeName(uint32_t type) {
  static constexpr const char* kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                           "int32",  "float32", "bool",   "string", "array",
                                           "uint64", "int64",   "float64"};
  return type < kValueTypeCount ? kNames[type] : "unknown type";
}

// Bytes of a value of a fixed-size type; 0 for string and array.
uint64_t FixedSize(uint32_t type) {
  switch (type) {
    case kUint8:
    case kInt8:
    case kBool:
      return 1;
    case kUint16:
    case kInt16:
      return 2;
    case kUint32:
    case kInt32:
    case kFloat32:
      return 4;
    case kUint64:
    case kInt64:
    case kFloat64:
      return 8;
    default:
      return 0;
  }
}

bool IsInteger(uint32_t type) { return type <= kInt32 || type == kUint64 || type == kInt64; }

absl::Status Invalid(int64_t offset, absl::string_view message) {
  return MakeError(absl::StatusCode::kInvalidArgument, kReason, absl::StrCat("GGUF: ", message),
                   {{"offset", absl::StrCat(offset)}});
}

// A name from the file, quoted and escaped for a message.
std::string Quote(absl::string_view text) {
  constexpr size_t kShown = 100;
  if (text.size() <= kShown) return absl::StrCat("'", absl::CHexEscape(text), "'");
  return absl::StrCat("'", absl::CHexEscape(text.substr(0, kShown)), "...'");
}

uint64_t LittleEndian(const unsigned char* bytes, size_t size) {
  uint64_t value = 0;
  for (size_t i = size; i > 0; --i) value = (value << 8) | bytes[i - 1];
  return value;
}

// Reads the header region sequentially through one window of the source. Every read is first
// checked against the region's end: the file's end or options.max_metadata_bytes, whichever
// comes first.
class Reader {
 public:
  Reader(const ByteSource& source, int64_t max_metadata_bytes)
      : source_(source),
        file_size_(std::max<int64_t>(source.size(), 0)),
        max_metadata_bytes_(std::max<int64_t>(max_metadata_bytes, 0)),
        limit_(std::min(file_size_, max_metadata_bytes_)) {}

  int64_t pos() const { return pos_; }
  int64_t file_size() const { return file_size_; }
  // Bytes of the region left after pos().
  uint64_t remaining() const { return static_cast<uint64_t>(limit_ - pos_); }

  absl::Status Require(uint64_t n, absl::string_view what) const {
    if (n <= remaining()) return absl::OkStatus();
    if (n > static_cast<uint64_t>(file_size_ - pos_)) {
      return Invalid(pos_, absl::StrCat("the file ends at offset ", file_size_, " inside ", what,
                                        " (at offset ", pos_, ", ", n, " bytes)"));
    }
    return Invalid(pos_, absl::StrCat(what, " (at offset ", pos_, ", ", n,
                                      " bytes) lies past the first ", max_metadata_bytes_,
                                      " bytes, the most header and metadata that is read"));
  }

  absl::Status Read(void* out, size_t n, absl::string_view what) {
    MD_RETURN_IF_ERROR(Require(n, what));
    char* to = static_cast<char*>(out);
    while (n > 0) {
      if (pos_ < window_start_ || pos_ >= window_start_ + static_cast<int64_t>(window_.size())) {
        MD_RETURN_IF_ERROR(Fill(what));
      }
      const size_t at = static_cast<size_t>(pos_ - window_start_);
      const size_t take = std::min(n, window_.size() - at);
      std::memcpy(to, window_.data() + at, take);
      to += take;
      n -= take;
      pos_ += static_cast<int64_t>(take);
    }
    return absl::OkStatus();
  }

  absl::Status Skip(uint64_t n, absl::string_view what) {
    MD_RETURN_IF_ERROR(Require(n, what));
    pos_ += static_cast<int64_t>(n);
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> Unsigned(size_t size, absl::string_view what) {
    unsigned char bytes[8];
    MD_RETURN_IF_ERROR(Read(bytes, size, what));
    return LittleEndian(bytes, size);
  }
  absl::StatusOr<uint32_t> U32(absl::string_view what) {
    MD_ASSIGN_OR_RETURN(uint64_t value, Unsigned(4, what));
    return static_cast<uint32_t>(value);
  }
  absl::StatusOr<uint64_t> U64(absl::string_view what) { return Unsigned(8, what); }

  // A string of at most `max_bytes` bytes; longer ones are refused with `what` in the message.
  absl::StatusOr<std::string> String(absl::string_view what, uint64_t max_bytes) {
    const int64_t at = pos_;
    MD_ASSIGN_OR_RETURN(uint64_t length, U64(what));
    if (length > max_bytes) {
      return Invalid(at, absl::StrCat(what, " (at offset ", at, ") is ", length,
                                      " bytes long; at most ", max_bytes, " are allowed"));
    }
    std::string text(static_cast<size_t>(length), '\0');
    MD_RETURN_IF_ERROR(Read(text.data(), text.size(), what));
    return text;
  }
  absl::Status SkipString(absl::string_view what) {
    MD_ASSIGN_OR_RETURN(uint64_t length, U64(what));
    return Skip(length, what);
  }

 private:
  absl::Status Fill(absl::string_view what) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(kWindowBytes, limit_ - pos_));
    window_.resize(want);
    window_start_ = pos_;
    MD_ASSIGN_OR_RETURN(size_t got, source_.ReadAt(pos_, window_.data(), want));
    window_.resize(got);
    if (got == 0) {
      return Invalid(pos_, absl::StrCat("the file ends at offset ", pos_, " inside ", what,
                                        ", before its stated size of ", file_size_, " bytes"));
    }
    return absl::OkStatus();
  }

  const ByteSource& source_;
  const int64_t file_size_;
  const int64_t max_metadata_bytes_;
  const int64_t limit_;
  int64_t pos_ = 0;
  std::vector<char> window_;
  int64_t window_start_ = 0;
};

// The metadata a check needs, as found.
struct Metadata {
  std::string architecture;
  bool has_architecture = false;
  std::string name;
  std::string tokenizer_model;
  bool has_tokenizer_model = false;
  int64_t vocabulary_size = -1;  // -1: no tokenizer.ggml.tokens
  bool has_file_type = false;
  uint32_t file_type = 0;
  uint64_t alignment = kDefaultAlignment;
  // Every `<something>.context_length` with its value and where it is, since the architecture
  // may come after it.
  std::map<std::string, std::pair<int64_t, int64_t>> context_lengths;
};

// How a key's value must look when the key is one a check reads.
enum class Want { kAny, kString, kStringArray, kInteger, kUint32 };

Want Wanted(absl::string_view key) {
  if (key == "general.architecture" || key == "general.name" || key == "tokenizer.ggml.model") {
    return Want::kString;
  }
  if (key == "tokenizer.ggml.tokens") return Want::kStringArray;
  // ggml reads general.alignment as a uint32 and refuses the file otherwise.
  if (key == "general.alignment") return Want::kUint32;
  if (key == "general.file_type" || absl::EndsWith(key, ".context_length")) {
    return Want::kInteger;
  }
  return Want::kAny;
}

const char* WantName(Want want) {
  switch (want) {
    case Want::kString:
      return "a string";
    case Want::kStringArray:
      return "an array of strings";
    case Want::kInteger:
      return "an integer";
    case Want::kUint32:
      return "a uint32";
    case Want::kAny:
      break;
  }
  return "any value";
}

// Reads an integer value of `type` (IsInteger) as a signed number; uint64 values past INT64_MAX
// come out negative and are refused by the callers, which all want a positive number.
absl::StatusOr<int64_t> ReadInteger(Reader& reader, uint32_t type, absl::string_view what) {
  const uint64_t size = FixedSize(type);
  MD_ASSIGN_OR_RETURN(uint64_t raw, reader.Unsigned(size, what));
  const bool is_signed = type == kInt8 || type == kInt16 || type == kInt32 || type == kInt64;
  if (is_signed && size < 8 && (raw >> (size * 8 - 1)) != 0) {
    raw |= ~uint64_t{0} << (size * 8);  // sign-extend
  }
  return static_cast<int64_t>(raw);
}

// Reads one metadata entry at the reader's position into `metadata`; `keys` refuses repeats.
absl::Status ReadKeyValue(Reader& reader, uint64_t index, std::set<std::string>& keys,
                          Metadata& metadata) {
  const int64_t key_at = reader.pos();
  MD_ASSIGN_OR_RETURN(
      std::string key,
      reader.String(absl::StrCat("the key of metadata entry ", index), kMaxKeyBytes));
  if (key.empty()) {
    return Invalid(key_at, absl::StrCat("metadata entry ", index, " (at offset ", key_at,
                                        ") has an empty key"));
  }
  const std::string what = absl::StrCat("metadata ", Quote(key));
  if (!keys.insert(key).second) {
    return Invalid(key_at,
                   absl::StrCat(what, " (at offset ", key_at, ") appears twice; keys are unique"));
  }
  const int64_t type_at = reader.pos();
  MD_ASSIGN_OR_RETURN(uint32_t type, reader.U32(what));
  uint32_t element_type = type;
  uint64_t count = 1;
  if (type == kArray) {
    MD_ASSIGN_OR_RETURN(element_type, reader.U32(what));
    MD_ASSIGN_OR_RETURN(count, reader.U64(what));
    if (element_type == kArray) {
      return Invalid(type_at, absl::StrCat(what, " (at offset ", type_at,
                                           ") is an array of arrays, which GGUF readers refuse"));
    }
  }
  if (element_type >= kValueTypeCount) {
    return Invalid(
        type_at, absl::StrCat(what, " (at offset ", type_at, ") has unknown type ", element_type));
  }

  const Want want = Wanted(key);
  const bool is_array = type == kArray;
  bool fits = true;
  switch (want) {
    case Want::kAny:
      break;
    case Want::kString:
      fits = !is_array && type == kString;
      break;
    case Want::kStringArray:
      fits = is_array && element_type == kString;
      break;
    case Want::kInteger:
      fits = !is_array && IsInteger(type);
      break;
    case Want::kUint32:
      fits = !is_array && type == kUint32;
      break;
  }
  if (!fits) {
    return Invalid(type_at, absl::StrCat(what, " (at offset ", type_at, ") is ",
                                         is_array ? "an array of " : "a ", TypeName(element_type),
                                         "; it must be ", WantName(want)));
  }

  if (is_array) {
    if (element_type == kString) {
      // Each string is at least its 8-byte length: a count beyond that cannot be in the file.
      if (count > reader.remaining() / 8) {
        return Invalid(type_at, absl::StrCat(what, " (at offset ", type_at, ") says it holds ",
                                             count, " strings; ", reader.remaining(),
                                             " bytes are left to hold them"));
      }
      for (uint64_t i = 0; i < count; ++i) {
        MD_RETURN_IF_ERROR(reader.SkipString(absl::StrCat(what, " string ", i)));
      }
      if (want == Want::kStringArray) {
        if (count == 0) {
          return Invalid(type_at, absl::StrCat(what, " (at offset ", type_at,
                                               ") is empty; a tokenizer needs its tokens"));
        }
        metadata.vocabulary_size = static_cast<int64_t>(count);
      }
      return absl::OkStatus();
    }
    const uint64_t size = FixedSize(element_type);
    if (count > reader.remaining() / size) {
      return Invalid(type_at, absl::StrCat(what, " (at offset ", type_at, ") says it holds ", count,
                                           " values of ", size, " bytes; ", reader.remaining(),
                                           " bytes are left to hold them"));
    }
    return reader.Skip(count * size, what);
  }

  const int64_t value_at = reader.pos();
  switch (want) {
    case Want::kString: {
      MD_ASSIGN_OR_RETURN(std::string value, reader.String(what, kMaxKeptStringBytes));
      if (key == "general.architecture") {
        metadata.architecture = std::move(value);
        metadata.has_architecture = true;
      } else if (key == "general.name") {
        metadata.name = std::move(value);
      } else {
        metadata.tokenizer_model = std::move(value);
        metadata.has_tokenizer_model = true;
      }
      return absl::OkStatus();
    }
    case Want::kUint32: {  // general.alignment
      MD_ASSIGN_OR_RETURN(uint32_t alignment, reader.U32(what));
      if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        return Invalid(value_at, absl::StrCat(what, " (at offset ", value_at, ") is ", alignment,
                                              "; it must be a power of two"));
      }
      metadata.alignment = alignment;
      return absl::OkStatus();
    }
    case Want::kInteger: {
      MD_ASSIGN_OR_RETURN(int64_t value, ReadInteger(reader, type, what));
      if (key == "general.file_type") {
        if (value < 0 || value > int64_t{UINT32_MAX}) {
          return Invalid(value_at, absl::StrCat(what, " (at offset ", value_at, ") is ", value,
                                                ", not a file type"));
        }
        metadata.has_file_type = true;
        metadata.file_type = static_cast<uint32_t>(value);
      } else {
        metadata.context_lengths[key] = {value, value_at};
      }
      return absl::OkStatus();
    }
    default:
      break;
  }
  if (type == kString) return reader.SkipString(what);
  return reader.Skip(FixedSize(type), what);
}

struct Tensor {
  std::string name;
  int64_t info_at = 0;
  const GgmlType* type = nullptr;
  uint32_t type_number = 0;
  int64_t elements = 0;
  uint64_t bytes = 0;
  uint64_t offset = 0;  // from the start of the data section
};

absl::StatusOr<Tensor> ReadTensorInfo(Reader& reader, uint64_t index,
                                      std::set<std::string>& names) {
  Tensor tensor;
  tensor.info_at = reader.pos();
  MD_ASSIGN_OR_RETURN(
      tensor.name, reader.String(absl::StrCat("the name of tensor ", index), kMaxTensorNameBytes));
  const std::string what =
      absl::StrCat("tensor ", Quote(tensor.name), " (at offset ", tensor.info_at, ")");
  if (!names.insert(tensor.name).second) {
    return Invalid(tensor.info_at, absl::StrCat(what, ": the name appears twice"));
  }
  MD_ASSIGN_OR_RETURN(uint32_t n_dims, reader.U32(what));
  if (n_dims < 1 || n_dims > kMaxDims) {
    return Invalid(tensor.info_at,
                   absl::StrCat(what, " has ", n_dims, " dimensions; 1 to 4 are allowed"));
  }
  int64_t dims[kMaxDims] = {1, 1, 1, 1};
  int64_t elements = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    MD_ASSIGN_OR_RETURN(uint64_t dim, reader.U64(what));
    if (dim == 0 || dim > static_cast<uint64_t>(INT64_MAX)) {
      return Invalid(tensor.info_at,
                     absl::StrCat(what, " dimension ", d, " is ", static_cast<int64_t>(dim),
                                  "; every dimension must be positive"));
    }
    dims[d] = static_cast<int64_t>(dim);
    if (dims[d] > INT64_MAX / elements) {
      return Invalid(tensor.info_at,
                     absl::StrCat(what, " has more elements than a 64-bit count holds"));
    }
    elements *= dims[d];
  }
  tensor.elements = elements;
  MD_ASSIGN_OR_RETURN(tensor.type_number, reader.U32(what));
  tensor.type = FindGgmlType(tensor.type_number);
  if (tensor.type == nullptr) {
    return Invalid(tensor.info_at,
                   absl::StrCat(what, " has unknown ggml type ", tensor.type_number));
  }
  // ggml stores a tensor row by row: each row must be whole blocks.
  if (dims[0] % tensor.type->block_size != 0) {
    return Invalid(tensor.info_at,
                   absl::StrCat(what, " rows of ", dims[0], " elements are not a multiple of the ",
                                tensor.type->block_size, "-element blocks of type ",
                                GgmlTypeName(*tensor.type)));
  }
  const int64_t blocks = elements / tensor.type->block_size;
  if (blocks > INT64_MAX / tensor.type->type_size) {
    return Invalid(tensor.info_at, absl::StrCat(what, " has more bytes than a 64-bit size holds"));
  }
  tensor.bytes = static_cast<uint64_t>(blocks * tensor.type->type_size);
  MD_ASSIGN_OR_RETURN(tensor.offset, reader.U64(what));
  return tensor;
}

uint64_t PadTo(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// Every tensor's data inside the file, aligned, not overlapping another's, and where llama.cpp
// looks for it: in the order of the infos, each padded to the alignment.
absl::Status CheckTensorData(const std::vector<Tensor>& tensors, uint64_t data_start,
                             uint64_t alignment, uint64_t file_size) {
  for (const Tensor& t : tensors) {
    const std::string what = absl::StrCat("tensor ", Quote(t.name), " (at offset ", t.info_at, ")");
    if (t.offset % alignment != 0) {
      return Invalid(t.info_at, absl::StrCat(what, " data offset ", t.offset,
                                             " is not a multiple of the alignment ", alignment));
    }
    const bool inside = data_start <= file_size && t.offset <= file_size - data_start &&
                        t.bytes <= file_size - data_start - t.offset;
    if (!inside) {
      const bool representable =
          t.offset <= UINT64_MAX - data_start && t.bytes <= UINT64_MAX - data_start - t.offset;
      const std::string end =
          representable ? absl::StrCat(data_start + t.offset + t.bytes) : "beyond 2^64";
      return Invalid(t.info_at, absl::StrCat(what, " data ends at ", end,
                                             " past the end of the file (", file_size, " bytes)"));
    }
  }
  std::vector<const Tensor*> by_offset;
  by_offset.reserve(tensors.size());
  for (const Tensor& t : tensors) by_offset.push_back(&t);
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const Tensor* a, const Tensor* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const Tensor& a = *by_offset[i - 1];
    const Tensor& b = *by_offset[i];
    if (a.offset + a.bytes > b.offset) {
      return Invalid(b.info_at, absl::StrCat("tensor ", Quote(b.name), " (at offset ", b.info_at,
                                             ") data at ", data_start + b.offset,
                                             " overlaps tensor ", Quote(a.name), " (at offset ",
                                             a.info_at, "), whose data is [", data_start + a.offset,
                                             ", ", data_start + a.offset + a.bytes, ")"));
    }
  }
  uint64_t expected = 0;
  for (const Tensor& t : tensors) {
    if (t.offset != expected) {
      return Invalid(
          t.info_at,
          absl::StrCat("tensor ", Quote(t.name), " (at offset ", t.info_at, ") data offset ",
                       t.offset, " is not where llama.cpp reads it (", expected,
                       "): data must follow the order of the tensor infos, each "
                       "padded to the alignment ",
                       alignment));
    }
    expected += PadTo(t.bytes, alignment);
  }
  return absl::OkStatus();
}

absl::Status RequireMetadata(const Metadata& metadata, int64_t metadata_end) {
  const auto missing = [&](absl::string_view key) {
    return Invalid(metadata_end,
                   absl::StrCat("required metadata '", key,
                                "' is missing (the metadata ends at offset ", metadata_end, ")"));
  };
  if (!metadata.has_architecture) return missing("general.architecture");
  if (metadata.architecture.empty()) {
    return Invalid(metadata_end, "metadata 'general.architecture' is empty");
  }
  if (!metadata.has_tokenizer_model) return missing("tokenizer.ggml.model");
  if (metadata.vocabulary_size < 0) return missing("tokenizer.ggml.tokens");
  const std::string context_key = metadata.architecture + ".context_length";
  const auto it = metadata.context_lengths.find(context_key);
  if (it == metadata.context_lengths.end()) return missing(context_key);
  if (it->second.first <= 0) {
    return Invalid(it->second.second,
                   absl::StrCat("metadata ", Quote(context_key), " (at offset ", it->second.second,
                                ") is ", it->second.first, "; it must be positive"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ModelInfo> CheckGguf(const ByteSource& source, const CheckOptions& options) {
  Reader reader(source, options.max_metadata_bytes);
  char magic[4];
  MD_RETURN_IF_ERROR(reader.Read(magic, sizeof(magic), "the magic"));
  if (std::memcmp(magic, "GGUF", 4) != 0) {
    return Invalid(0,
                   absl::StrCat("not a GGUF file: it starts with \"",
                                absl::CHexEscape(absl::string_view(magic, 4)), "\", not \"GGUF\""));
  }
  MD_ASSIGN_OR_RETURN(uint32_t version, reader.U32("the version"));
  if (version == 1) {
    return Invalid(4, "version 1 is no longer read by llama.cpp; convert the model again");
  }
  if (version != 2 && version != 3) {
    const bool swapped = (version & 0xFFFF) == 0;
    return Invalid(4, absl::StrCat("unknown version ", version,
                                   swapped ? " (a big-endian file? llama.cpp reads little-endian)"
                                           : " (versions 2 and 3 are read)"));
  }
  MD_ASSIGN_OR_RETURN(uint64_t tensor_count, reader.U64("the tensor count"));
  MD_ASSIGN_OR_RETURN(uint64_t kv_count, reader.U64("the metadata count"));
  if (tensor_count == 0) return Invalid(8, "the file holds no tensors");
  if (tensor_count > kMaxTensorCount) {
    return Invalid(8, absl::StrCat("tensor count ", tensor_count, " is more than the ",
                                   kMaxTensorCount, " a model file may hold"));
  }
  if (kv_count > kMaxKvCount) {
    return Invalid(16, absl::StrCat("metadata count ", kv_count, " is more than the ", kMaxKvCount,
                                    " a model file may hold"));
  }
  if (tensor_count > reader.remaining() / kMinTensorInfoBytes) {
    return Invalid(8, absl::StrCat("tensor count ", tensor_count, " cannot fit in the ",
                                   reader.remaining(), " bytes after the header"));
  }
  if (kv_count > reader.remaining() / kMinKvBytes) {
    return Invalid(16, absl::StrCat("metadata count ", kv_count, " cannot fit in the ",
                                    reader.remaining(), " bytes after the header"));
  }

  Metadata metadata;
  std::set<std::string> keys;
  for (uint64_t i = 0; i < kv_count; ++i) {
    MD_RETURN_IF_ERROR(ReadKeyValue(reader, i, keys, metadata));
  }
  MD_RETURN_IF_ERROR(RequireMetadata(metadata, reader.pos()));

  std::vector<Tensor> tensors;
  std::set<std::string> names;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    MD_ASSIGN_OR_RETURN(Tensor tensor, ReadTensorInfo(reader, i, names));
    tensors.push_back(std::move(tensor));
  }
  const uint64_t data_start = PadTo(static_cast<uint64_t>(reader.pos()), metadata.alignment);
  MD_RETURN_IF_ERROR(CheckTensorData(tensors, data_start, metadata.alignment,
                                     static_cast<uint64_t>(reader.file_size())));

  v1::ModelInfo info;
  // The strings as read (up to kMaxKeptStringBytes) are the file's bytes; what is kept is for
  // display (the architecture's raw bytes only matter above, to find its context length).
  info.set_architecture(DisplayText(metadata.architecture));
  info.set_name(DisplayText(metadata.name));
  info.set_tokenizer(DisplayText(metadata.tokenizer_model));
  info.set_vocabulary_size(metadata.vocabulary_size);
  info.set_context_length(
      metadata.context_lengths[metadata.architecture + ".context_length"].first);
  info.set_container(absl::StrCat("gguf v", version));
  info.set_item_count(static_cast<int64_t>(tensors.size()));
  int64_t parameters = 0;
  std::map<uint32_t, uint64_t> bytes_by_type;
  for (const Tensor& t : tensors) {
    // Unreachable for data inside a real file (at most ~8 elements a byte); checked anyway.
    if (t.elements > INT64_MAX - parameters) {
      return Invalid(t.info_at, "the tensors hold more elements than a 64-bit count holds");
    }
    parameters += t.elements;
    bytes_by_type[t.type_number] += t.bytes;
  }
  info.set_parameter_count(parameters);
  if (metadata.has_file_type) {
    info.set_quantization(LlamaFileTypeName(metadata.file_type));
  } else {
    const auto most =
        std::max_element(bytes_by_type.begin(), bytes_by_type.end(),
                         [](const auto& a, const auto& b) { return a.second < b.second; });
    info.set_quantization(GgmlTypeName(*FindGgmlType(most->first)));
  }
  return info;
}

}  // namespace modeldist::model_check
