// File: gguf_types.h
//
// The tables a GGUF check needs from ggml and llama.cpp, by number as the file stores them:
// ggml tensor types (block size and bytes per block, ggml/src/ggml.c `type_traits` and the
// block structs of ggml-common.h) and llama.cpp's file types (`enum llama_ftype` in
// include/llama.h) with the names people use for them (`Q4_K_M`). Taken from ggml d99724f
// (2026-08) and llama.cpp include/llama.h; a type ggml added since is refused as unknown until
// it is added here.
#ifndef MODELDIST_COMMON_MODEL_CHECK_GGUF_TYPES_H_
#define MODELDIST_COMMON_MODEL_CHECK_GGUF_TYPES_H_

#include <cstdint>
#include <string>

namespace modeldist::model_check {

// A ggml tensor type: `block_size` elements are stored in `type_size` bytes.
struct GgmlType {
  const char* name;  // ggml's lower-case name, e.g. "q4_k"; see GgmlTypeName
  int64_t block_size;
  int64_t type_size;
};

// The ggml type numbered `type`, or null when ggml has none (removed types included).
const GgmlType* FindGgmlType(uint32_t type);

// The name people use for `type`: upper case, as llama.cpp prints quantizations (Q4_K).
std::string GgmlTypeName(const GgmlType& type);

// llama.cpp's name of file type `file_type` (`general.file_type`), e.g. 15 -> Q4_K_M;
// "file type N" for a number it does not name.
std::string LlamaFileTypeName(uint32_t file_type);

}  // namespace modeldist::model_check

#endif  // MODELDIST_COMMON_MODEL_CHECK_GGUF_TYPES_H_
