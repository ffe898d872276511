// CloudFrontSigner against the official @aws-sdk/cloudfront-signer, byte for byte, for canned
// and custom policies (tests/node/sign_cloudfront.mjs), with an RSA key made here; the
// signature verifies with the public key over the policy CloudFront would rebuild; and bad
// keys and policies are refused with a reason, never echoing the key.
#include "storage/origin/cloudfront.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/storage/origin/node_sdk.h"
#include "tests/testing/test_util.h"

namespace modeldist::origin {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kKeyPairId[] = "K2JCJMDEHXQW5F";
constexpr char kUrl[] =
    "https://d111111abcdef8.cloudfront.net/prod/sha256/"
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

// A fresh 2048-bit RSA key, as PKCS#8 PEM, and its public half as PEM.
struct RsaKey {
  std::string private_pem;
  std::string public_pem;
};

RsaKey MakeRsaKey() {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  EXPECT_NE(pkey, nullptr);
  RsaKey key;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  key.private_pem.assign(data, static_cast<size_t>(n));
  BIO_free(bio);
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, pkey);
  n = BIO_get_mem_data(bio, &data);
  key.public_pem.assign(data, static_cast<size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(pkey);
  return key;
}

// The value of query parameter `name` in `url`.
std::string Param(const std::string& url, const std::string& name) {
  const std::string query = url.substr(url.find('?') + 1);
  for (absl::string_view pair : absl::StrSplit(query, '&')) {
    if (absl::StartsWith(pair, name + "=")) return std::string(pair.substr(name.size() + 1));
  }
  return "";
}

std::string FromCloudFrontBase64(std::string s) {
  for (char& c : s) {
    if (c == '-') c = '+';
    if (c == '_') c = '=';
    if (c == '~') c = '/';
  }
  std::string out;
  EXPECT_TRUE(absl::Base64Unescape(s, &out)) << s;
  return out;
}

bool VerifiesWith(const std::string& public_pem, const std::string& policy,
                  const std::string& signature) {
  BIO* bio = BIO_new_mem_buf(public_pem.data(), static_cast<int>(public_pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      pkey != nullptr && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha1(), nullptr, pkey) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(policy.data()),
                       policy.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return ok;
}

class CloudFrontTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = MakeRsaKey();
    absl::StatusOr<std::unique_ptr<CloudFrontSigner>> signer =
        CloudFrontSigner::Create(kKeyPairId, key_.private_pem);
    ASSERT_TRUE(signer.ok()) << signer.status();
    signer_ = *std::move(signer);
  }

  // What the official signer makes for the same inputs.
  std::string SdkSign(const std::string& url, const CloudFrontPolicy& policy) {
    const std::string key_file = dir_.Join("key.pem");
    EXPECT_TRUE(WriteFileAtomically(key_file, key_.private_pem, 0600).ok());
    std::string args = absl::StrCat(R"({"url":")", url, R"(","keyPairId":")", kKeyPairId,
                                    R"(","privateKeyFile":")", key_file, R"(","dateLessThan":)",
                                    policy.date_less_than);
    if (policy.date_greater_than > 0) {
      absl::StrAppend(&args, R"(,"dateGreaterThan":)", policy.date_greater_than);
    }
    if (!policy.ip_address.empty()) {
      absl::StrAppend(&args, R"(,"ipAddress":")", policy.ip_address, R"(")");
    }
    return testing::RunNodeScript("sign_cloudfront.mjs", args + "}");
  }

  testing::ScratchDir dir_;
  RsaKey key_;
  std::unique_ptr<CloudFrontSigner> signer_;
};

TEST_F(CloudFrontTest, CannedPolicyUrlsVerifyWithThePublicKey) {
  absl::StatusOr<std::string> url = signer_->Sign(kUrl, {.date_less_than = 1767225600});
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_THAT(*url, StartsWith(absl::StrCat(kUrl, "?Expires=1767225600&Key-Pair-Id=", kKeyPairId,
                                            "&Signature=")));
  EXPECT_THAT(*url, Not(HasSubstr("Policy=")));
  const std::string canned =
      absl::StrCat(R"({"Statement":[{"Resource":")", kUrl,
                   R"(","Condition":{"DateLessThan":{"AWS:EpochTime":1767225600}}}]})");
  const std::string signature = FromCloudFrontBase64(Param(*url, "Signature"));
  EXPECT_TRUE(VerifiesWith(key_.public_pem, canned, signature));
  // Another expiry is another policy: the signature no longer fits it.
  EXPECT_FALSE(VerifiesWith(key_.public_pem,
                            absl::StrCat(R"({"Statement":[{"Resource":")", kUrl,
                                         R"(","Condition":{"DateLessThan":{"AWS:EpochTime":)"
                                         R"(1767225601}}}]})"),
                            signature));
}

