#include "common/digest.h"

#include <fcntl.h>
// Before any OpenSSL header: see Sha256::Ctx.
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/sha.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
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

// OpenSSL's SHA256_* functions are deprecated in 3.0 in favour of EVP, but EVP hides the
// chaining value, which Resume and ChainingValue need. They run the same assembly (SHA-NI
// where the CPU has it) as the EVP provider, which itself calls them.
struct Sha256::Ctx {
  SHA256_CTX sha;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) { SHA256_Init(&ctx_->sha); }

Sha256::Sha256(const Sha256& other) : ctx_(std::make_unique<Ctx>(*other.ctx_)) {}

Sha256& Sha256::operator=(const Sha256& other) {
  if (this != &other) *ctx_ = *other.ctx_;
  return *this;
}

Sha256::~Sha256() = default;

absl::StatusOr<Sha256> Sha256::Resume(absl::string_view state, int64_t prefix_bytes) {
  if (state.size() != kStateBytes) {
    return MakeError(
        absl::StatusCode::kInvalidArgument, "INVALID_CHAINING_VALUE",
        absl::StrCat("a SHA-256 chaining value has ", kStateBytes, " bytes, got ", state.size()));
  }
  if (prefix_bytes < 0 || prefix_bytes % static_cast<int64_t>(kBlockBytes) != 0 ||
      prefix_bytes > (int64_t{1} << 60)) {
    return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_CHUNK_SIZE",
                     absl::StrCat("a SHA-256 hash can resume only after a multiple of ",
                                  kBlockBytes, " bytes, got ", prefix_bytes));
  }
  Sha256 hash;
  SHA256_CTX& sha = hash.ctx_->sha;
  for (size_t i = 0; i < 8; ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(state.data()) + 4 * i;
    sha.h[i] = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  }
  const uint64_t bits = static_cast<uint64_t>(prefix_bytes) * 8;
  sha.Nl = static_cast<uint32_t>(bits & 0xffffffffu);
  sha.Nh = static_cast<uint32_t>(bits >> 32);
  sha.num = 0;
  return hash;
}

void Sha256::Update(const void* data, size_t size) { SHA256_Update(&ctx_->sha, data, size); }

int64_t Sha256::bytes() const {
  const uint64_t bits = (static_cast<uint64_t>(ctx_->sha.Nh) << 32) | ctx_->sha.Nl;
  return static_cast<int64_t>(bits / 8);
}

std::string Sha256::ChainingValue() const {
  // With a block-aligned length nothing waits in the context's buffer, so h[] is the state
  // after exactly these bytes.
  if (ctx_->sha.num != 0) {
    std::fprintf(stderr, "Sha256::ChainingValue after %lld bytes, not a multiple of %zu\n",
                 static_cast<long long>(bytes()), kBlockBytes);
    std::abort();
  }
  std::string out(kStateBytes, '\0');
  for (size_t i = 0; i < 8; ++i) {
    const uint32_t h = ctx_->sha.h[i];
    out[4 * i] = static_cast<char>(h >> 24);
    out[4 * i + 1] = static_cast<char>(h >> 16);
    out[4 * i + 2] = static_cast<char>(h >> 8);
    out[4 * i + 3] = static_cast<char>(h);
  }
  return out;
}

std::string Sha256::FinishRaw() {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256_Final(out, &ctx_->sha);
  return std::string(reinterpret_cast<const char*>(out), sizeof(out));
}

std::string Sha256::FinishHex() { return HexEncode(FinishRaw()); }

std::string Sha256::HexOf(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.FinishHex();
}

absl::StatusOr<FileDigest> DigestFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, path);
  Sha256 hash;
  FileDigest result;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, absl::StrCat("reading ", path));
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
