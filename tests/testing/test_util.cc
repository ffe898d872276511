#include "tests/testing/test_util.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>

#include "gtest/gtest.h"

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

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

ReservedPort::ReservedPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
  if (fd_ < 0) return;
  const int on = 1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) == 0 &&
      ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port_ = ntohs(addr.sin_port);
  }
}

ReservedPort::ReservedPort(ReservedPort&& other) noexcept : fd_(other.fd_), port_(other.port_) {
  other.fd_ = -1;
  other.port_ = 0;
}

ReservedPort::~ReservedPort() {
  if (fd_ >= 0) ::close(fd_);
}

std::string BuildDir() {
  const char* dir = getenv("MODELDIST_BUILD_DIR");
  return dir ? dir : ".";
}

void DamageFile(const std::string& path, FileDamage damage, int64_t at) {
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0) << path;
  switch (damage) {
    case FileDamage::kNone:
      break;
    case FileDamage::kFlip: {
      int fd = ::open(path.c_str(), O_RDWR);
      ASSERT_GE(fd, 0) << path;
      char c = 0;
      ASSERT_EQ(::pread(fd, &c, 1, at), 1) << path;
      c = static_cast<char>(c ^ 0x01);
      ASSERT_EQ(::pwrite(fd, &c, 1, at), 1) << path;
      ::close(fd);
      break;
    }
    case FileDamage::kTruncate: {
      struct stat st;
      ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
      ASSERT_EQ(::truncate(path.c_str(), st.st_size - 1), 0) << path;
      break;
    }
    case FileDamage::kExtend: {
      int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
      ASSERT_GE(fd, 0) << path;
      ASSERT_EQ(::write(fd, "x", 1), 1) << path;
      ::close(fd);
      break;
    }
    case FileDamage::kDelete:
      ASSERT_EQ(::unlink(path.c_str()), 0) << path;
      return;
  }
  ASSERT_EQ(::chmod(path.c_str(), 0444), 0) << path;
}

}  // namespace modeldist::testing