TEST_F(CloudFrontTest, CustomPolicyCarriesThePolicyItself) {
  absl::StatusOr<std::string> url = signer_->Sign(kUrl, {.date_less_than = 1767225600,
                                                         .date_greater_than = 1767139200,
                                                         .ip_address = "192.0.2.0/24"});
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(Param(*url, "Expires"), "");
  const std::string policy = FromCloudFrontBase64(Param(*url, "Policy"));
  EXPECT_EQ(policy, absl::StrCat(R"({"Statement":[{"Resource":")", kUrl,
                                 R"(","Condition":{"DateLessThan":{"AWS:EpochTime":1767225600},)"
                                 R"("DateGreaterThan":{"AWS:EpochTime":1767139200},)"
                                 R"("IpAddress":{"AWS:SourceIp":"192.0.2.0/24"}}}]})"));
  EXPECT_TRUE(
      VerifiesWith(key_.public_pem, policy, FromCloudFrontBase64(Param(*url, "Signature"))));
}

TEST_F(CloudFrontTest, UrlsEqualTheAwsSdkForJavaScript) {
  if (!testing::NodeSdkInstalled("@aws-sdk/cloudfront-signer")) {
    GTEST_SKIP() << "node or tests/node/node_modules missing (tools/install-deps.sh installs them)";
  }
  const CloudFrontPolicy policies[] = {
      {.date_less_than = 1767225600},
      {.date_less_than = 1767225600, .date_greater_than = 1767139200},
      {.date_less_than = 1767225600, .ip_address = "203.0.113.7"},  // a bare address: /32
      {.date_less_than = 2000000000, .date_greater_than = 1999999000, .ip_address = "10.0.0.0/8"},
  };
  for (const char* url : {kUrl, "https://models.example.com/v1/a.gguf?versionId=3"}) {
    for (const CloudFrontPolicy& policy : policies) {
      absl::StatusOr<std::string> ours = signer_->Sign(url, policy);
      ASSERT_TRUE(ours.ok()) << ours.status();
      EXPECT_EQ(*ours, SdkSign(url, policy)) << url << " " << policy.ip_address;
    }
  }
}

TEST_F(CloudFrontTest, BadPoliciesAreRefusedWithAReason) {
  const std::pair<std::string, CloudFrontPolicy> bad[] = {
      {kUrl, {.date_less_than = 0}},
      {"ftp://d1.cloudfront.net/x", {.date_less_than = 1767225600}},
      {"https://d1.cloudfront.net/a b", {.date_less_than = 1767225600}},
      {"https://d1.cloudfront.net/a\"b", {.date_less_than = 1767225600}},
      {kUrl, {.date_less_than = 100, .date_greater_than = 200}},
      {kUrl, {.date_less_than = 1767225600, .ip_address = "300.1.1.1"}},
      {kUrl, {.date_less_than = 1767225600, .ip_address = "10.0.0.0/33"}},
      {kUrl, {.date_less_than = 1767225600, .ip_address = "10.0.0/8"}},
  };
  for (const auto& [url, policy] : bad) {
    absl::StatusOr<std::string> signed_url = signer_->Sign(url, policy);
    EXPECT_EQ(ErrorReason(signed_url.status()), "CLOUDFRONT_POLICY_INVALID")
        << url << " " << policy.ip_address << " " << signed_url.status();
  }
}

TEST(CloudFrontKeyTest, KeysThatCannotSignAreRefusedWithoutEchoingThem) {
  const std::string garbage =
      "-----BEGIN PRIVATE KEY-----\nnot-a-key-4a7c\n-----END PRIVATE KEY-----\n";
  absl::StatusOr<std::unique_ptr<CloudFrontSigner>> signer =
      CloudFrontSigner::Create(kKeyPairId, garbage);
  ASSERT_FALSE(signer.ok());
  EXPECT_EQ(ErrorReason(signer.status()), "CLOUDFRONT_KEY_INVALID");
  EXPECT_THAT(signer.status().message(), Not(HasSubstr("not-a-key-4a7c")));

  // An Ed25519 key parses but cannot make CloudFront's RSA signatures.
  EVP_PKEY* ed = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, ed, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  const std::string ed_pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(ed);
  signer = CloudFrontSigner::Create(kKeyPairId, ed_pem);
  EXPECT_EQ(ErrorReason(signer.status()), "CLOUDFRONT_KEY_INVALID");
  EXPECT_THAT(signer.status().message(), HasSubstr("RSA"));

  EXPECT_EQ(ErrorReason(CloudFrontSigner::Create("", MakeRsaKey().private_pem).status()),
            "CLOUDFRONT_KEY_INVALID");
  EXPECT_EQ(ErrorReason(CloudFrontSigner::Create("K2&x=1", MakeRsaKey().private_pem).status()),
            "CLOUDFRONT_KEY_INVALID");
}

}  // namespace
}  // namespace modeldist::origin
