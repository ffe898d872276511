#include "client/modeldistctl/env_import.h"

#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "common/file_util.h"
#include "common/http/http.h"
#include "common/model_check/model_check.h"
#include "common/status.h"
#include "storage/origin/ranged_get.h"

namespace modeldist::ctl {
namespace {

bool IsKey(absl::string_view key) {
  if (key.empty() || absl::ascii_isdigit(key[0])) return false;
  for (char c : key) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return true;
}

// After a closing quote only blanks and a comment may follow.
bool OnlyCommentLeft(absl::string_view rest) {
  rest = absl::StripLeadingAsciiWhitespace(rest);
  return rest.empty() || rest[0] == '#';
}

// The value part of one line (after '='), unquoted; `why` says what is wrong when it fails.
std::optional<std::string> ParseValue(absl::string_view raw, std::string* why) {
  raw = absl::StripLeadingAsciiWhitespace(raw);
  if (!raw.empty() && raw[0] == '\'') {
    const size_t close = raw.find('\'', 1);
    if (close == absl::string_view::npos) {
      *why = "the single quote is not closed";
      return std::nullopt;
    }
    if (!OnlyCommentLeft(raw.substr(close + 1))) {
      *why = "text after the closing quote";
      return std::nullopt;
    }
    return std::string(raw.substr(1, close - 1));
  }
  if (!raw.empty() && raw[0] == '"') {
    std::string value;
    for (size_t i = 1; i < raw.size(); ++i) {
      const char c = raw[i];
      if (c == '"') {
        if (!OnlyCommentLeft(raw.substr(i + 1))) {
          *why = "text after the closing quote";
          return std::nullopt;
        }
        return value;
      }
      if (c == '\\' && i + 1 < raw.size()) {
        const char next = raw[++i];
        value += next == 'n' ? '\n' : next;
        continue;
      }
      value += c;
    }
    *why = "the double quote is not closed";
    return std::nullopt;
  }
  // Unquoted: a comment starts at a '#' after a blank, as in shells and dotenv files.
  size_t comment = absl::string_view::npos;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '#' && (i == 0 || absl::ascii_isspace(raw[i - 1]))) {
      comment = i;
      break;
    }
  }
  return std::string(absl::StripTrailingAsciiWhitespace(raw.substr(0, comment)));
}

// Whether `hex` is 64 hex digits.
bool IsSha256Hex(absl::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  return true;
}

http::HttpRequest RequestFor(const std::string& method, const std::string& url,
                             const FetchOptions& options) {
  http::HttpRequest request;
  request.method = method;
  request.url = url;
  request.ca_file = options.ca_file;
  // Hosted files often sit behind a redirect (a CDN, a storage API's public URL).
  request.follow_redirects = true;
  request.user_agent = "modeldistctl import-env";
  return request;
}

absl::Status SizeMismatch(const SeedObject& object, absl::string_view actual) {
  return DamageFound(absl::StrCat(object.prefix, "_SIZE_BYTES says ", object.expected.size,
                                  " bytes, but ", http::RedactUrl(object.url), " is ", actual,
                                  ": the variables do not describe this object; nothing was "
                                  "created on the server"));
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> ParseEnvFile(absl::string_view text,
                                                                absl::string_view path) {
  std::map<std::string, std::string> values;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    auto bad = [&](absl::string_view why) {
      return UsageError(absl::StrCat(path, ":", number, ": ", why,
                                     " (expected KEY=VALUE, optionally quoted, or a # comment)"));
    };
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    if (absl::ConsumePrefix(&line, "export")) {
      if (line.empty() || !absl::ascii_isspace(line[0])) return bad("no variable after export");
      line = absl::StripLeadingAsciiWhitespace(line);
    }
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) return bad("no '='");
    const absl::string_view key = absl::StripTrailingAsciiWhitespace(line.substr(0, eq));
    if (!IsKey(key)) return bad(absl::StrCat("\"", key, "\" is not a variable name"));
    std::string why;
    std::optional<std::string> value = ParseValue(line.substr(eq + 1), &why);
    if (!value.has_value()) return bad(absl::StrCat(key, ": ", why));
    values[std::string(key)] = *std::move(value);
  }
  return values;
}

