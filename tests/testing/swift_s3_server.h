// File: swift_s3_server.h
//
// OpenStack Swift with its s3api middleware, on loopback, for tests of the S3 origin: a real
// server that checks SigV4 signatures (a broken signer fails), serves ranges, multipart
// uploads and presigned URLs. memcached, the account, container and object servers and the
// proxy run as child processes on free 127.0.0.1 ports, with their data in a scratch
// directory; the destructor stops them by PID
// (Swift 2.30 from Debian, installed by tools/install-deps.sh).
#ifndef MODELDIST_TESTS_TESTING_SWIFT_S3_SERVER_H_
#define MODELDIST_TESTS_TESTING_SWIFT_S3_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {

class SwiftS3Server {
 public:
  // The tempauth user the proxy is configured with: S3 access key and secret.
  static constexpr const char* kAccessKey = "test:tester";
  static constexpr const char* kSecret = "testing";
  // s3api's `location`: the only region its SigV4 check accepts in a signature's scope (any
  // other is 400 AuthorizationHeaderMalformed). "auto", as Cloudflare R2 signs.
  static constexpr const char* kRegion = "auto";

  SwiftS3Server() = default;
  ~SwiftS3Server();
  SwiftS3Server(const SwiftS3Server&) = delete;
  SwiftS3Server& operator=(const SwiftS3Server&) = delete;

  // True when the Swift programs are installed (tests skip otherwise).
  static bool Installed();

  // Starts everything and waits for /healthcheck; then creates `bucket` over S3.
  ::testing::AssertionResult Start(const std::string& bucket);

  // Stops the proxy (the S3 endpoint refuses connections: an outage of the store), and starts
  // it again on the same port with the same data.
  void StopProxy();
  ::testing::AssertionResult StartProxy();

  // The bytes of object `key` of `bucket` (read over S3), or the error as text.
  std::string GetObject(const std::string& bucket, const std::string& key) const;

  // http://127.0.0.1:<proxy port>
  std::string endpoint() const;
  int port() const { return proxy_port_; }
  // The servers' logs, for failure messages.
  std::string Logs() const;

 private:
  ::testing::AssertionResult TryStart();
  // Spawns the proxy (the last child) and waits until it answers /healthcheck.
  ::testing::AssertionResult SpawnProxy();
  ::testing::AssertionResult Spawn(const std::string& log, const std::vector<std::string>& args);
  // Waits up to 60 s until `url` answers HTTP (with 200 when `need_200`); fails at once when a
  // child exits.
  ::testing::AssertionResult WaitUntilAnswering(const std::string& url, bool need_200);

  ScratchDir dir_;
  // The Swift servers' ports, held while they run (see ReservedPort: eventlet binds with
  // SO_REUSEPORT, so two Swifts of parallel tests could otherwise share a port).
  std::vector<ReservedPort> ports_;
  // Declared last: stopped (destroyed) first, proxy before the servers it talks to.
  std::vector<std::unique_ptr<ChildProcess>> children_;
  int proxy_port_ = 0;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_SWIFT_S3_SERVER_H_
