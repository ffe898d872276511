// CheckGguf on files MakeGguf builds: what a valid file says about itself, and each way of
// breaking one refused as GGUF_INVALID with a message that says what and where.
#include <fcntl.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/model_check/model_check.h"
#include "gtest/gtest.h"
#include "tests/common/model_check/model_check_matchers.h"
#include "tests/testing/model_files.h"
#include "tests/testing/test_util.h"

namespace modeldist::model_check {
namespace {

using ::modeldist::testing::GgufKvRaw;
using ::modeldist::testing::GgufKvString;
using ::modeldist::testing::GgufKvU32;
using ::modeldist::testing::GgufSpec;
using ::modeldist::testing::IsStorableModelInfo;
using ::modeldist::testing::MakeGguf;
using ::modeldist::testing::RefusedWith;
using ::modeldist::testing::StringSource;
using ::testing::HasSubstr;

constexpr char kGguf[] = "GGUF_INVALID";

absl::StatusOr<v1::ModelInfo> Check(const std::string& bytes, const CheckOptions& options = {}) {
  StringSource source(bytes);
  return CheckGguf(source, options);
}

std::string Le(uint64_t value, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  return out;
}

TEST(GgufTest, ValidFileSaysWhatItIs) {
  absl::StatusOr<v1::ModelInfo> info = Check(MakeGguf(GgufSpec()));
  MD_ASSERT_OK(info);
  EXPECT_EQ(info->architecture(), "llama");
  EXPECT_EQ(info->name(), "Tiny Llama");
  EXPECT_EQ(info->parameter_count(), 64 * 5 + 256 * 4 + 64);
  EXPECT_EQ(info->quantization(), "Q4_K_M");
  EXPECT_EQ(info->context_length(), 2048);
  EXPECT_EQ(info->tokenizer(), "llama");
  EXPECT_EQ(info->vocabulary_size(), 5);
  EXPECT_EQ(info->container(), "gguf v3");
  EXPECT_EQ(info->item_count(), 3);

  const std::string text = DescribeModelInfo(*info);
  EXPECT_THAT(text, HasSubstr("  architecture: llama\n"));
  EXPECT_THAT(text, HasSubstr("  quantization: Q4_K_M\n"));
  EXPECT_THAT(text, HasSubstr("  context length: 2048\n"));
  EXPECT_THAT(text, HasSubstr("  tensors: 3\n"));
}

TEST(GgufTest, VersionTwoAndCustomAlignmentAreRead) {
  GgufSpec spec;
  spec.version = 2;
  spec.alignment = 64;
  absl::StatusOr<v1::ModelInfo> info = Check(MakeGguf(spec));
  MD_ASSERT_OK(info);
  EXPECT_EQ(info->container(), "gguf v2");
}

TEST(GgufTest, WithoutFileTypeTheTypeWithMostBytesNamesTheQuantization) {
  GgufSpec spec;
  spec.file_type.reset();
  // F16 640 bytes, Q4_K 576, F32 256.
  EXPECT_THAT(Check(MakeGguf(spec)),
              testing::IsOkAndHolds(::testing::Property(&v1::ModelInfo::quantization, "F16")));
  spec.tensors[1].dims = {256, 8};  // Q4_K 1152 bytes
  EXPECT_THAT(Check(MakeGguf(spec)),
              testing::IsOkAndHolds(::testing::Property(&v1::ModelInfo::quantization, "Q4_K")));
}

TEST(GgufTest, LargeVocabularyCrossesTheReadWindow) {
  GgufSpec spec;
  spec.tokens.clear();
  for (int i = 0; i < 200000; ++i) spec.tokens.push_back(absl::StrCat("token", i));
  absl::StatusOr<v1::ModelInfo> info = Check(MakeGguf(spec));
  MD_ASSERT_OK(info);
  EXPECT_EQ(info->vocabulary_size(), 200000);
}

// The file's text is hostile too: a name that is not UTF-8 or an architecture carrying a
// terminal escape sequence is kept escaped, so the ModelInfo stores, parses and prints.
TEST(GgufTest, TextThatIsNotPrintableUtf8IsKeptEscaped) {
  GgufSpec spec;
  spec.name = "Tiny \xff\xfe Llama";
  spec.architecture = "llama\x1b]0;owned\x07";
  spec.tokenizer_model = "gpt2\xc2\x9b";
  absl::StatusOr<v1::ModelInfo> info = Check(MakeGguf(spec));
  MD_ASSERT_OK(info);  // the context length is found under the raw architecture
  EXPECT_EQ(info->name(), "Tiny \\xff\\xfe Llama");
  EXPECT_EQ(info->architecture(), "llama\\x1b]0;owned\\x07");
  EXPECT_EQ(info->tokenizer(), "gpt2\\xc2\\x9b");
  EXPECT_EQ(info->context_length(), 2048);
  EXPECT_THAT(*info, IsStorableModelInfo());
}

TEST(GgufTest, LongTextIsCappedForDisplay) {
  GgufSpec spec;
  spec.name = std::string(4000, 'n');
  absl::StatusOr<v1::ModelInfo> info = Check(MakeGguf(spec));
  MD_ASSERT_OK(info);
  EXPECT_EQ(info->name(), std::string(kMaxDisplayTextBytes - 3, 'n') + "...");
}

struct Breakage {
  std::string name;
  std::function<void(GgufSpec&)> change;
  std::string message;
};

class GgufBrokenTest : public ::testing::TestWithParam<Breakage> {};

TEST_P(GgufBrokenTest, IsRefusedSayingWhatAndWhere) {
  GgufSpec spec;
  GetParam().change(spec);
  absl::StatusOr<v1::ModelInfo> info = Check(MakeGguf(spec));
  EXPECT_THAT(info, RefusedWith(kGguf, GetParam().message));
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("GGUF: "));
  EXPECT_NE(ErrorMetadataValue(info.status(), "offset"), "");
}

INSTANTIATE_TEST_SUITE_P(
    Rules, GgufBrokenTest,
    ::testing::Values(
        Breakage{"VersionOne", [](GgufSpec& s) { s.version = 1; }, "version 1 is no longer"},
        Breakage{"UnknownVersion", [](GgufSpec& s) { s.version = 4; }, "unknown version 4"},
        Breakage{"BigEndian", [](GgufSpec& s) { s.version = 0x03000000; }, "big-endian"},
        Breakage{"NoTensors", [](GgufSpec& s) { s.tensors.clear(); }, "holds no tensors"},
        Breakage{"HugeTensorCount", [](GgufSpec& s) { s.tensor_count_override = 1ull << 60; },
                 "tensor count 1152921504606846976 is more than the 262144"},
        Breakage{"TensorCountPastTheFile", [](GgufSpec& s) { s.tensor_count_override = 100000; },
                 "tensor count 100000 cannot fit in the"},
        Breakage{"HugeKvCount", [](GgufSpec& s) { s.kv_count_override = 1ull << 62; },
                 "metadata count 4611686018427387904 is more than the 65536"},
        Breakage{"KvCountPastTheFile", [](GgufSpec& s) { s.kv_count_override = 60000; },
                 "metadata count 60000 cannot fit in the"},
        Breakage{"KvCountPastMetadata", [](GgufSpec& s) { s.kv_count_override = 9; },
                 "GGUF: "},
        Breakage{"TensorCountPastInfos", [](GgufSpec& s) { s.tensor_count_override = 4; },
                 "GGUF: "},
        Breakage{"NoArchitecture", [](GgufSpec& s) { s.omit_architecture = true; },
                 "required metadata 'general.architecture' is missing"},
        Breakage{"NoTokenizerModel", [](GgufSpec& s) { s.omit_tokenizer_model = true; },
                 "required metadata 'tokenizer.ggml.model' is missing"},
        Breakage{"NoTokens", [](GgufSpec& s) { s.omit_tokens = true; },
                 "required metadata 'tokenizer.ggml.tokens' is missing"},
        Breakage{"NoContextLength", [](GgufSpec& s) { s.omit_context_length = true; },
                 "required metadata 'llama.context_length' is missing"},
        Breakage{"ZeroContextLength", [](GgufSpec& s) { s.context_length = 0; },
                 "'llama.context_length' (at offset"},
        Breakage{"EmptyTokens", [](GgufSpec& s) { s.tokens.clear(); }, "is empty"},
        Breakage{"ArchitectureNotString",
                 [](GgufSpec& s) {
                   s.omit_architecture = true;
                   s.extra_kvs.push_back(GgufKvU32("general.architecture", 7));
                 },
                 "is a uint32; it must be a string"},
        Breakage{"DuplicateKey",
                 [](GgufSpec& s) { s.extra_kvs.push_back(GgufKvString("general.name", "x")); },
                 "metadata 'general.name' (at offset"},
        Breakage{"EmptyKey", [](GgufSpec& s) { s.extra_kvs.push_back(GgufKvString("", "x")); },
                 "has an empty key"},
        Breakage{"UnknownValueType",
                 [](GgufSpec& s) { s.extra_kvs.push_back(GgufKvRaw("x.y", 13, Le(0, 4))); },
                 "has unknown type 13"},
        Breakage{"ArrayOfArrays",
                 [](GgufSpec& s) {
                   s.extra_kvs.push_back(GgufKvRaw("x.nested", 9, Le(9, 4) + Le(1, 8)));
                 },
                 "is an array of arrays"},
        Breakage{"HugeArrayCount",
                 [](GgufSpec& s) {
                   s.extra_kvs.push_back(GgufKvRaw("x.scores", 9, Le(6, 4) + Le(1ull << 60, 8)));
                 },
                 "says it holds 1152921504606846976 values"},
        Breakage{"HugeStringArrayCount",
                 [](GgufSpec& s) {
                   s.extra_kvs.push_back(GgufKvRaw("x.words", 9, Le(8, 4) + Le(1ull << 61, 8)));
                 },
                 "strings;"},
        Breakage{"HugeStringLength",
                 [](GgufSpec& s) { s.extra_kvs.push_back(GgufKvRaw("x.s", 8, Le(1ull << 62, 8))); },
                 "the file ends at offset"},
        Breakage{"HugeKeyLength",
                 [](GgufSpec& s) { s.extra_kvs.push_back(Le(1ull << 40, 8)); },
                 "is 1099511627776 bytes long; at most 65535"},
        Breakage{"AlignmentNotPowerOfTwo", [](GgufSpec& s) { s.alignment = 48; },
                 "must be a power of two"},
        Breakage{"AlignmentNotUint32",
                 [](GgufSpec& s) {
                   s.extra_kvs.push_back(GgufKvRaw("general.alignment", 10, Le(32, 8)));
                 },
                 "'general.alignment' (at offset"},
        Breakage{"NoDimensions", [](GgufSpec& s) { s.tensors[2].dims = {}; },
                 "has 0 dimensions"},
        Breakage{"FiveDimensions", [](GgufSpec& s) { s.tensors[2].dims = {1, 1, 1, 1, 64}; },
                 "has 5 dimensions"},
        Breakage{"ZeroDimension", [](GgufSpec& s) { s.tensors[0].dims = {64, 0}; },
                 "dimension 1 is 0"},
        Breakage{"NegativeDimension", [](GgufSpec& s) { s.tensors[0].dims = {-64, 5}; },
                 "dimension 0 is -64"},
        Breakage{"ElementCountOverflows",
                 [](GgufSpec& s) { s.tensors[0].dims = {1ll << 32, 1ll << 32}; },
                 "more elements than a 64-bit count"},
        Breakage{"ByteCountOverflows",
                 [](GgufSpec& s) { s.tensors[0].dims = {1ll << 31, 1ll << 31}; },
                 "more bytes than a 64-bit size"},
        Breakage{"RemovedGgmlType", [](GgufSpec& s) { s.tensors[2].type = 4; },
                 "tensor 'output_norm.weight' (at offset"},
        Breakage{"UnknownGgmlType", [](GgufSpec& s) { s.tensors[2].type = 99; },
                 "has unknown ggml type 99"},
        Breakage{"RowNotWholeBlocks", [](GgufSpec& s) { s.tensors[1].dims = {128, 8}; },
                 "rows of 128 elements are not a multiple of the 256-element blocks of type Q4_K"},
        Breakage{"DuplicateTensorName", [](GgufSpec& s) { s.tensors[2].name = s.tensors[0].name; },
                 "the name appears twice"},
        Breakage{"TensorNameTooLong", [](GgufSpec& s) { s.tensors[2].name = std::string(64, 'n'); },
                 "is 64 bytes long; at most 63"},
        Breakage{"MisalignedOffset",
                 [](GgufSpec& s) { s.offset_override["blk.0.attn_q.weight"] = 648; },
                 "data offset 648 is not a multiple of the alignment 32"},
        Breakage{"OffsetPastTheEnd",
                 [](GgufSpec& s) { s.offset_override["output_norm.weight"] = 1ull << 62; },
                 "past the end of the file"},
        Breakage{"OffsetOverflows",
                 [](GgufSpec& s) { s.offset_override["output_norm.weight"] = ~uint64_t{31}; },
                 "data ends at beyond 2^64"},
        Breakage{"Overlap", [](GgufSpec& s) { s.offset_override["blk.0.attn_q.weight"] = 0; },
                 "overlaps tensor 'token_embd.weight'"},
        Breakage{"OutOfOrder",
                 [](GgufSpec& s) {
                   s.offset_override["blk.0.attn_q.weight"] = 896;
                   s.offset_override["output_norm.weight"] = 640;
                 },
                 "is not where llama.cpp reads it"}),
    [](const ::testing::TestParamInfo<Breakage>& param) { return param.param.name; });

TEST(GgufTest, BadMagicIsRefused) {
  std::string bytes = MakeGguf(GgufSpec());
  bytes.replace(0, 4, "GGML");
  EXPECT_THAT(Check(bytes), RefusedWith(kGguf, "not a GGUF file: it starts with \"GGML\""));
}

TEST(GgufTest, DataCutShortNamesTheTensorAndOffsets) {
  std::string bytes = MakeGguf(GgufSpec());
  bytes.pop_back();
  EXPECT_THAT(Check(bytes),
              RefusedWith(kGguf, absl::StrCat("tensor 'output_norm.weight' (at offset ")));
  EXPECT_THAT(Check(bytes), RefusedWith(kGguf, absl::StrCat("data ends at ", bytes.size() + 1,
                                                            " past the end of the file (",
                                                            bytes.size(), " bytes)")));
}

TEST(GgufTest, EveryTruncationIsRefused) {
  const std::string bytes = MakeGguf(GgufSpec());
  for (size_t n = 0; n < bytes.size(); ++n) {
    ASSERT_THAT(Check(bytes.substr(0, n)), RefusedWith(kGguf, "GGUF: ")) << "cut at " << n;
  }
}

TEST(GgufTest, MetadataPastTheLimitIsRefused) {
  CheckOptions options;
  options.max_metadata_bytes = 200;
  EXPECT_THAT(Check(MakeGguf(GgufSpec()), options),
              RefusedWith(kGguf, "lies past the first 200 bytes"));
}

// A source whose reads fail: the failure is passed on, not turned into GGUF_INVALID.
class FailingSource : public ByteSource {
 public:
  int64_t size() const override { return 1 << 20; }
  absl::StatusOr<size_t> ReadAt(int64_t, char*, size_t) const override {
    return absl::UnavailableError("disk on fire");
  }
};

TEST(GgufTest, ReadErrorsArePassedOn) {
  FailingSource source;
  EXPECT_THAT(CheckGguf(source, {}),
              testing::StatusIs(absl::StatusCode::kUnavailable, HasSubstr("disk on fire")));
  EXPECT_THAT(CheckCoreMlZip(source, {}),
              testing::StatusIs(absl::StatusCode::kUnavailable, HasSubstr("disk on fire")));
}

// Counts the bytes asked of a file source.
class CountingSource : public ByteSource {
 public:
  explicit CountingSource(const ByteSource& inner) : inner_(inner) {}
  int64_t size() const override { return inner_.size(); }
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) const override {
    requested_ += static_cast<int64_t>(size);
    return inner_.ReadAt(offset, buf, size);
  }
  int64_t requested() const { return requested_; }

