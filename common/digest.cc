#include "common/digest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace modeldist {

absl::StatusOr<std::string> ParseDigest(absl::string_view field, absl::string_view digest) {
  if (digest.empty()) {
    return InvalidArgument(field, "MISSING_DIGEST",
                           absl::StrCat(field, " is required (sha256:<64 lowercase hex>)"));
  }
  if (digest.substr(0, kSha256Prefix.size()) != kSha256Prefix) {
    return InvalidArgument(field, "INVALID_DIGEST",
                           absl::StrCat(field, " must start with \"sha256:\""));
  }
  absl::string_view hex = digest.substr(kSha256Prefix.size());
  if (hex.size() != 64) {
    return InvalidArgument(
        field, "INVALID_DIGEST",
        absl::StrCat(field, " must have 64 hex digits after \"sha256:\", got ", hex.size()));
  }
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return InvalidArgument(field, "INVALID_DIGEST",
                             absl::StrCat(field, " must be lowercase hex after \"sha256:\""));
    }
  }
  return std::string(hex);
}

std::string FormatDigest(absl::string_view hex) { return absl::StrCat(kSha256Prefix, hex); }

std::string HexEncode(absl::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    unsigned char b = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kHex[b >> 4];
    out[2 * i + 1] = kHex[b & 0xf];
  }
  return out;
}

struct Sha256::Ctx {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
}

Sha256::Sha256(const Sha256& other) : ctx_(std::make_unique<Ctx>()) {
  EVP_MD_CTX_copy_ex(ctx_->md, other.ctx_->md);
}

Sha256& Sha256::operator=(const Sha256& other) {
  if (this != &other) EVP_MD_CTX_copy_ex(ctx_->md, other.ctx_->md);
  return *this;
}

Sha256::~Sha256() = default;

void Sha256::Update(const void* data, size_t size) { EVP_DigestUpdate(ctx_->md, data, size); }

std::string Sha256::FinishHex() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md, out, &len);
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(out), len));
}

std::string Sha256::HexOf(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.FinishHex();
}

absl::StatusOr<FileDigest> DigestFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? absl::NotFoundError(absl::StrCat(path, ": no such file"))
                           : absl::UnavailableError(absl::StrCat(path, ": ", strerror(errno)));
  }
  Sha256 hash;
  FileDigest result;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return absl::UnavailableError(absl::StrCat("reading ", path, ": ", strerror(err)));
    }
    if (n == 0) break;
    hash.Update(buf.data(), static_cast<size_t>(n));
    result.size += n;
  }
  ::close(fd);
  result.hex = hash.FinishHex();
  return result;
}

}  // namespace modeldist
