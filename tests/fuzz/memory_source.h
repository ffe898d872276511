// File: memory_source.h
//
// An in-memory model_check::ByteSource for the model file targets (gguf, coreml_zip): the
// fuzzer's bytes are the file. A read outside them aborts (a parser bug).
#ifndef MODELDIST_TESTS_FUZZ_MEMORY_SOURCE_H_
#define MODELDIST_TESTS_FUZZ_MEMORY_SOURCE_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/model_check/model_check.h"

namespace modeldist::fuzz {

class MemorySource : public modeldist::model_check::ByteSource {
 public:
  MemorySource(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  int64_t size() const override { return static_cast<int64_t>(size_); }
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) const override {
    if (offset < 0 || static_cast<size_t>(offset) > size_) abort();  // a parser bug
    const size_t n = std::min(size, size_ - static_cast<size_t>(offset));
    if (n > 0) std::memcpy(buf, data_ + offset, n);
    return n;
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

}  // namespace modeldist::fuzz

#endif  // MODELDIST_TESTS_FUZZ_MEMORY_SOURCE_H_
