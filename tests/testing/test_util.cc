#include "tests/testing/test_util.h"

#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>

namespace modeldist::testing {

ScratchDir::ScratchDir() {
  const char* tmp = getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/modeldist-test-XXXXXX";
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) abort();
  path_ = made;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t v = rng();
    memcpy(&out[i], &v, 8);
  }
  for (; i < size; ++i) out[i] = static_cast<char>(rng());
  return out;
}

std::string BuildDir() {
  const char* dir = getenv("MODELDIST_BUILD_DIR");
  return dir ? dir : ".";
}

}  // namespace modeldist::testing