 private:
  const ByteSource& inner_;
  mutable int64_t requested_ = 0;
};

TEST(GgufTest, SixteenGibFileIsCheckedFromItsHeaderAlone) {
  GgufSpec spec;
  spec.tensors = {{"token_embd.weight", testing::kGgmlF32, {65536, 65536}}};
  spec.file_type = 0;
  spec.omit_data = true;
  const std::string header = MakeGguf(spec);
  testing::ScratchDir dir;
  const std::string path = dir.Join("big.gguf");
  {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, header.data(), header.size()), static_cast<ssize_t>(header.size()));
    const off_t total = static_cast<off_t>(header.size() + testing::GgufDataBytes(spec));
    ASSERT_EQ(total, static_cast<off_t>(header.size()) + (off_t{16} << 30));
    ASSERT_EQ(::ftruncate(fd, total), 0);  // sparse: no data blocks written
    ::close(fd);
  }
  absl::StatusOr<std::unique_ptr<ByteSource>> file = OpenFileSource(path);
  MD_ASSERT_OK(file);
  CountingSource counting(**file);
  absl::StatusOr<v1::ModelInfo> info = CheckModel(v1::FORMAT_GGUF, counting, {});
  MD_ASSERT_OK(info);
  EXPECT_EQ(info->parameter_count(), int64_t{1} << 32);
  EXPECT_EQ(info->quantization(), "F32");
  EXPECT_LT(counting.requested(), 4 << 20);
  RecordProperty("bytes_requested", static_cast<int>(counting.requested()));
}

TEST(ModelCheckTest, OtherFormatsAreAcceptedUnread) {
  StringSource source("anything");
  EXPECT_FALSE(HasCheck(v1::FORMAT_ONNX));
  EXPECT_TRUE(HasCheck(v1::FORMAT_GGUF));
  EXPECT_TRUE(HasCheck(v1::FORMAT_COREML_ZIP));
  absl::StatusOr<v1::ModelInfo> info = CheckModel(v1::FORMAT_ONNX, source, {});
  MD_ASSERT_OK(info);
  EXPECT_EQ(source.bytes_requested(), 0);
  EXPECT_EQ(DescribeModelInfo(*info), "");
}

TEST(ModelCheckTest, OpenFileSourceReportsAMissingFile) {
  EXPECT_THAT(OpenFileSource("/nonexistent/model.gguf"),
              testing::StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/model.gguf")));
}

}  // namespace
}  // namespace modeldist::model_check
