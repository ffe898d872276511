// libFuzzer target for the server's origins file (storage/origin/origin_config.h): JSON or
// protobuf text format, parsed and validated by LoadOriginsConfig.
//
// Input: one mode byte (even: the rest is written as origins.json, odd: as origins.txtpb).
// Properties: no crash or sanitizer finding; an error is INVALID_ARGUMENT with reason
// INVALID_ORIGINS_CONFIG; an accepted config passes ValidateOriginsConfig again, each origin's
// kind, location and blob key can be asked for, and it loads the same after being written back
// in text format.
#include <unistd.h>

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "storage/origin/origin_config.h"
#include "tests/fuzz/fuzz_util.h"

namespace modeldist {
namespace {

using fuzz::Require;

std::string ScratchPath(absl::string_view suffix) {
  const std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return base + "/modeldist-fuzz-origins-" + std::to_string(getpid()) + std::string(suffix);
}

absl::StatusOr<v1::OriginsConfig> Load(absl::string_view text, bool json) {
  const std::string path = ScratchPath(json ? ".json" : ".txtpb");
  Require(WriteFileAtomically(path, text, 0600).ok(), "write origins file");
  auto config = origin::LoadOriginsConfig(path);
  unlink(path.c_str());
  return config;
}

void CheckConfig(absl::string_view text, bool json) {
  const auto config = Load(text, json);
  Require(config.ok() || (config.status().code() == absl::StatusCode::kInvalidArgument &&
                          ErrorReason(config.status()) == "INVALID_ORIGINS_CONFIG"),
          "LoadOriginsConfig error: " + config.status().ToString());
  if (!config.ok()) return;
  Require(origin::ValidateOriginsConfig(*config).ok(), "accepted config fails validation");
  for (const v1::Origin& o : config->origins()) {
    Require(!origin::OriginKind(o).empty(), "an accepted origin has no kind");
    origin::OriginLocation(o);
    origin::BlobKey(o, std::string(64, 'a'));
    origin::IsWritable(o);
  }
  std::string again;
  Require(google::protobuf::TextFormat::PrintToString(*config, &again), "print");
  const auto reloaded = Load(again, false);
  Require(reloaded.ok(), "an accepted config does not load again from text format");
  Require(google::protobuf::util::MessageDifferencer::Equals(*config, *reloaded),
          "the config changed on the way back");
}

void WriteSeeds(const std::string& dir) {
  const std::string text = R"pb(
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
  Require(Load(text, false).ok(), "seed text config refused");
  fuzz::WriteSeed(dir, "text.txtpb", std::string(1, 1) + text);
  const std::string json =
      R"({"origins": [{"name": "swift", "replicate": true, "s3": {"endpoint":
          "http://127.0.0.1:8080", "region": "us-east-1", "bucket": "b", "accessKeyId":
          {"env": "K"}, "secretAccessKey": {"env": "S"}, "partSizeBytes": "8388608"}}]})";
  Require(Load(json, true).ok(), "seed JSON config refused");
  fuzz::WriteSeed(dir, "s3.json", std::string(1, 0) + json);
  fuzz::WriteSeed(dir, "bad.json", std::string(1, 0) + R"({"origins": 3})");
}

}  // namespace
}  // namespace modeldist

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  modeldist::fuzz::Initialize(modeldist::WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  modeldist::CheckConfig(absl::string_view(reinterpret_cast<const char*>(data) + 1, size - 1),
                         data[0] % 2 == 0);
  return 0;
}
