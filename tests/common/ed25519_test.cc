#include "common/ed25519.h"

#include <sys/stat.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

constexpr absl::string_view kMessage = "{\"model\":\"m1\",\"version\":\"1\"}";

Ed25519PrivateKey NewKey() {
  auto key = Ed25519PrivateKey::Generate();
  EXPECT_THAT(key, IsOk());
  return std::move(key).value();
}

TEST(Ed25519Test, SignThenVerify) {
  Ed25519PrivateKey key = NewKey();
  std::string sig = key.Sign(kManifestSignatureContext, kMessage);
  EXPECT_EQ(sig.size(), 64u);
  EXPECT_TRUE(key.public_key().Verify(kManifestSignatureContext, kMessage, sig));
}

TEST(Ed25519Test, SignedBytesAreContextNulMessage) {
  EXPECT_EQ(SignedBytes("ctx", "msg"), std::string("ctx\0msg", 7));
}

TEST(Ed25519Test, WrongContextFails) {
  Ed25519PrivateKey key = NewKey();
  std::string sig = key.Sign(kManifestSignatureContext, kMessage);
  EXPECT_FALSE(key.public_key().Verify("modeldist-trust-root-v1", kMessage, sig));
  // The NUL separator keeps context and message apart: moving a byte across is not the same.
  EXPECT_FALSE(key.public_key().Verify("modeldist-manifest-v", absl::StrCat("1", kMessage), sig));
}

TEST(Ed25519Test, AnyFlippedByteFails) {
  Ed25519PrivateKey key = NewKey();
  std::string sig = key.Sign(kManifestSignatureContext, kMessage);
  for (size_t i = 0; i < sig.size(); ++i) {
    std::string bad = sig;
    bad[i] ^= 0x01;
    EXPECT_FALSE(key.public_key().Verify(kManifestSignatureContext, kMessage, bad)) << i;
  }
  std::string message(kMessage);
  message[3] ^= 0x20;
  EXPECT_FALSE(key.public_key().Verify(kManifestSignatureContext, message, sig));
  EXPECT_FALSE(key.public_key().Verify(kManifestSignatureContext, kMessage, sig.substr(1)));
  EXPECT_FALSE(key.public_key().Verify(kManifestSignatureContext, kMessage, ""));
}

TEST(Ed25519Test, OtherKeyFails) {
  Ed25519PrivateKey key = NewKey();
  Ed25519PrivateKey other = NewKey();
  std::string sig = key.Sign(kManifestSignatureContext, kMessage);
  EXPECT_FALSE(other.public_key().Verify(kManifestSignatureContext, kMessage, sig));
  EXPECT_NE(key.public_key().KeyId(), other.public_key().KeyId());
}

TEST(Ed25519Test, KeyIdIsSixteenHexDigits) {
  Ed25519PrivateKey key = NewKey();
  EXPECT_THAT(key.public_key().KeyId(), MatchesRegex("[0-9a-f]{16}"));
}

TEST(Ed25519Test, PrivateKeyPemRoundTrip) {
  ScratchDir dir;
  const std::string path = dir.Join("signing.pem");
  Ed25519PrivateKey key = NewKey();
  ASSERT_THAT(key.SavePemFile(path), IsOk());

  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto loaded = Ed25519PrivateKey::LoadPemFile(path);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->public_key().raw(), key.public_key().raw());
  // The loaded key signs so that the original's public key verifies.
  std::string sig = loaded->Sign(kManifestSignatureContext, kMessage);
  EXPECT_TRUE(key.public_key().Verify(kManifestSignatureContext, kMessage, sig));
}

TEST(Ed25519Test, SavePemFileRefusesToOverwrite) {
  ScratchDir dir;
  const std::string path = dir.Join("signing.pem");
  Ed25519PrivateKey first = NewKey();
  ASSERT_THAT(first.SavePemFile(path), IsOk());
  auto before = ReadFileToString(path);
  ASSERT_THAT(before, IsOk());

  EXPECT_THAT(NewKey().SavePemFile(path), StatusIs(absl::StatusCode::kAlreadyExists, _));
  auto after = ReadFileToString(path);
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(*after, *before);
}

TEST(Ed25519Test, LoadPemFileErrors) {
  ScratchDir dir;
  EXPECT_THAT(Ed25519PrivateKey::LoadPemFile(dir.Join("absent.pem")),
              StatusIs(absl::StatusCode::kNotFound, _));

  ASSERT_THAT(WriteFileAtomically(dir.Join("junk.pem"), "not a key", 0600), IsOk());
  EXPECT_THAT(Ed25519PrivateKey::LoadPemFile(dir.Join("junk.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("junk.pem")));

  // A public key is not a private key, and the message never echoes the file's contents.
  std::string pub = NewKey().public_key().ToPem();
  ASSERT_THAT(WriteFileAtomically(dir.Join("pub.pem"), pub, 0644), IsOk());
  auto loaded = Ed25519PrivateKey::LoadPemFile(dir.Join("pub.pem"));
  EXPECT_THAT(loaded, StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("BEGIN"))));
}

TEST(Ed25519Test, PublicKeyPemRoundTrip) {
  Ed25519PrivateKey key = NewKey();
  std::string pem = key.public_key().ToPem();
  EXPECT_THAT(pem, HasSubstr("-----BEGIN PUBLIC KEY-----"));
  auto parsed = Ed25519PublicKey::FromPem(pem);
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->raw(), key.public_key().raw());
  EXPECT_EQ(parsed->KeyId(), key.public_key().KeyId());
  EXPECT_EQ(parsed->ToPem(), pem);
  EXPECT_TRUE(parsed->Verify(kManifestSignatureContext, kMessage,
                             key.Sign(kManifestSignatureContext, kMessage)));
}

TEST(Ed25519Test, PublicKeyFromBadInput) {
  EXPECT_THAT(Ed25519PublicKey::FromPem("garbage"),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(Ed25519PublicKey::FromPem(""), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(Ed25519PublicKey::FromRaw(std::string(31, 'k')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("31")));
  Ed25519PrivateKey key = NewKey();
  auto raw = Ed25519PublicKey::FromRaw(key.public_key().raw());
  ASSERT_THAT(raw, IsOk());
  EXPECT_EQ(raw->ToPem(), key.public_key().ToPem());
}

TEST(Ed25519Test, MovedKeyStillSigns) {
  Ed25519PrivateKey key = NewKey();
  std::string raw = key.public_key().raw();
  Ed25519PrivateKey moved = std::move(key);
  EXPECT_EQ(moved.public_key().raw(), raw);
  EXPECT_TRUE(moved.public_key().Verify("c", "m", moved.Sign("c", "m")));
}

}  // namespace
}  // namespace modeldist
