// `modeldistctl bundle export` in-process against a real in-process server: the archive holds
// INDEX, the verified root chain, the manifest as the server signed it and the model's bytes,
// in that order; --no-blobs leaves the model out; a failed export leaves no file.
#include <arpa/inet.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bundle_format.h"
#include "common/file_util.h"
#include "common/trust.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/tar_entries.h"
#include "tests/testing/test_server.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;
using Entries = modeldist::testing::TarEntries;
using modeldist::testing::ReadTarEntries;

// A TCP forwarder on 127.0.0.1 to the server that closes each connection once `cut` bytes went
// towards the client: every Read stream breaks after some progress, as over a flaky link, and
// the client reconnects for the next attempt.
class CuttingProxy {
 public:
  CuttingProxy(int upstream_port, int64_t cut) : upstream_port_(upstream_port), cut_(cut) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return;  // port() stays 0
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~CuttingProxy() {
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& t : pumps_) t.join();
    for (int fd : fds_) ::close(fd);
    ::close(listen_fd_);
  }

  int port() const { return port_; }
  int connections() const { return connections_.load(); }

 private:
  void AcceptLoop() {
    for (;;) {
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      const int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr = {};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(upstream_port_));
      std::lock_guard<std::mutex> lock(mu_);
      fds_.push_back(client);
      fds_.push_back(upstream);
      if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::shutdown(client, SHUT_RDWR);
        continue;
      }
      ++connections_;
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream, -1); });
      pumps_.emplace_back([this, client, upstream] { Pump(upstream, client, cut_); });
    }
  }
  // Copies `from` to `to` until either closes or `limit` bytes passed (-1: no limit), then
  // shuts both down, which ends the other direction's pump too.
  void Pump(int from, int to, int64_t limit) {
    char buffer[16384];
    int64_t passed = 0;
    for (;;) {
      size_t want = sizeof(buffer);
      if (limit >= 0) want = static_cast<size_t>(std::min<int64_t>(want, limit - passed));
      if (want == 0) break;
      const ssize_t got = ::read(from, buffer, want);
      if (got <= 0 || !SendAll(to, buffer, static_cast<size_t>(got))) break;
      passed += got;
    }
    ::shutdown(from, SHUT_RDWR);
    ::shutdown(to, SHUT_RDWR);
  }

  // send() with MSG_NOSIGNAL: the other side may have closed already, which must end the pump,
  // not the test process (SIGPIPE).
  static bool SendAll(int fd, const char* data, size_t size) {
    while (size > 0) {
      const ssize_t sent = ::send(fd, data, size, MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
      if (sent <= 0) return false;
      data += sent;
      size -= static_cast<size_t>(sent);
    }
    return true;
  }

  const int upstream_port_;
  const int64_t cut_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> pumps_;
};

class BundleExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    digest_ = server_.PublishBlob("llama", "1", v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_GGUF,
                                  model_);
    server_.SetTier("llama8b", "", "models/llama/versions/1");
  }

  CtlRun Export(std::vector<std::string> extra) {
    std::vector<std::string> args = {
        "--server",   absl::StrCat("127.0.0.1:", server_.server().port()),
        "bundle",     "export",
        "--tier",     "llama8b",
        "--platform", "macos",
        "--arch",     "arm64"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunInProcess(args);
  }

  modeldist::testing::TestServer server_;
  modeldist::testing::ScratchDir dir_;
  const std::string model_ = modeldist::testing::RandomBytes((5 << 20) + 11, 3);
  std::string digest_;
  const std::string out_ = dir_.Join("out.bundle");
};

