#include "storage/origin/supabase_origin.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/status.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "storage/origin/ranged_get.h"
#include "storage/origin/sigv4.h"

namespace modeldist::origin {
namespace {

constexpr char kTusVersion[] = "1.0.0";
// Answers we parse are a few hundred bytes; anything near this is not Supabase.
constexpr size_t kMaxJsonBody = 1 << 20;
// An error's explanation is cut here, so a misrouted request cannot flood a log with a page.
constexpr size_t kMaxDetail = 200;

// Parsed as google.protobuf.Value (any JSON: object, array, string), with protobuf's JSON
// parser rather than string searches, so escaping and key order cannot fool us.
std::optional<google::protobuf::Value> ParseJson(absl::string_view text) {
  google::protobuf::Value value;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(std::string(text), &value, options).ok()) {
    return std::nullopt;
  }
  return value;
}

// The string (or number, as text) of `value[name]`, or "" when `value` is no object or the
// field is missing.
std::string Field(const google::protobuf::Value& value, const std::string& name) {
  if (!value.has_struct_value()) return "";
  const auto& fields = value.struct_value().fields();
  const auto it = fields.find(name);
  if (it == fields.end()) return "";
  if (it->second.has_string_value()) return it->second.string_value();
  if (it->second.kind_case() == google::protobuf::Value::kNumberValue) {
    return absl::StrCat(static_cast<int64_t>(it->second.number_value()));
  }
  return "";
}

std::string JsonObject(const std::string& name, const google::protobuf::Value& value) {
  google::protobuf::Struct object;
  (*object.mutable_fields())[name] = value;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(object, &json);
  return json;
}

std::string Shorten(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text.substr(0, text.find('\n')));
  if (text.size() <= kMaxDetail) return std::string(text);
  return absl::StrCat(text.substr(0, kMaxDetail), "...");
}

absl::Status BadAnswer(absl::string_view where, absl::string_view what) {
  // UNAVAILABLE: a proxy or an outage page in the way may pass; the caller's policy decides.
  return MakeError(absl::StatusCode::kUnavailable, "ORIGIN_BAD_ANSWER",
                   absl::StrCat(where, " ", what));
}

// A HEAD's 400: Supabase's answer for every 4xx, whose JSON body a HEAD answer cannot carry.
bool UnexplainedBadRequest(const absl::Status& status) {
  return ErrorMetadataValue(status, "http_status") == "400";
}

}  // namespace

absl::Status SupabaseError(const http::HttpResponse& response, absl::string_view where) {
  long status = response.status;
  std::string detail;
  const std::optional<google::protobuf::Value> body = ParseJson(response.error_body);
  if (body.has_value() && body->has_struct_value()) {
    // {"statusCode":"404","code":"NoSuchKey","error":"not_found","message":"Object not found"};
    // older servers have no `code`, only `error`.
    long inner = 0;
    if (absl::SimpleAtoi(Field(*body, "statusCode"), &inner) && inner >= 400 && inner <= 599) {
      status = inner;
    }
    std::string code = Field(*body, "code");
    if (code.empty()) code = Field(*body, "error");
    const std::string message = Field(*body, "message");
    detail = Shorten(absl::StrCat(code, !code.empty() && !message.empty() ? ": " : "", message));
    if (status != response.status) {
      absl::StrAppend(&detail, " (sent as HTTP ", response.status, ")");
    }
  } else {
    // TUS answers with its real status and the message as plain text.
    detail = Shorten(response.error_body);
  }
  return http::StatusForHttp(status, where, detail);
}

struct SupabaseOrigin::TusUpload {
  std::string url;     // <base>/upload/resumable/<id>
  int64_t offset = 0;  // bytes the server holds
};

