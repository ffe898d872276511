#include "client/modeldistctl/import.h"

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "common/flags.h"
#include "common/grpc_status.h"
#include "common/http/http.h"
#include "common/status.h"

namespace modeldist::ctl {

absl::StatusOr<ImportFrom> ParseImportFlags(const std::string& source, const std::string& sha256,
                                            const std::string& size) {
  ImportFrom from;
  if (absl::StartsWith(source, "http://") || absl::StartsWith(source, "https://")) {
    from.url = source;
  } else {
    const size_t colon = source.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == source.size()) {
      return UsageError(absl::StrCat("--import: \"", source,
                                     "\" is neither ORIGIN:KEY (an origin of the server, see "
                                     "`modeldistctl origins list`) nor an http(s) URL"));
    }
    from.origin = source.substr(0, colon);
    from.key = source.substr(colon + 1);
  }
  absl::string_view hex = sha256;
  absl::ConsumePrefix(&hex, "sha256:");
  if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), [](char c) {
        return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      })) {
    return UsageError(
        "--sha256 must be the bytes' SHA-256: 64 hex digits (what `shasum -a 256` "
        "or `openssl dgst -sha256` prints)");
  }
  from.expected.hex = absl::AsciiStrToLower(hex);
  absl::StatusOr<int64_t> bytes = ParseSize(size);
  if (!bytes.ok() || *bytes < 0) {
    return UsageError("--size must be the bytes' size, e.g. 4815162342 (what `stat` prints)");
  }
  from.expected.size = *bytes;
  return from;
}

std::string ImportName(const ImportFrom& from) {
  return from.url.empty() ? absl::StrCat(from.origin, ":", from.key) : http::RedactUrl(from.url);
}

absl::Status ImportArtifact(RegistryClient& client, const ImportFrom& from,
                            const std::string& label, std::ostream* log, bool draw) {
  v1::ImportArtifactRequest request;
  request.set_origin(from.origin);
  request.set_key(from.key);
  request.set_url(from.url);
  request.set_digest(FormatDigest(from.expected.hex));
  request.set_size_bytes(from.expected.size);
  // No deadline: fetching many GB takes long; ^C ends the process, the connection with it,
  // and so the server's fetch (which keeps what it has for the next run).
  std::unique_ptr<grpc::ClientContext> context = client.NewStreamContext();
  std::unique_ptr<grpc::ClientReader<v1::ImportArtifactProgress>> reader =
      client.stub().ImportArtifact(context.get(), request);
  std::unique_ptr<ProgressMeter> meter;
  v1::ImportArtifactProgress progress;
  while (reader->Read(&progress)) {
    if (!meter) {
      meter = std::make_unique<ProgressMeter>(log, draw && log != nullptr, label,
                                              progress.bytes_done(), from.expected.size);
    }
    meter->Update(progress.bytes_done());
  }
  meter.reset();
  return FromGrpcStatus(reader->Finish(), "ImportArtifact");
}

}  // namespace modeldist::ctl
