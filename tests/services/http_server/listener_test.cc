// The HTTP listener with the curl program as its client: requests reach the handler whole,
// bodies are bounded (413 before the body is read), a body reader's error cuts the connection
// so the client never sees a complete body, HEAD gets Content-Length without a body, idle
// connections are dropped while others are served (slowloris), bad addresses are refused, and
// TLS works with a PEM certificate.
#include "services/http_server/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/http_server/http_error.h"
#include "tests/testing/curl_client.h"
#include "tests/testing/test_util.h"

namespace modeldist::http_server {
namespace {

using ::modeldist::testing::Curl;
using ::modeldist::testing::CurlResult;
using ::testing::HasSubstr;

// Answers every request with what it saw; /cut sends 1000 of a promised 5000 bytes; /count
// promises 5000 bytes and counts reader calls.
class ListenerTest : public ::testing::Test {
 protected:
  void Start(ListenerOptions options = {}) {
    if (options.listen.empty()) options.listen = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<Listener>> started =
        Listener::Start(options, [this](const Request& request) { return Answer(request); });
    ASSERT_TRUE(started.ok()) << started.status();
    listener_ = *std::move(started);
    ASSERT_GT(listener_->port(), 0);
  }

  std::string Url(const std::string& path, const std::string& scheme = "http") const {
    return absl::StrCat(scheme, "://127.0.0.1:", listener_->port(), path);
  }

  Response Answer(const Request& request) {
    Response response;
    if (request.path == "/cut" || request.path == "/count") {
      response.body_size = 5000;
      const bool cut = request.path == "/cut";
      response.reader = [this, cut](int64_t pos, char* buf, size_t max) -> absl::StatusOr<size_t> {
        ++reader_calls_;
        if (cut && pos >= 1000) return absl::DataLossError("damaged");
        const size_t n = std::min<size_t>(max, static_cast<size_t>((cut ? 1000 : 5000) - pos));
        std::memset(buf, 'x', n);
        return n;
      };
      return response;
    }
    response.body = absl::StrCat(request.method, " ", request.path, " body=", request.body.size(),
                                 " x-test=", request.Header("x-test"),
                                 " peer=", request.peer.empty() ? "none" : "set");
    return response;
  }

  std::atomic<int> reader_calls_{0};
  std::unique_ptr<Listener> listener_;
};

TEST_F(ListenerTest, RequestsReachTheHandlerWhole) {
  Start();
  const std::string body(5000, 'b');
  CurlResult got = Curl(Url("/any/path"), {"-X", "POST", "--data-binary", body, "-H", "X-Test: one",
                                           "-H", "X-Test: two"});
  EXPECT_EQ(got.status, 200) << got.stderr_text;
  EXPECT_EQ(got.body, "POST /any/path body=5000 x-test=one, two peer=set");
}

TEST_F(ListenerTest, BodiesOverTheLimitAre413BeforeTheyAreRead) {
  ListenerOptions options;
  options.max_body_bytes = 1000;
  Start(options);
  CurlResult declared = Curl(Url("/x"), {"-X", "POST", "--data-binary", std::string(1001, 'b')});
  EXPECT_EQ(declared.status, 413);
  EXPECT_THAT(declared.body, HasSubstr("\"reason\":\"BODY_TOO_LARGE\""));
  EXPECT_EQ(declared.Header("content-type"), "application/json");
  // Chunked: no Content-Length to refuse early; the body is dropped as it passes the limit.
  CurlResult chunked = Curl(Url("/x"), {"-X", "POST", "-H", "Transfer-Encoding: chunked",
                                        "--data-binary", std::string(3000, 'b')});
  EXPECT_EQ(chunked.status, 413);
  CurlResult fits = Curl(Url("/x"), {"-X", "POST", "--data-binary", std::string(1000, 'b')});
  EXPECT_EQ(fits.status, 200);
  EXPECT_EQ(fits.body, "POST /x body=1000 x-test= peer=set");
}

TEST_F(ListenerTest, AReaderErrorCutsTheBodyShort) {
  Start();
  CurlResult got = Curl(Url("/cut"));
  EXPECT_EQ(got.exit_code, 18) << got.stderr_text;  // CURLE_PARTIAL_FILE
  EXPECT_EQ(got.Header("content-length"), "5000");
  EXPECT_LT(got.body.size(), 5000u);
  // The listener still serves.
  EXPECT_EQ(Curl(Url("/count")).body, std::string(5000, 'x'));
}

TEST_F(ListenerTest, HeadGetsContentLengthWithoutCallingTheReader) {
  Start();
  CurlResult got = Curl(Url("/count"), {"-I"});
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.Header("content-length"), "5000");
  EXPECT_EQ(got.body, got.headers);  // with -I curl writes the headers as its output, only them
  EXPECT_EQ(reader_calls_.load(), 0);
}

TEST_F(ListenerTest, IdleConnectionsAreDroppedWhileOthersAreServed) {
  ListenerOptions options;
  options.idle_timeout = absl::Seconds(1);
  Start(options);
  // A slowloris client: half a request, then nothing.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(listener_->port()));
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string partial = "GET /slow HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(::send(fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
  EXPECT_EQ(Curl(Url("/other")).status, 200);  // served meanwhile
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1) << "the idle connection was not closed within 10 s";
  char byte;
  EXPECT_LE(::recv(fd, &byte, 1, 0), 0);  // closed (0) or reset (-1), no answer
  ::close(fd);
}