absl::StatusOr<std::unique_ptr<SupabaseOrigin>> SupabaseOrigin::Create(
    SupabaseOriginOptions options) {
  absl::string_view rest = options.url;
  if (!absl::ConsumePrefix(&rest, "https://") && !absl::ConsumePrefix(&rest, "http://")) {
    return InvalidArgument("url", "INVALID_ORIGINS_CONFIG",
                           "a Supabase project URL starts with https:// or http://");
  }
  if (rest.empty() || absl::StrContains(rest, "@") || absl::StrContains(rest, "?") ||
      absl::StrContains(rest, "#")) {
    return InvalidArgument("url", "INVALID_ORIGINS_CONFIG",
                           "a Supabase project URL is scheme://host[:port] with no user or query");
  }
  if (options.bucket.empty() || absl::StrContains(options.bucket, "/")) {
    return InvalidArgument("bucket", "INVALID_ORIGINS_CONFIG", "bucket must be one path segment");
  }
  if (options.service_role_key.empty()) {
    return InvalidArgument("service_role_key", "INVALID_ORIGINS_CONFIG",
                           "the service_role key is required");
  }
  if (options.single_upload_limit < 0 || options.single_upload_limit > kSupabaseTusChunkSize) {
    return InvalidArgument("single_upload_limit", "INVALID_ORIGINS_CONFIG",
                           "objects above 6 MiB go up over TUS: the limit is 0 to 6 MiB");
  }
  while (absl::EndsWith(options.url, "/")) options.url.pop_back();
  return std::unique_ptr<SupabaseOrigin>(new SupabaseOrigin(std::move(options)));
}

SupabaseOrigin::SupabaseOrigin(SupabaseOriginOptions options)
    : options_(std::move(options)), base_(absl::StrCat(options_.url, "/storage/v1")) {}

http::HttpRequest SupabaseOrigin::Request(const std::string& method,
                                          const std::string& path) const {
  http::HttpRequest request{.method = method, .url = absl::StrCat(base_, path)};
  // The storage server reads Authorization; the API gateway in front of it wants apikey.
  request.headers = {{"Authorization", absl::StrCat("Bearer ", options_.service_role_key)},
                     {"apikey", options_.service_role_key}};
  request.ca_file = options_.ca_file;
  request.low_speed_time = options_.stall_timeout;
  return request;
}

std::string SupabaseOrigin::ObjectPath(absl::string_view kind, const std::string& key) const {
  // Each path segment encoded, '/' kept: Supabase keys are paths ("prod/sha256/<hex>").
  return absl::StrCat("/object/", kind, kind.empty() ? "" : "/", UriEncode(options_.bucket, false),
                      "/", UriEncode(key, true));
}

std::string SupabaseOrigin::Where(const http::HttpRequest& request) const {
  return absl::StrCat(options_.name, ": ", request.method, " ", http::RedactUrl(request.url));
}

absl::StatusOr<http::HttpResponse> SupabaseOrigin::Send(const http::HttpRequest& request,
                                                        const http::BodySink& sink,
                                                        const http::HeadCheck& on_head) {
  if (options_.fault) MD_RETURN_IF_ERROR(options_.fault(request));
  MD_ASSIGN_OR_RETURN(http::HttpResponse response, http::Perform(request, sink, on_head));
  if (response.ok()) return response;
  absl::Status error = SupabaseError(response, Where(request));
  // The server never echoes the key in the answers seen so far; should one ever, it stops here.
  if (absl::StrContains(error.message(), options_.service_role_key)) {
    error = WithMessage(
        error, absl::StrReplaceAll(error.message(), {{options_.service_role_key, "<key>"}}));
  }
  return error;
}

absl::StatusOr<http::HttpResponse> SupabaseOrigin::SendForJson(const http::HttpRequest& request,
                                                               std::string* body) {
  return RetryCall(options_.retry, [&] {
    body->clear();
    return Send(request, [&](absl::string_view piece) {
      if (body->size() + piece.size() > kMaxJsonBody) {
        return BadAnswer(Where(request), "sent an answer over 1 MiB");
      }
      body->append(piece.data(), piece.size());
      return absl::OkStatus();
    });
  });
}

absl::Status SupabaseOrigin::Put(const std::string& key, const http::BodyReader& source,
                                 int64_t size, const std::string&, const PutProgress& progress) {
  // An empty object always goes in one POST: a TUS upload of length 0 has no PATCH to finish it.
  if (size <= options_.single_upload_limit || size == 0) {
    MD_RETURN_IF_ERROR(PutSingle(key, source, size));
    if (progress) progress(size, size);
    return absl::OkStatus();
  }
  return PutResumable(key, source, size, progress);
}