absl::StatusOr<std::vector<SeedObject>> SeedObjectsFrom(const VariableLookup& lookup,
                                                        absl::string_view source) {
  auto get = [&lookup](const std::string& name) -> std::optional<std::string> {
    std::optional<std::string> value = lookup(name);
    if (value.has_value() && absl::StripAsciiWhitespace(*value).empty()) return std::nullopt;
    if (value.has_value()) return std::string(absl::StripAsciiWhitespace(*value));
    return value;
  };
  std::vector<SeedObject> objects;
  for (const SeedTarget& target : kSeedTargets) {
    const std::string prefix = target.prefix;
    const std::string names[3] = {prefix + "_URL", prefix + "_SHA256", prefix + "_SIZE_BYTES"};
    std::optional<std::string> values[3];
    int set = 0;
    for (int i = 0; i < 3; ++i) {
      values[i] = get(names[i]);
      if (values[i].has_value()) ++set;
    }
    if (set == 0) continue;
    for (int i = 0; i < 3; ++i) {
      if (!values[i].has_value()) {
        return UsageError(absl::StrCat(names[i], " is not set in ", source, ", but ",
                                       values[0] ? names[0] : names[1],
                                       " is: each object needs its URL, SHA256 and SIZE_BYTES"));
      }
    }
    SeedObject object;
    object.prefix = prefix;
    object.platform = target.platform;
    object.arch = target.arch;
    object.format = target.format;
    object.url = *values[0];
    if (!absl::StartsWith(object.url, "http://") && !absl::StartsWith(object.url, "https://")) {
      return UsageError(absl::StrCat(names[0], " must be an http:// or https:// URL, not \"",
                                     http::RedactUrl(object.url), "\""));
    }
    absl::string_view hex = *values[1];
    absl::ConsumePrefix(&hex, "sha256:");
    if (!IsSha256Hex(hex)) {
      return UsageError(absl::StrCat(names[1],
                                     " must be the object's SHA-256: 64 hex digits (what "
                                     "`shasum -a 256` prints), not \"",
                                     *values[1], "\""));
    }
    object.expected.hex = absl::AsciiStrToLower(hex);
    if (!absl::SimpleAtoi(*values[2], &object.expected.size) || object.expected.size < 1) {
      return UsageError(absl::StrCat(names[2],
                                     " must be the object's size in bytes (a whole number, at "
                                     "least 1; what `stat` prints), not \"",
                                     *values[2], "\""));
    }
    objects.push_back(std::move(object));
  }
  if (objects.empty()) {
    return UsageError(absl::StrCat(
        "no seed object in ", source, ": set LOCAL_LLM_MACOS_COREML_ZIP_URL, _SHA256 and ",
        "_SIZE_BYTES, or LOCAL_LLM_MACOS_INTEL_GGUF_URL, _SHA256 and _SIZE_BYTES (or both)"));
  }
  return objects;
}

std::string SeedTargetName(const SeedObject& object) {
  return absl::StrCat(PlatformName(object.platform), "/", ArchName(object.arch), "/",
                      FormatName(object.format));
}

absl::StatusOr<int64_t> HeadSize(const std::string& url, const FetchOptions& options) {
  const http::HttpRequest request = RequestFor("HEAD", url, options);
  const std::string where = http::RedactUrl(url);
  absl::StatusOr<http::HttpResponse> response =
      RetryCall(options.retry, [&]() -> absl::StatusOr<http::HttpResponse> {
        absl::StatusOr<http::HttpResponse> got = http::Perform(request);
        if (got.ok() && !got->ok()) return http::HttpError(*got, where);
        return got;
      });
  if (!response.ok()) {
    return LocalError(absl::Status(
        response.status().code(), absl::StrCat("HEAD ", where, ": ", response.status().message())));
  }
  int64_t size = -1;
  const std::string length = response->Header("content-length");
  if (length.empty() || !absl::SimpleAtoi(length, &size) || size < 0) return -1;
  return size;
}