TEST_F(ListenerTest, BadAddressesAreRefusedNamingTheFlag) {
  for (const char* listen : {"nonsense", "127.0.0.1:99999", ":80", "no.such.host.invalid:0"}) {
    ListenerOptions options;
    options.listen = listen;
    absl::StatusOr<std::unique_ptr<Listener>> started =
        Listener::Start(options, [](const Request&) { return Response(); });
    ASSERT_FALSE(started.ok()) << listen;
    EXPECT_THAT(std::string(started.status().message()), HasSubstr("--http-listen")) << listen;
  }
  // A port in use.
  Start();
  ListenerOptions taken;
  taken.listen = absl::StrCat("127.0.0.1:", listener_->port());
  absl::StatusOr<std::unique_ptr<Listener>> second =
      Listener::Start(taken, [](const Request&) { return Response(); });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(ErrorReason(second.status()), "LISTEN_FAILED");
}

TEST_F(ListenerTest, ServesHttpsWithAPemCertificate) {
  testing::ScratchDir dir;
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout ",
      dir.Join("key.pem"), " -out ", dir.Join("cert.pem"), " 2>/dev/null");
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  ListenerOptions options;
  options.tls_cert_file = dir.Join("cert.pem");
  options.tls_key_file = dir.Join("key.pem");
  Start(options);
  CurlResult got = Curl(Url("/tls", "https"), {"--cacert", dir.Join("cert.pem")});
  EXPECT_EQ(got.status, 200) << got.stderr_text;
  EXPECT_EQ(got.body, "GET /tls body=0 x-test= peer=set");
  EXPECT_NE(Curl(Url("/plain")).status, 200);  // plain HTTP to an HTTPS port
}

TEST(HttpErrorTest, ErrorsAreJsonWithCodeReasonAndRetryAfter) {
  const Response response = ErrorResponse(WithRetryDelay(
      MakeError(absl::StatusCode::kUnavailable, "ORIGINS_UNAVAILABLE", "say \"why\"\n"),
      absl::Milliseconds(1500)));
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.body,
            "{\"error\":{\"code\":\"UNAVAILABLE\",\"reason\":\"ORIGINS_UNAVAILABLE\","
            "\"message\":\"say \\\"why\\\"\\u000a\"}}\n");
  bool retry_after = false;
  for (const auto& [name, value] : response.headers) {
    if (name == "Retry-After") retry_after = value == "2";
  }
  EXPECT_TRUE(retry_after);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kDataLoss), 500);
}

}  // namespace
}  // namespace modeldist::http_server
