// File: origin_bench_util.h
//
// What the benches of origins share (origins_bench, read_through_bench): OpenStack Swift's S3
// API on loopback as a bench child (stopped also on SIGINT/SIGTERM), curl signing requests to
// it, modeldist-server started with an origins file, and waiting for a replica to be
// CONFIRMED.
#ifndef MODELDIST_BENCH_ORIGIN_BENCH_UTIL_H_
#define MODELDIST_BENCH_ORIGIN_BENCH_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "tests/testing/swift_s3_server.h"

namespace modeldist::bench {

// The bucket Swift is started with.
inline constexpr char kSwiftBucket[] = "models";

// Started before any other child, so that the children present right after its start are
// exactly Swift's (memcached, the account, container and object servers, the proxy).
class Swift {
 public:
  absl::Status Start(const std::string& scratch_parent);
  ~Swift();

  // Puts nginx in front of Swift as a TLS terminator (a fresh self-signed certificate for
  // 127.0.0.1, request bodies streamed through unbuffered), so that both sides are measured
  // over HTTPS, as S3 and R2 are reached. From then on endpoint() is https:// and curl and the
  // origins file trust ca_file().
  absl::Status StartTlsFront(const std::string& prefix);

  std::string endpoint() const;
  // The CA of the TLS front; empty without one.
  const std::string& ca_file() const { return ca_file_; }
  // CPU seconds used so far by all of Swift's processes.
  double CpuSeconds() const;

  // Writes the credentials curl signs with to `netrc` (0600). They go there rather than in
  // `--user test:tester:testing`: curl splits --user at the first colon, which would make the
  // access key "test" (Swift answers SignatureDoesNotMatch), and a netrc login may hold one.
  absl::Status WriteNetrc(const std::string& netrc);

  // `curl --aws-sigv4 aws:amz:auto:s3` with those credentials, `args`, and the URL of object
  // `key` of the bucket.
  std::string Curl(const std::string& args, const std::string& key) const;

 private:
  std::unique_ptr<testing::SwiftS3Server> server_;
  std::vector<pid_t> pids_;
  std::string netrc_;
  // The TLS front, when started.
  pid_t tls_front_ = -1;
  int tls_port_ = 0;
  std::string ca_file_;
};

// Runs `swift.Curl(args, key)` with the response body in `body`, timed; an error with the body
// (Swift's XML error) when curl fails.
absl::StatusOr<double> S3Request(const Swift& swift, const std::string& args,
                                 const std::string& key, const std::string& body);

// `curl -I` of `key`: the object must be there with `size` bytes.
absl::Status CheckObject(const Swift& swift, const std::string& key, int64_t size,
                         const std::string& scratch);

// Starts `server_bin` on 127.0.0.1:0 with the origins file `origins` and waits for its port
// file.
absl::StatusOr<ServerProcess> StartServerWithOrigins(const std::string& server_bin,
                                                     const std::string& data_dir,
                                                     const std::string& token_file,
                                                     const std::string& origins,
                                                     const std::string& log);

// Writes the Swift credentials to `dir` (files only the owner can read, as the server wants)
// and returns one origins-file entry `name` for the bucket on Swift with `replicate: true`,
// `key_prefix`, `part_size` (0: the server's default) and `extra` fields inside it.
absl::StatusOr<std::string> SwiftOriginEntry(const std::string& name, const std::string& dir,
                                             const Swift& swift, const std::string& key_prefix,
                                             int64_t part_size, const std::string& extra);

grpc::Status GetVersion(v1::RegistryService::Stub& registry, const std::string& token,
                        const std::string& name, v1::Version* version);

// Polls GetVersion every 20 ms until the artifact's replica on `origin` is CONFIRMED (up to
// `timeout`). A FAILING replica is an error: the next attempt would only start after 5 s.
absl::Status WaitConfirmed(v1::RegistryService::Stub& registry, const std::string& token,
                           const std::string& version_name, const std::string& origin,
                           absl::Duration timeout);

}  // namespace modeldist::bench

#endif  // MODELDIST_BENCH_ORIGIN_BENCH_UTIL_H_