absl::Status SupabaseOrigin::PutSingle(const std::string& key, const http::BodyReader& source,
                                       int64_t size) {
  http::HttpRequest request = Request("POST", ObjectPath("", key));
  request.headers.emplace_back("Content-Type", "application/octet-stream");
  request.headers.emplace_back("x-upsert", "true");  // a copy left by an earlier Put is replaced
  request.body_reader = source;
  request.body_length = size;
  std::string body;
  MD_RETURN_IF_ERROR(SendForJson(request, &body).status());
  // {"Key":"<bucket>/<key>","Id":"<uuid>"}: a 200 with another key is not our object.
  const std::optional<google::protobuf::Value> answer = ParseJson(body);
  if (!answer.has_value() || Field(*answer, "Key") != absl::StrCat(options_.bucket, "/", key)) {
    return BadAnswer(Where(request), "did not confirm the upload with the object's Key");
  }
  return absl::OkStatus();
}

void SupabaseOrigin::Remember(const std::string& key, const std::string& upload_url, int64_t size) {
  absl::MutexLock lock(&mu_);
  uploads_[key] = Kept{upload_url, size};
}

void SupabaseOrigin::Forget(const std::string& key) {
  absl::MutexLock lock(&mu_);
  uploads_.erase(key);
}

std::string SupabaseOrigin::PendingUploadUrl(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  const auto it = uploads_.find(key);
  return it == uploads_.end() ? "" : it->second.url;
}

absl::StatusOr<SupabaseOrigin::TusUpload> SupabaseOrigin::CreateUpload(const std::string& key,
                                                                       int64_t size) {
  http::HttpRequest request = Request("POST", "/upload/resumable");
  request.headers.emplace_back("Tus-Resumable", kTusVersion);
  request.headers.emplace_back("Upload-Length", absl::StrCat(size));
  // TUS metadata: comma-separated "name base64(value)" pairs.
  request.headers.emplace_back(
      "Upload-Metadata", absl::StrCat("bucketName ", absl::Base64Escape(options_.bucket),
                                      ",objectName ", absl::Base64Escape(key), ",contentType ",
                                      absl::Base64Escape("application/octet-stream")));
  request.headers.emplace_back("x-upsert", "true");
  MD_ASSIGN_OR_RETURN(http::HttpResponse response,
                      RetryCall(options_.retry, [&] { return Send(request); }));
  // Only the upload's id is taken from Location: the URL is rebuilt on the configured base, so
  // the key is never sent to a host we were not configured with, and a proxy that rewrites the
  // scheme or host in Location does not matter.
  const std::string location_header = response.Header("location");
  absl::string_view location = location_header;
  location = location.substr(0, location.find_first_of("?#"));
  absl::ConsumeSuffix(&location, "/");
  const absl::string_view id = location.substr(location.rfind('/') + 1);
  if (id.empty() || !absl::StrContains(location, "/upload/resumable/")) {
    return BadAnswer(Where(request), "created an upload without a Location to send it to");
  }
  TusUpload upload{.url = absl::StrCat(base_, "/upload/resumable/", id)};
  Remember(key, upload.url, size);
  return upload;
}

absl::StatusOr<int64_t> SupabaseOrigin::UploadOffset(const std::string& upload_url,
                                                     int64_t* length) {
  http::HttpRequest request = Request("HEAD", "");
  request.url = upload_url;
  request.headers.emplace_back("Tus-Resumable", kTusVersion);
  MD_ASSIGN_OR_RETURN(http::HttpResponse response,
                      RetryCall(options_.retry, [&] { return Send(request); }));
  int64_t offset = -1;
  if (!absl::SimpleAtoi(response.Header("upload-offset"), &offset) || offset < 0 ||
      !absl::SimpleAtoi(response.Header("upload-length"), length)) {
    return BadAnswer(Where(request), "sent no Upload-Offset and Upload-Length");
  }
  return offset;
}

absl::StatusOr<SupabaseOrigin::TusUpload> SupabaseOrigin::StartOrResume(const std::string& key,
                                                                        int64_t size) {
  std::optional<Kept> kept;
  {
    absl::MutexLock lock(&mu_);
    const auto it = uploads_.find(key);
    if (it != uploads_.end()) kept = it->second;
  }
  if (kept.has_value() && kept->size == size) {
    int64_t length = -1;
    absl::StatusOr<int64_t> offset = UploadOffset(kept->url, &length);
    if (offset.ok() && length == size && *offset <= size) return TusUpload{kept->url, *offset};
    // Unreachable now is not gone: keep it for the next Put rather than start a second one.
    if (!offset.ok() && offset.status().code() != absl::StatusCode::kNotFound) {
      return offset.status();
    }
  }
  // Gone (expired, finished, ended) or for other bytes: start afresh.
  if (kept.has_value()) Terminate(key, kept->url);
  return CreateUpload(key, size);
}

