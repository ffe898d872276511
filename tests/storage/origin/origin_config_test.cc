#include "storage/origin/origin_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <string>

#include "common/file_util.h"
#include "common/status.h"
#include "tests/testing/test_util.h"

namespace modeldist::origin {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::IsOkAndHolds;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kGood[] = R"pb(
  origins {
    name: "r2-eu"
    key_prefix: "models/"
    replicate: true
    s3 {
      endpoint: "https://acct.r2.cloudflarestorage.com"
      region: "auto"
      bucket: "models"
      access_key_id { env: "R2_KEY_ID" }
      secret_access_key { file: "/etc/modeldist/r2.secret" }
      checksum_sha256: true
    }
    cdn {
      base_url: "https://d111111abcdef8.cloudfront.net"
      cloudfront {
        key_pair_id: "K2JCJMDEHXQW5F"
        private_key { file: "/etc/modeldist/cf.pem" }
      }
    }
  }
  origins {
    name: "supabase"
    supabase {
      url: "https://proj.supabase.co"
      bucket: "models"
      service_role_key { env: "SUPABASE_SERVICE_ROLE_KEY" }
    }
  }
  origins {
    name: "cdn-only"
    http { base_url: "https://models.example.com" }
  }
)pb";

class OriginConfigTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_.Join(name);
    EXPECT_THAT(WriteFileAtomically(path, text, 0600), IsOk());
    return path;
  }
  // The status of loading `text` as a text-format origins file.
  absl::Status LoadText(const std::string& text) {
    return LoadOriginsConfig(Write("origins.txtpb", text)).status();
  }

  ScratchDir dir_;
};

TEST_F(OriginConfigTest, LoadsTextFormatAndJson) {
  auto text = LoadOriginsConfig(Write("origins.txtpb", kGood));
  ASSERT_THAT(text, IsOk());
  ASSERT_EQ(text->origins_size(), 3);
  EXPECT_EQ(text->origins(0).s3().region(), "auto");
  EXPECT_EQ(text->origins(2).http().base_url(), "https://models.example.com");

  auto json = LoadOriginsConfig(Write(
      "origins.json",
      R"({"origins": [{"name": "swift", "replicate": true, "s3": {"endpoint": "http://127.0.0.1:8080",
          "region": "us-east-1", "bucket": "b", "accessKeyId": {"env": "K"},
          "secretAccessKey": {"env": "S"}, "partSizeBytes": "8388608"}}]})"));
  ASSERT_THAT(json, IsOk());
  EXPECT_EQ(json->origins(0).s3().part_size_bytes(), 8 << 20);
  EXPECT_TRUE(IsWritable(json->origins(0)));
  EXPECT_FALSE(IsWritable(text->origins(2)));
}

TEST_F(OriginConfigTest, SyntaxErrorsNameTheFileAndFormat) {
  absl::Status bad = LoadText("origins { name: \"x\" s3 { endpoint: }");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("text format")));
  EXPECT_EQ(ErrorReason(bad), "INVALID_ORIGINS_CONFIG");
  absl::Status json = LoadOriginsConfig(Write("o.json", "{\"origins\": 3}")).status();
  EXPECT_THAT(json, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON")));
  EXPECT_THAT(LoadOriginsConfig(dir_.Join("missing.txtpb")).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("origins file")));
}

