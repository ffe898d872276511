#include "common/http/http.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldist::http {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(RedactUrlTest, DropsQueryFragmentAndCredentials) {
  EXPECT_EQ(RedactUrl("https://h.example/b/k?X-Amz-Signature=abc&X-Amz-Credential=AKID"),
            "https://h.example/b/k");
  EXPECT_EQ(RedactUrl("https://user:secret@h.example:8443/p#frag"), "https://h.example:8443/p");
  EXPECT_EQ(RedactUrl("http://h.example/a@b/c"), "http://h.example/a@b/c");  // @ in the path
  EXPECT_EQ(RedactUrl("http://127.0.0.1:80"), "http://127.0.0.1:80");
}

TEST(StatusForHttpTest, MapsCodeClassesWithReasons) {
  struct Case {
    long status;
    absl::StatusCode code;
    const char* reason;
  } cases[] = {
      {404, absl::StatusCode::kNotFound, "HTTP_NOT_FOUND"},
      {410, absl::StatusCode::kNotFound, "HTTP_NOT_FOUND"},
      {403, absl::StatusCode::kPermissionDenied, "HTTP_FORBIDDEN"},
      {401, absl::StatusCode::kPermissionDenied, "HTTP_FORBIDDEN"},
      {416, absl::StatusCode::kOutOfRange, "HTTP_RANGE_NOT_SATISFIABLE"},
      {500, absl::StatusCode::kUnavailable, "HTTP_UNAVAILABLE"},
      {503, absl::StatusCode::kUnavailable, "HTTP_UNAVAILABLE"},
      {429, absl::StatusCode::kUnavailable, "HTTP_UNAVAILABLE"},
      {408, absl::StatusCode::kUnavailable, "HTTP_UNAVAILABLE"},
      {400, absl::StatusCode::kFailedPrecondition, "HTTP_UNEXPECTED_STATUS"},
      {409, absl::StatusCode::kFailedPrecondition, "HTTP_UNEXPECTED_STATUS"},
  };
  for (const Case& c : cases) {
    const absl::Status status = StatusForHttp(c.status, "http://h/x");
    EXPECT_EQ(status.code(), c.code) << c.status;
    EXPECT_EQ(ErrorReason(status), c.reason) << c.status;
    EXPECT_EQ(ErrorMetadataValue(status, "http_status"), absl::StrCat(c.status));
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("HTTP ", c.status)));
  }
}

TEST(HttpErrorTest, NamesTheS3ErrorCode) {
  HttpResponse response;
  response.status = 403;
  response.error_body =
      "<?xml version='1.0'?><Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>";
  const absl::Status status = HttpError(response, "http://h/b/k");
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(), HasSubstr("SignatureDoesNotMatch"));
}

TEST(HttpResponseTest, HeaderLookupIgnoresCase) {
  HttpResponse response;
  response.headers = {{"etag", "\"abc\""}, {"content-length", "12"}};
  EXPECT_EQ(response.Header("ETag"), "\"abc\"");
  EXPECT_EQ(response.Header("Content-Length"), "12");
  EXPECT_EQ(response.Header("x-missing"), "");
}

// A TCP socket on 127.0.0.1:0 that accepts connections (the kernel's backlog does) and never
// answers: a peer that went silent.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 4), 0);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(PerformTest, RefusedConnectionIsUnavailable) {
  int port = 0;
  {
    SilentListener closed;  // bound then closed: nobody listens there any more
    port = closed.port();
  }
  HttpRequest request;
  request.url = absl::StrCat("http://127.0.0.1:", port, "/k?token=secret");
  absl::StatusOr<HttpResponse> response = Perform(request);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(response.status()), "HTTP_TRANSPORT_FAILED");
  EXPECT_THAT(response.status().message(), Not(HasSubstr("secret")));
}

TEST(PerformTest, StalledPeerFailsUnavailableAfterTheLowSpeedTime) {
  SilentListener silent;
  HttpRequest request;
  request.url = absl::StrCat("http://127.0.0.1:", silent.port(), "/k");
  request.low_speed_time = absl::Seconds(1);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<HttpResponse> response = Perform(request);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(response.status()), "HTTP_TIMEOUT");
  EXPECT_LT(took, std::chrono::seconds(10));
}

TEST(PerformTest, CancelStopsATransferInProgress) {
  SilentListener silent;
  std::atomic<bool> cancel{false};
  HttpRequest request;
  request.method = "PUT";
  request.body = "payload";
  request.url = absl::StrCat("http://127.0.0.1:", silent.port(), "/k");
  request.low_speed_bytes_per_second = 0;  // only the cancel can end it
  request.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel.store(true);
  });
  absl::StatusOr<HttpResponse> response = Perform(request);
  canceller.join();
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(ErrorReason(response.status()), "HTTP_CANCELLED");
}

TEST(PerformTest, MalformedUrlIsInvalidArgument) {
  HttpRequest request;
  request.url = "ftp://127.0.0.1/k";  // only http and https are allowed
  absl::StatusOr<HttpResponse> response = Perform(request);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace modeldist::http