absl::Status SupabaseOrigin::PatchChunk(TusUpload& upload, const http::BodyReader& source,
                                        int64_t end, absl::Status* source_error) {
  const int64_t start = upload.offset;
  http::HttpRequest request = Request("PATCH", "");
  request.url = upload.url;
  request.headers.emplace_back("Tus-Resumable", kTusVersion);
  request.headers.emplace_back("Upload-Offset", absl::StrCat(start));
  request.headers.emplace_back("Content-Type", "application/offset+octet-stream");
  // The source's own error is told apart from the transfer's: it is final, never retried.
  request.body_reader = [&source, start, source_error](int64_t at, char* buf,
                                                       size_t n) -> absl::StatusOr<size_t> {
    absl::StatusOr<size_t> got = source(start + at, buf, n);
    if (!got.ok()) *source_error = got.status();
    return got;
  };
  request.body_length = end - start;
  MD_ASSIGN_OR_RETURN(http::HttpResponse response, Send(request));
  int64_t offset = -1;
  if (!absl::SimpleAtoi(response.Header("upload-offset"), &offset) || offset < start ||
      offset > end) {
    return BadAnswer(Where(request), "answered a PATCH without a valid Upload-Offset");
  }
  upload.offset = offset;
  return absl::OkStatus();
}

absl::Status SupabaseOrigin::SendChunk(TusUpload& upload, const http::BodyReader& source,
                                       int64_t size) {
  // The chunk ends on the next multiple of 6 MiB, also when a failed PATCH left the server in
  // the middle of one: every part but the last stays exactly 6 MiB, as Supabase requires.
  const int64_t end =
      std::min(size, (upload.offset / kSupabaseTusChunkSize + 1) * kSupabaseTusChunkSize);
  Retrier retrier(options_.retry);
  while (upload.offset < end) {
    const int64_t before = upload.offset;
    absl::Status source_error;
    const absl::Status status = PatchChunk(upload, source, end, &source_error);
    if (!source_error.ok()) return source_error;
    if (status.ok()) {
      retrier.Progressed();
      continue;
    }
    // 409: the server holds another offset than we sent (a PATCH that failed after storing
    // part of its bytes). Like a failure that may pass, it is settled by asking the server.
    const bool conflict = ErrorMetadataValue(status, "http_status") == "409";
    if (!conflict && !options_.retry.IsRetryable(status)) return status;
    // Counted as a failure that may pass, so that conflicts too end after max_attempts.
    const absl::Status counted =
        conflict ? MakeError(absl::StatusCode::kUnavailable, "HTTP_UNAVAILABLE", status.message())
                 : status;
    const std::optional<absl::Duration> wait = retrier.NextWait(counted);
    if (!wait.has_value()) return status;
    absl::SleepFor(*wait);
    int64_t length = -1;
    MD_ASSIGN_OR_RETURN(const int64_t offset, UploadOffset(upload.url, &length));
    if (length != size || offset < 0 || offset > size) {
      return BadAnswer(absl::StrCat(options_.name, ": HEAD ", http::RedactUrl(upload.url)),
                       "reported an offset or length this upload does not have");
    }
    upload.offset = offset;
    if (offset > before) retrier.Progressed();
  }
  return absl::OkStatus();
}

void SupabaseOrigin::Terminate(const std::string& key, const std::string& upload_url) {
  Forget(key);
  http::HttpRequest request = Request("DELETE", "");
  request.url = upload_url;
  request.headers.emplace_back("Tus-Resumable", kTusVersion);
  // Best effort: an upload left behind expires on the server, and is never an object.
  (void)RetryCall(options_.retry, [&] { return Send(request); });
}

