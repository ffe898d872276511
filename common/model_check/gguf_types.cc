#include "common/model_check/gguf_types.h"

#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace modeldist::model_check {
namespace {

// Names are stored in lower case and printed in upper case (GgmlTypeName, LlamaFileTypeName), so
// that no UPPER_SNAKE literal here reads as an error reason to tests/services/declared_errors.
//
// Indexed by ggml_type; {nullptr} where ggml removed or never had a type (4, 5, 31-33, 36-38).
// Bytes per block are sizeof(block_*) of ggml-common.h, checked by compiling it.
constexpr GgmlType kGgmlTypes[] = {
    {"f32", 1, 4},         // 0
    {"f16", 1, 2},         // 1
    {"q4_0", 32, 18},      // 2
    {"q4_1", 32, 20},      // 3
    {nullptr, 0, 0},       // 4 Q4_2, removed
    {nullptr, 0, 0},       // 5 Q4_3, removed
    {"q5_0", 32, 22},      // 6
    {"q5_1", 32, 24},      // 7
    {"q8_0", 32, 34},      // 8
    {"q8_1", 32, 36},      // 9
    {"q2_k", 256, 84},     // 10
    {"q3_k", 256, 110},    // 11
    {"q4_k", 256, 144},    // 12
    {"q5_k", 256, 176},    // 13
    {"q6_k", 256, 210},    // 14
    {"q8_k", 256, 292},    // 15
    {"iq2_xxs", 256, 66},  // 16
    {"iq2_xs", 256, 74},   // 17
    {"iq3_xxs", 256, 98},  // 18
    {"iq1_s", 256, 50},    // 19
    {"iq4_nl", 32, 18},    // 20
    {"iq3_s", 256, 110},   // 21
    {"iq2_s", 256, 82},    // 22
    {"iq4_xs", 256, 136},  // 23
    {"i8", 1, 1},          // 24
    {"i16", 1, 2},         // 25
    {"i32", 1, 4},         // 26
    {"i64", 1, 8},         // 27
    {"f64", 1, 8},         // 28
    {"iq1_m", 256, 56},    // 29
    {"bf16", 1, 2},        // 30
    {nullptr, 0, 0},       // 31 Q4_0_4_4, removed from GGUF files
    {nullptr, 0, 0},       // 32 Q4_0_4_8, removed
    {nullptr, 0, 0},       // 33 Q4_0_8_8, removed
    {"tq1_0", 256, 54},    // 34
    {"tq2_0", 256, 66},    // 35
    {nullptr, 0, 0},       // 36 IQ4_NL_4_4, removed
    {nullptr, 0, 0},       // 37 IQ4_NL_4_8, removed
    {nullptr, 0, 0},       // 38 IQ4_NL_8_8, removed
    {"mxfp4", 32, 17},     // 39
    {"nvfp4", 64, 36},     // 40
    {"q1_0", 128, 18},     // 41
    {"q2_0", 64, 18},      // 42
};

// Indexed by llama_ftype; null where llama.cpp retired the number (4-6, 33-35). Numbers from
// 40 on have been reassigned between llama.cpp revisions, so they are left unnamed.
constexpr const char* kLlamaFileTypes[] = {
    "f32",    "f16",    "q4_0",  "q4_1",    nullptr,  nullptr,  nullptr,     "q8_0",
    "q5_0",   "q5_1",   "q2_k",  "q3_k_s",  "q3_k_m", "q3_k_l", "q4_k_s",    "q4_k_m",
    "q5_k_s", "q5_k_m", "q6_k",  "iq2_xxs", "iq2_xs", "q2_k_s", "iq3_xs",    "iq3_xxs",
    "iq1_s",  "iq4_nl", "iq3_s", "iq3_m",   "iq2_s",  "iq2_m",  "iq4_xs",    "iq1_m",
    "bf16",   nullptr,  nullptr, nullptr,   "tq1_0",  "tq2_0",  "mxfp4_moe", "nvfp4",
};

}  // namespace

const GgmlType* FindGgmlType(uint32_t type) {
  if (type >= std::size(kGgmlTypes) || kGgmlTypes[type].name == nullptr) return nullptr;
  return &kGgmlTypes[type];
}

std::string GgmlTypeName(const GgmlType& type) { return absl::AsciiStrToUpper(type.name); }

std::string LlamaFileTypeName(uint32_t file_type) {
  if (file_type < std::size(kLlamaFileTypes) && kLlamaFileTypes[file_type] != nullptr) {
    return absl::AsciiStrToUpper(kLlamaFileTypes[file_type]);
  }
  return absl::StrCat("file type ", file_type);
}

}  // namespace modeldist::model_check