TEST_F(BundleExportTest, WritesRootsSignedManifestAndBlobInOrder) {
  v1::RotateSigningKeysRequest rotate;
  rotate.set_count(1);
  v1::SignedTrustRoot rotated;
  ASSERT_TRUE(server_.registry().RotateSigningKeys(server_.Admin().get(), rotate, &rotated).ok());

  CtlRun run = Export({"--output", out_});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("models/llama/versions/1"));
  EXPECT_THAT(run.out, HasSubstr("trust roots 1..2"));
  const Entries entries = ReadTarEntries(out_);
  ASSERT_EQ(entries.size(), 5u);
  auto index = ParseBundleIndex(entries[0].second);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(entries[0].first, "INDEX");
  EXPECT_EQ(index->root_count, 2);
  ASSERT_TRUE(index->blob.has_value());
  EXPECT_EQ(index->blob->digest, digest_);
  EXPECT_EQ(entries[1].first, "roots/1.pb");
  EXPECT_EQ(entries[2].first, "roots/2.pb");
  EXPECT_EQ(entries[2].second, rotated.SerializeAsString());  // as the server signed it
  EXPECT_EQ(entries[3].first, "manifest.pb");
  EXPECT_EQ(entries[4].first, BundleBlobEntry(digest_));
  EXPECT_EQ(entries[4].second, model_);

  // The manifest verifies under the newest root and names the blob.
  v1::SignedTrustRoot signed_root;
  ASSERT_TRUE(signed_root.ParseFromString(entries[1].second));
  auto root = VerifyFirstRoot(signed_root);
  ASSERT_TRUE(root.ok());
  ASSERT_TRUE(signed_root.ParseFromString(entries[2].second));
  root = VerifyNextRoot(*root, signed_root);
  ASSERT_TRUE(root.ok()) << root.status();
  v1::SignedManifest signed_manifest;
  ASSERT_TRUE(signed_manifest.ParseFromString(entries[3].second));
  auto manifest = VerifyManifest(*root, signed_manifest);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->artifact().digest(), digest_);
  EXPECT_EQ(manifest->tier(), "llama8b");
}

TEST_F(BundleExportTest, NoBlobsWritesAManifestOnlyBundle) {
  CtlRun run = Export({"--output", out_, "--no-blobs", "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("\"blobs\":0"));
  const Entries entries = ReadTarEntries(out_);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[2].first, "manifest.pb");
  auto index = ParseBundleIndex(entries[0].second);
  ASSERT_TRUE(index.ok());
  EXPECT_FALSE(index->blob.has_value());
}

// The retry policy counts failures in a row: a stream that breaks after moving forward starts
// the count again, so an export whose connection breaks far more often than max_attempts (5),
// each time after progress, still completes. The server sends 64 KiB messages and each
// connection is cut after 512 KiB, so the 5 MiB model takes a dozen connections.
TEST_F(BundleExportTest, ResumesAcrossMoreBreaksThanMaxAttemptsWhileProgressing) {
  services::ServerConfig config;
  config.read_message_bytes = 64 << 10;
  modeldist::testing::TestServer server(config);
  server.PublishBlob("llama", "1", v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_GGUF, model_);
  server.SetTier("llama8b", "", "models/llama/versions/1");
  CuttingProxy proxy(server.server().port(), 512 << 10);
  ASSERT_NE(proxy.port(), 0);
  CtlRun run = RunInProcess({"--server", absl::StrCat("127.0.0.1:", proxy.port()), "bundle",
                             "export", "--tier", "llama8b", "--platform", "macos", "--arch",
                             "arm64", "--output", out_});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_GE(proxy.connections(), 8);
  const Entries entries = ReadTarEntries(out_);
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[3].second, model_);
}

// --json is JSON whatever the path holds.
TEST_F(BundleExportTest, JsonQuotesThePath) {
  const std::string out = dir_.Join("a \"quoted\" \\ name.bundle");
  CtlRun run = Export({"--output", out, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(run.out, &parsed).ok()) << run.out;
  EXPECT_EQ(parsed.fields().at("output").string_value(), out);
  EXPECT_EQ(parsed.fields().at("version").string_value(), "models/llama/versions/1");
  EXPECT_EQ(parsed.fields().at("digest").string_value(), digest_);
}

TEST_F(BundleExportTest, FailedExportLeavesNoFile) {
  ASSERT_TRUE(WriteFileAtomically(out_, "an older bundle", 0644).ok());
  // No artifact for linux: the server says NOT_FOUND (exit 2).
  CtlRun run = RunInProcess({"--server", absl::StrCat("127.0.0.1:", server_.server().port()),
                             "bundle", "export", "--tier", "llama8b", "--platform", "linux",
                             "--arch", "x86_64", "--output", out_});
  EXPECT_EQ(run.code, 2) << run.err;
  EXPECT_EQ(*ReadFileToString(out_), "an older bundle");  // untouched
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
    names.push_back(e.path().filename());
  }
  EXPECT_EQ(names, std::vector<std::string>{"out.bundle"});  // no temporary left

  // Usage errors (exit 1) before anything is asked.
  EXPECT_EQ(Export({}).code, 1);
  EXPECT_EQ(RunInProcess({"bundle", "export", "--tier", "llama8b", "--platform", "beos", "--arch",
                          "arm64", "--output", out_})
                .code,
            1);
  EXPECT_EQ(RunInProcess({"bundle", "import"}).code, 1);
}

}  // namespace
}  // namespace modeldist::ctl