absl::Status SupabaseOrigin::PutResumable(const std::string& key, const http::BodyReader& source,
                                          int64_t size, const PutProgress& progress) {
  MD_ASSIGN_OR_RETURN(TusUpload upload, StartOrResume(key, size));
  if (progress && upload.offset > 0) progress(upload.offset, size);
  absl::Status failed;
  while (failed.ok() && upload.offset < size) {
    const std::string context = absl::StrCat("chunk at byte ", upload.offset, " of ", size);
    failed = WithContext(SendChunk(upload, source, size), context);
    if (failed.ok() && progress) progress(upload.offset, size);
  }
  if (failed.ok()) {
    Forget(key);  // the last PATCH stored the object
    return absl::OkStatus();
  }
  // An interruption keeps the upload for the next Put to resume; a failure another attempt
  // cannot fix (bytes that failed their check, a denied request) ends it.
  if (failed.code() != absl::StatusCode::kCancelled && !options_.retry.IsRetryable(failed)) {
    Terminate(key, upload.url);
  }
  return failed;
}

absl::StatusOr<ObjectInfo> SupabaseOrigin::Head(const std::string& key) {
  const http::HttpRequest head = Request("HEAD", ObjectPath("authenticated", key));
  return RetryCall(options_.retry, [&]() -> absl::StatusOr<ObjectInfo> {
    absl::StatusOr<http::HttpResponse> response = Send(head);
    if (!response.ok()) {
      if (!UnexplainedBadRequest(response.status())) return response.status();
      // The same lookup as a GET, whose error has the JSON body that says what it was
      // (NoSuchKey, AccessDenied, ...). Found this time: the object just appeared; the HEAD's
      // error stands and the caller may ask again.
      const absl::Status why = Send(Request("GET", ObjectPath("info/authenticated", key))).status();
      return why.ok() ? response.status() : why;
    }
    ObjectInfo info;
    if (!absl::SimpleAtoi(response->Header("content-length"), &info.size)) {
      return BadAnswer(Where(head), "sent no Content-Length");
    }
    info.etag = EtagValue(response->Header("etag"));
    return info;
  });
}

absl::Status SupabaseOrigin::Get(const std::string& key, int64_t offset, int64_t length,
                                 const ByteSink& sink, const std::atomic<bool>* cancel) {
  http::HttpRequest request = Request("GET", ObjectPath("authenticated", key));
  request.cancel = cancel;
  auto ranged = [this, &request](const std::string& range, const http::BodySink& body,
                                 const http::HeadCheck& on_head) {
    http::HttpRequest with_range = request;
    with_range.headers.emplace_back("Range", range);
    return Send(with_range, body, on_head);
  };
  return RangedGet(Where(request), offset, length, options_.retry, ranged, sink);
}

absl::StatusOr<std::string> SupabaseOrigin::DeviceUrl(const std::string& key,
                                                      int64_t expires_unix) {
  if (options_.public_bucket) return absl::StrCat(base_, ObjectPath("public", key));
  const int64_t seconds = std::max<int64_t>(1, expires_unix - absl::ToUnixSeconds(options_.now()));
  http::HttpRequest request = Request("POST", ObjectPath("sign", key));
  request.headers.emplace_back("Content-Type", "application/json");
  google::protobuf::Value expires_in;
  expires_in.set_number_value(static_cast<double>(seconds));
  request.body = JsonObject("expiresIn", expires_in);
  std::string body;
  MD_RETURN_IF_ERROR(SendForJson(request, &body).status());
  // {"signedURL":"/object/sign/<bucket>/<key>?token=<JWT>"}, relative to /storage/v1.
  const std::optional<google::protobuf::Value> answer = ParseJson(body);
  const std::string signed_url = answer.has_value() ? Field(*answer, "signedURL") : "";
  if (!absl::StartsWith(signed_url, "/object/sign/") || !absl::StrContains(signed_url, "?")) {
    return BadAnswer(Where(request), "sent no signedURL");
  }
  // The server writes the path as the key is spelled; encoded here like every other path (one
  // that already holds an escape is taken as encoded: Supabase keys cannot contain '%').
  const size_t query = signed_url.find('?');
  const std::string path = signed_url.substr(0, query);
  return absl::StrCat(base_, absl::StrContains(path, "%") ? path : UriEncode(path, true),
                      signed_url.substr(query));
}

absl::Status SupabaseOrigin::Delete(const std::string& key) {
  const http::HttpRequest request = Request("DELETE", ObjectPath("", key));
  const absl::Status status = RetryCall(options_.retry, [&] { return Send(request); }).status();
  if (status.code() == absl::StatusCode::kNotFound) return absl::OkStatus();
  return status;
}

}  // namespace modeldist::origin