absl::Status FetchSeedObject(const SeedObject& object, int fd, const std::string& path,
                             const FetchOptions& options) {
  const std::string where = http::RedactUrl(object.url);
  // A HEAD first: a wrong size is then known before a byte of a multi-GB object moves. A HEAD
  // that fails proves nothing (a URL presigned for GET refuses it): the GET then says.
  absl::StatusOr<int64_t> stated = HeadSize(object.url, options);
  if (stated.ok() && *stated >= 0 && *stated != object.expected.size) {
    return SizeMismatch(object, absl::StrCat(*stated, " bytes (its Content-Length)"));
  }
  Sha256 hash;
  int64_t written = 0;
  absl::Status too_long;
  std::unique_ptr<ProgressMeter> meter = std::make_unique<ProgressMeter>(
      options.log, options.show_progress && options.log != nullptr,
      absl::StrCat("fetching ", FormatName(object.format)), 0, object.expected.size);
  auto sink = [&](absl::string_view piece) -> absl::Status {
    if (written + static_cast<int64_t>(piece.size()) > object.expected.size) {
      // Reading on only to learn the exact size could cost gigabytes.
      too_long = SizeMismatch(object,
                              absl::StrCat("longer (", written + static_cast<int64_t>(piece.size()),
                                           " bytes arrived and it goes on)"));
      return too_long;
    }
    hash.Update(piece);
    if (absl::Status wrote = WriteAll(fd, piece.data(), piece.size()); !wrote.ok()) {
      return LocalError(
          absl::Status(wrote.code(), absl::StrCat("writing ", path, ": ", wrote.message())));
    }
    written += static_cast<int64_t>(piece.size());
    meter->Update(written);
    return absl::OkStatus();
  };
  absl::Status fetched = origin::RangedGet(
      where, 0, -1, options.retry,
      http::PlainRangeRequest(RequestFor("GET", object.url, options), where), sink);
  meter.reset();
  if (!too_long.ok()) return too_long;
  if (!fetched.ok()) {
    if (ExitCodeFor(fetched) == kExitLocal) return fetched;  // writing `path` failed
    return LocalError(absl::Status(
        fetched.code(), absl::StrCat("fetching ", object.prefix, "_URL: ", fetched.message())));
  }
  if (written != object.expected.size) {
    return SizeMismatch(object, absl::StrCat(written, " bytes"));
  }
  const std::string actual = hash.FinishHex();
  if (actual != object.expected.hex) {
    return DamageFound(absl::StrCat(object.prefix, "_SHA256 says ", object.expected.hex,
                                    ", but the ", written, " bytes of ", where, " hash to ", actual,
                                    ": nothing was created on the server"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ModelInfo> CheckSeedObject(const SeedObject& object, const std::string& path) {
  absl::StatusOr<std::unique_ptr<model_check::ByteSource>> source =
      model_check::OpenFileSource(path);
  if (!source.ok()) return LocalError(source.status());
  absl::StatusOr<v1::ModelInfo> info =
      model_check::CheckModel(object.format, **source, model_check::CheckOptions());
  if (info.ok()) return info;
  if (info.status().code() != absl::StatusCode::kInvalidArgument) {
    return LocalError(info.status());  // reading the file failed
  }
  return DamageFound(absl::StrCat(http::RedactUrl(object.url), " (", object.prefix,
                                  ") is not a valid ", FormatName(object.format), " file: ",
                                  info.status().message(), "; nothing was created on the server"));
}

}  // namespace modeldist::ctl
