#include "services/edge_manifest_endpoint.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/digest.h"
#include "common/enum_names.h"
#include "common/grpc_status.h"
#include "common/json.h"
#include "common/names.h"
#include "common/status.h"
#include "services/blob_endpoint.h"
#include "services/http_server/http_error.h"

namespace modeldist::services {
namespace {

using http_server::Request;
using http_server::Response;

// Browsers call the seed's function from web apps; supabase-js sends these headers.
void AddCors(Response& response) {
  response.Header("Access-Control-Allow-Origin", "*");
  response.Header("Access-Control-Allow-Methods", "POST, OPTIONS");
  response.Header("Access-Control-Allow-Headers",
                  "authorization, x-client-info, apikey, content-type");
}

absl::Status BadBody(absl::string_view why) {
  return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_JSON",
                   absl::StrCat("the body must be a JSON object like "
                                "{\"platform\":\"macos\",\"tier\":\"llama8b\"}: ",
                                why));
}

// The string field `name` of `body`: nullopt when absent or null, an error when not a string.
absl::StatusOr<std::optional<std::string>> StringField(const google::protobuf::Struct& body,
                                                       const std::string& name) {
  auto it = body.fields().find(name);
  if (it == body.fields().end() || it->second.has_null_value()) return std::nullopt;
  if (!it->second.has_string_value()) {
    return InvalidArgument(name, "INVALID_FIELD_TYPE", absl::StrCat(name, " must be a string"));
  }
  return it->second.string_value();
}

// An enum value's name without its prefix, in lower case: FORMAT_COREML_ZIP -> coreml_zip.
std::string ShortName(const std::string& enum_name) {
  const size_t underscore = enum_name.find('_');
  return absl::AsciiStrToLower(enum_name.substr(underscore + 1));
}

// The seed's name of an artifact ("coreml_zip" for LOCAL_LLM_MACOS_COREML_ZIP_*, "intel_gguf"
// for LOCAL_LLM_MACOS_INTEL_GGUF_*), "" for one the seed had no secret for.
std::string SeedName(const v1::ManifestArtifact& artifact) {
  if (artifact.format() == v1::FORMAT_COREML_ZIP) return "coreml_zip";
  if (artifact.format() == v1::FORMAT_GGUF && artifact.arch() == v1::ARCH_X86_64) {
    return "intel_gguf";
  }
  return "";
}

// "models/llama-3.1-8b" -> "llama-3.1-8b"; "models/m/versions/2026.11.0" -> "2026.11.0": what
// an app shows, not the catalog's resource names.
std::string ShortModel(absl::string_view name) {
  return std::string(absl::StripPrefix(name, "models/"));
}
std::string ShortVersion(absl::string_view name) {
  constexpr absl::string_view kVersions = "/versions/";
  const size_t at = name.rfind(kVersions);
  return std::string(at == absl::string_view::npos ? name : name.substr(at + kVersions.size()));
}

// The part of `signed_manifest`'s JSON that may differ between answers of the same signed bytes
// (why it was chosen, the mirrors), after Rendered::signed_head; with it, the JSON that
// protobuf's mapping prints (lowerCamel names, bytes in base64): what grpcurl shows and the
// openssl recipe reads.
std::string SignedManifestTail(const v1::SignedManifest& signed_manifest) {
  std::string json;
  if (!signed_manifest.selection_reason().empty()) {
    absl::StrAppend(&json, ",\"selectionReason\":", JsonQuote(signed_manifest.selection_reason()));
  }
  if (signed_manifest.mirrors_size() > 0) {
    json += ",\"mirrors\":[";
    for (int i = 0; i < signed_manifest.mirrors_size(); ++i) {
      const v1::Source& mirror = signed_manifest.mirrors(i);
      absl::StrAppend(
          &json, i == 0 ? "" : ",",
          mirror.has_http_url()
              ? absl::StrCat("{\"httpUrl\":", JsonQuote(mirror.http_url()), "}")
              : absl::StrCat("{\"artifactService\":", JsonQuote(mirror.artifact_service()), "}"));
    }
    json += "]";
  }
  json += "}";
  return json;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const EdgeManifestEndpoint::Rendered>> EdgeManifestEndpoint::Render(
    const v1::SignedManifest& signed_manifest) const {
  // Keyed by the first signature, which names these very bytes; the bytes are compared too.
  const std::string& key = signed_manifest.signatures_size() > 0
                               ? signed_manifest.signatures(0).signature()
                               : signed_manifest.manifest();
  {
    absl::ReaderMutexLock lock(&mu_);
    if (auto it = rendered_.find(key);
        it != rendered_.end() && it->second->manifest == signed_manifest.manifest()) {
      return it->second;
    }
  }
  v1::Manifest manifest;
  if (!manifest.ParseFromString(signed_manifest.manifest())) {
    return MakeError(absl::StatusCode::kInternal, "INTERNAL", "a signed manifest did not parse");
  }
  const v1::ManifestArtifact& artifact = manifest.artifact();
  auto rendered = std::make_shared<Rendered>();
  rendered->manifest = signed_manifest.manifest();
  rendered->digest = artifact.digest();
  rendered->hex = std::string(absl::StripPrefix(artifact.digest(), kSha256Prefix));
  rendered->size_bytes = artifact.size_bytes();
  rendered->seed_name = SeedName(artifact);
  rendered->fields =
      absl::StrCat("{\"arch\":", JsonQuote(ShortName(v1::Arch_Name(artifact.arch()))),
                   ",\"format\":", JsonQuote(ShortName(v1::Format_Name(artifact.format()))),
                   ",\"model\":", JsonQuote(ShortModel(manifest.model())),
                   ",\"version\":", JsonQuote(ShortVersion(manifest.version())));
  rendered->signed_head =
      absl::StrCat("{\"manifest\":\"", absl::Base64Escape(signed_manifest.manifest()), "\"");
  if (signed_manifest.signatures_size() > 0) {
    rendered->signed_head += ",\"signatures\":[";
    for (int i = 0; i < signed_manifest.signatures_size(); ++i) {
      const v1::Signature& signature = signed_manifest.signatures(i);
      absl::StrAppend(&rendered->signed_head, i == 0 ? "" : ",",
                      "{\"keyId\":", JsonQuote(signature.key_id()), ",\"signature\":\"",
                      absl::Base64Escape(signature.signature()), "\"}");
    }
    rendered->signed_head += "]";
  }
  absl::MutexLock lock(&mu_);
  // Answers are re-signed as they near expiry: the old ones are never asked for again.
  if (rendered_.size() >= kMaxRendered) rendered_.clear();
  rendered_[key] = rendered;
  return rendered;
}

Response EdgeManifestEndpoint::Serve(const Request& request) const {
  Response response;
  if (request.method == "OPTIONS") {
    response.status = 204;
    response.Header("Access-Control-Max-Age", "86400");
  } else if (request.method != "POST") {
    response = http_server::MethodNotAllowed(request.method, request.path, "POST, OPTIONS");
  } else {
    std::string device_id;
    response = Answer(request, &device_id);
    response.device_id = std::move(device_id);
  }
  AddCors(response);
  return response;
}

Response EdgeManifestEndpoint::Answer(const Request& request, std::string* device_id) const {
  google::protobuf::Struct body;
  if (const auto parsed = google::protobuf::util::JsonStringToMessage(request.body, &body);
      !parsed.ok()) {
    return http_server::ErrorResponse(
        BadBody(request.body.empty() ? "the body is empty" : parsed.message().ToString()));
  }
  v1::GetManifestRequest ask;
  std::vector<v1::Arch> archs = {v1::ARCH_ARM64, v1::ARCH_X86_64};
  std::string platform_name;
  {
    absl::Status fields = absl::OkStatus();
    auto read = [&](const std::string& name) -> std::string {
      absl::StatusOr<std::optional<std::string>> value = StringField(body, name);
      if (!value.ok()) {
        if (fields.ok()) fields = value.status();
        return "";
      }
      return value->value_or("");
    };
    ask.set_tier(read("tier"));
    ask.set_channel(read("channel"));
    ask.set_device_id(read("device_id"));
    *device_id = ask.device_id().substr(0, 128);  // the log's copy; GetManifest checks it
    platform_name = read("platform");
    const std::string arch_name = read("arch");
    if (!fields.ok()) return http_server::ErrorResponse(fields);
    v1::Platform platform = v1::PLATFORM_UNSPECIFIED;
    if (platform_name.empty() || !ParsePlatformName(platform_name, &platform)) {
      return http_server::ErrorResponse(InvalidArgument(
          "platform", "MISSING_PLATFORM",
          absl::StrCat("platform must be one of macos, ios, linux, windows, android; got \"",
                       platform_name.substr(0, 64), "\"")));
    }
    ask.set_platform(platform);
    if (!arch_name.empty()) {
      v1::Arch arch = v1::ARCH_UNSPECIFIED;
      if (!ParseArchName(arch_name, &arch) || (arch != v1::ARCH_ARM64 && arch != v1::ARCH_X86_64)) {
        return http_server::ErrorResponse(InvalidArgument(
            "arch", "INVALID_ARCH",
            absl::StrCat("arch must be arm64 or x86_64; got \"", arch_name.substr(0, 64), "\"")));
      }
      archs = {arch};
    }
  }

  std::string base = options_.public_url;
  if (base.empty() && request.HasHeader("host")) {
    base = absl::StrCat(options_.tls ? "https://" : "http://", request.Header("host"));
  }

  std::vector<std::string> entries;
  std::vector<std::string> named;
  std::optional<absl::Status> first_error;
  for (const v1::Arch arch : archs) {
    ask.set_arch(arch);
    v1::SignedManifest signed_manifest;
    const absl::Status got = FromGrpcStatus(answer_(ask, &signed_manifest));
    if (!got.ok()) {
      // An arch with nothing published is left out while another has something; any other
      // failure (damage, an upstream down) is what the caller must see.
      if (!first_error.has_value() || (absl::IsNotFound(*first_error) && !absl::IsNotFound(got))) {
        first_error = got;
      }
      continue;
    }
    absl::StatusOr<std::shared_ptr<const Rendered>> rendered = Render(signed_manifest);
    if (!rendered.ok()) return http_server::ErrorResponse(rendered.status());
    const Rendered& r = **rendered;
    std::vector<std::string> mirrors;
    for (const v1::Source& mirror : signed_manifest.mirrors()) {
      if (!mirror.http_url().empty()) mirrors.push_back(JsonQuote(mirror.http_url()));
    }
    const std::string triple =
        absl::StrCat("\"url\":", JsonQuote(BlobUrl(base, r.digest)), ",\"sha256\":\"", r.hex,
                     "\",\"size_bytes\":", r.size_bytes);
    entries.push_back(absl::StrCat(
        r.fields, ",", triple, ",\"mirrors\":[", absl::StrJoin(mirrors, ","),
        "],\"signed_manifest\":", r.signed_head, SignedManifestTail(signed_manifest), "}"));
    if (!r.seed_name.empty()) {
      named.push_back(absl::StrCat(JsonQuote(r.seed_name), ":{", triple, "}"));
    }
  }
  if (entries.empty()) return http_server::ErrorResponse(*first_error);
  const std::string channel = ask.channel().empty() ? std::string(kDefaultChannel) : ask.channel();
  return http_server::JsonResponse(
      200, absl::StrCat("{\"tier\":", JsonQuote(ask.tier()), ",\"channel\":", JsonQuote(channel),
                        ",\"platform\":", JsonQuote(absl::AsciiStrToLower(platform_name)),
                        named.empty() ? "" : ",", absl::StrJoin(named, ","), ",\"artifacts\":[",
                        absl::StrJoin(entries, ","), "]}"));
}

}  // namespace modeldist::services
