// libFuzzer target for the edge manifest endpoint's request parser
// (services/edge_manifest_endpoint.h): a fuzzed body POSTed to the seed's path, answered by a
// stand-in for GetManifest that returns a fixed signed manifest (or NOT_FOUND for tier
// "missing"), so the whole answer is rendered too.
//
// Properties: no crash or sanitizer finding; the status is 200, 400 or 404; the answer (built by
// hand with JsonQuote, common/json.h) is valid JSON whatever bytes the request carried, since
// parts of the request are echoed in error messages.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/digest.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "services/edge_manifest_endpoint.h"
#include "tests/fuzz/fuzz_util.h"

namespace modeldist {
namespace {

using fuzz::Require;

v1::SignedManifest FixedManifest(const v1::GetManifestRequest& ask) {
  v1::Manifest manifest;
  manifest.set_tier(ask.tier());
  manifest.set_channel(ask.channel().empty() ? "stable" : ask.channel());
  manifest.set_platform(ask.platform());
  manifest.set_arch(ask.arch());
  manifest.set_model("models/llama");
  manifest.set_version("models/llama/versions/1");
  v1::ManifestArtifact* artifact = manifest.mutable_artifact();
  artifact->set_digest(FormatDigest(Sha256::HexOf("weights")));
  artifact->set_size_bytes(7);
  artifact->set_format(ask.arch() == v1::ARCH_ARM64 ? v1::FORMAT_COREML_ZIP : v1::FORMAT_GGUF);
  artifact->set_platform(ask.platform());
  artifact->set_arch(ask.arch());
  v1::SignedManifest out;
  manifest.SerializeToString(out.mutable_manifest());
  v1::Signature* sig = out.add_signatures();
  sig->set_key_id("0123456789abcdef");
  sig->set_signature(std::string(64, 's'));
  return out;
}

const services::EdgeManifestEndpoint& Endpoint() {
  static const auto* endpoint = new services::EdgeManifestEndpoint(
      [](const v1::GetManifestRequest& ask, v1::SignedManifest* out) {
        if (ask.tier() == "missing") return grpc::Status(grpc::StatusCode::NOT_FOUND, "no");
        *out = FixedManifest(ask);
        return grpc::Status::OK;
      },
      services::EdgeManifestOptions{});
  return *endpoint;
}

void CheckAnswer(absl::string_view body) {
  http_server::Request request;
  request.method = "POST";
  request.path = Endpoint().path();
  request.headers["host"] = "models.example.com";
  request.headers["content-type"] = "application/json";
  request.body = std::string(body);
  const http_server::Response response = Endpoint().Serve(request);
  Require(response.status == 200 || response.status == 400 || response.status == 404,
          "status " + std::to_string(response.status));
  google::protobuf::Struct parsed;
  Require(google::protobuf::util::JsonStringToMessage(response.body, &parsed).ok(),
          "the answer is not JSON: " + response.body);
}

void WriteSeeds(const std::string& dir) {
  fuzz::WriteSeed(dir, "macos", R"({"platform":"macos","tier":"llama8b"})");
  fuzz::WriteSeed(dir, "arm64",
                  R"({"platform":"macos","tier":"llama8b","arch":"arm64","channel":"beta",)"
                  R"("device_id":"dev-1"})");
  fuzz::WriteSeed(dir, "missing", R"({"platform":"linux","tier":"missing"})");
  fuzz::WriteSeed(dir, "bad-platform", R"({"platform":"amiga\u0001","tier":3})");
}

}  // namespace
}  // namespace modeldist

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  modeldist::fuzz::Initialize(modeldist::WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  modeldist::CheckAnswer(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