// Each bad value is refused with the path of the field that holds it.
TEST_F(OriginConfigTest, BadValuesNameTheirField) {
  struct Case {
    std::string text;
    std::string field;
  };
  const std::string creds = "access_key_id { env: \"K\" } secret_access_key { env: \"S\" }";
  const Case cases[] = {
      {"origins { name: \"Bad_Name\" http { base_url: \"https://a\" } }", "origins[0].name"},
      {"origins { name: \"a\" }", "origins[0]"},
      {"origins { name: \"a\" http { base_url: \"ftp://a\" } }", "origins[0].http.base_url"},
      {"origins { name: \"a\" http { base_url: \"https://a/\" } }", "origins[0].http.base_url"},
      {"origins { name: \"a\" http { base_url: \"https://a?x=1\" } }", "origins[0].http.base_url"},
      {"origins { name: \"a\" s3 { endpoint: \"https://s3\" bucket: \"b\" " + creds + " } }",
       "origins[0].s3.region"},
      {"origins { name: \"a\" s3 { endpoint: \"https://s3\" region: \"r\" " + creds + " } }",
       "origins[0].s3.bucket"},
      {"origins { name: \"a\" s3 { endpoint: \"https://s3\" region: \"r\" bucket: \"b\" } }",
       "origins[0].s3.access_key_id"},
      {"origins { name: \"a\" s3 { endpoint: \"https://s3\" region: \"r\" bucket: \"b\" " + creds +
           " part_size_bytes: 1024 } }",
       "origins[0].s3.part_size_bytes"},
      {"origins { name: \"a\" supabase { url: \"https://p\" bucket: \"b\" } }",
       "origins[0].supabase.service_role_key"},
      {"origins { name: \"a\" http { base_url: \"https://a\" } replicate: true }",
       "origins[0].replicate"},
      {"origins { name: \"a\" http { base_url: \"https://a\" } key_prefix: \"../x/\" }",
       "origins[0].key_prefix"},
      {"origins { name: \"a\" http { base_url: \"https://a\" } key_prefix: \"/x\" }",
       "origins[0].key_prefix"},
      {"origins { name: \"a\" http { base_url: \"https://a\" } key_prefix: \"a b\" }",
       "origins[0].key_prefix"},
      {"origins { name: \"a\" http { base_url: \"https://a\" } cdn { base_url: \"https://c\" "
       "cloudfront { private_key { file: \"/k\" } } } }",
       "origins[0].cdn.cloudfront.key_pair_id"},
      {"origins { name: \"a\" http { base_url: \"https://a\" } } "
       "origins { name: \"a\" http { base_url: \"https://b\" } }",
       "origins[1].name"},
      {"origins { name: \"a\" modeldist { } }", "origins[0].modeldist.target"},
      {"origins { name: \"a\" modeldist { target: \"https://hq:8443\" } }",
       "origins[0].modeldist.target"},
      {"origins { name: \"a\" modeldist { target: \"hq:8443\" } key_prefix: \"m/\" }",
       "origins[0].key_prefix"},
      {"origins { name: \"a\" modeldist { target: \"hq:8443\" } cdn { base_url: \"https://c\" } }",
       "origins[0].cdn"},
      {"origins { name: \"a\" modeldist { target: \"hq:8443\" } replicate: true }",
       "origins[0].replicate"},
      {"origins { name: \"a\" modeldist { target: \"hq:8443\" forward_manifests: true } }",
       "origins[0].modeldist.trust_root_file"},
      {"origins { name: \"a\" modeldist { target: \"a:1\" forward_manifests: true "
       "trust_root_file: \"/r\" } } origins { name: \"b\" modeldist { target: \"b:1\" "
       "forward_manifests: true trust_root_file: \"/r\" } }",
       "origins[1].modeldist.forward_manifests"},
  };
  for (const Case& c : cases) {
    absl::Status status = LoadText(c.text);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field))) << c.text;
    EXPECT_EQ(ErrorReason(status), "INVALID_ORIGINS_CONFIG") << c.text;
    EXPECT_EQ(ErrorMetadataValue(status, "field"), c.field) << c.text;
  }
}

TEST_F(OriginConfigTest, SecretsComeFromPrivateFilesOrTheEnvironment) {
  v1::Secret secret;
  const std::string path = Write("key", "s3cr3t-value\n");
  secret.set_file(path);
  EXPECT_THAT(ReadSecret(secret, "f"), IsOkAndHolds(std::string("s3cr3t-value")));

  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  absl::StatusOr<std::string> shared = ReadSecret(secret, "origins[0].s3.secret_access_key");
  EXPECT_THAT(shared.status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("chmod 600")));
  EXPECT_EQ(ErrorReason(shared.status()), "SECRET_UNAVAILABLE");
  EXPECT_EQ(ErrorMetadataValue(shared.status(), "field"), "origins[0].s3.secret_access_key");
  EXPECT_THAT(std::string(shared.status().message()), Not(HasSubstr("s3cr3t")));

  secret.set_file(dir_.Join("absent"));
  EXPECT_THAT(ReadSecret(secret, "f").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("absent")));

  secret.set_env("MODELDIST_ORIGIN_CONFIG_TEST_SECRET");
  ::unsetenv("MODELDIST_ORIGIN_CONFIG_TEST_SECRET");
  EXPECT_THAT(ReadSecret(secret, "f").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("MODELDIST_ORIGIN_CONFIG_TEST_SECRET is unset")));
  ::setenv("MODELDIST_ORIGIN_CONFIG_TEST_SECRET", "from-env", 1);
  EXPECT_THAT(ReadSecret(secret, "f"), IsOkAndHolds(std::string("from-env")));
  ::unsetenv("MODELDIST_ORIGIN_CONFIG_TEST_SECRET");
}

TEST_F(OriginConfigTest, BlobKeysCarryThePrefix) {
  v1::Origin origin;
  EXPECT_EQ(BlobKey(origin, "ab12"), "sha256/ab12");
  origin.set_key_prefix("models/");
  EXPECT_EQ(BlobKey(origin, "ab12"), "models/sha256/ab12");
}

}  // namespace
}  // namespace modeldist::origin
