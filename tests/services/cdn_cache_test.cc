// The CDN origin behind real shared caches on loopback: Varnish, and nginx's proxy_cache both
// whole and in 1 MiB slices. The second download of a blob, whole and ranged, comes from the
// cache: the cache says so (X-Cache, its counters or access log) and the origin's own count of
// blob requests (/metrics) does not move, and the bytes match the digest. modeldist-agent then
// syncs through Varnish, which the server names as the first mirror (--http-public-url).
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/agent/agent.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/blob_record.h"
#include "tests/testing/curl_client.h"
#include "tests/testing/nginx_cache.h"
#include "tests/testing/test_server.h"
#include "tests/testing/varnish_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMiB = 1024 * 1024;

services::ServerConfig WithHttp(int port, const std::string& public_url = "") {
  services::ServerConfig config;
  config.http_listen = absl::StrCat("127.0.0.1:", port);
  config.http_public_url = public_url;
  return config;
}

// The sum of a counter's samples whose labels contain every one of `labels`, as /metrics
// renders them (e.g. {"route=\"blob\""}).
int64_t MetricSum(const std::string& text, const std::string& name,
                  const std::vector<std::string>& labels) {
  int64_t sum = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, absl::StrCat(name, "{"))) continue;
    bool all = true;
    for (const std::string& label : labels) all = all && absl::StrContains(line, label);
    int64_t value = 0;
    if (all && absl::SimpleAtoi(line.substr(line.rfind(' ') + 1), &value)) sum += value;
  }
  return sum;
}

// MetricSum of `server`'s own /metrics.
int64_t ServerMetric(TestServer& server, const std::string& name,
                     const std::vector<std::string>& labels) {
  CurlResult metrics = Curl(server.HttpUrl("/metrics"));
  EXPECT_EQ(metrics.status, 200);
  return MetricSum(metrics.body, name, labels);
}

class CdnCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(server_.server().http_port(), 0);
    digest_ = server_.PublishBlob("llama", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64,
                                  v1::FORMAT_GGUF, bytes_);
    server_.SetTier("llama8b", "stable", "models/llama/versions/1");
  }

  std::string Path() const { return absl::StrCat("/v1/blobs/", digest_); }

  // Blob requests the origin answered (any status), from its own /metrics.
  int64_t OriginBlobRequests() {
    return ServerMetric(server_, "modeldist_http_requests_total", {"route=\"blob\""});
  }

  // GETs `url` and checks the bytes: all of them, or [first, last] with `range`.
  CurlResult Fetch(const std::string& url, const std::string& range = "", int64_t first = 0,
                   int64_t last = 0) {
    CurlResult got = range.empty() ? Curl(url) : Curl(url, {"-H", absl::StrCat("Range: ", range)});
    if (range.empty()) {
      EXPECT_EQ(got.status, 200) << url;
      EXPECT_EQ(Sha256::HexOf(got.body), digest_.substr(kSha256Prefix.size())) << url;
    } else {
      EXPECT_EQ(got.status, 206) << url << " " << range;
      EXPECT_TRUE(got.body == bytes_.substr(first, last - first + 1)) << url << " " << range;
    }
    return got;
  }

  ScratchDir dir_;
  TestServer server_{WithHttp(0)};
  const std::string bytes_ = RandomBytes(static_cast<size_t>(10 * kMiB + 123), 21);
  std::string digest_;
};

TEST_F(CdnCacheTest, VarnishServesTheSecondDownloadWholeAndRangedFromItsCache) {
  VarnishServer varnish(dir_.Join("varnish"), server_.server().http_port());
  ASSERT_GT(varnish.port(), 0) << varnish.Log();
  const std::string url = varnish.Url(Path());
  EXPECT_EQ(Fetch(url).Header("x-cache"), "MISS");
  EXPECT_EQ(OriginBlobRequests(), 1);
  EXPECT_EQ(Fetch(url).Header("x-cache"), "HIT");
  const int64_t size = static_cast<int64_t>(bytes_.size());
  EXPECT_EQ(Fetch(url, "bytes=5000000-5000099", 5000000, 5000099).Header("x-cache"), "HIT");
  EXPECT_EQ(Fetch(url, "bytes=-100", size - 100, size - 1).Header("x-cache"), "HIT");
  CurlResult head = Curl(url, {"-I"});
  EXPECT_EQ(head.Header("content-length"), absl::StrCat(size));
  EXPECT_EQ(head.Header("etag"), absl::StrCat("\"", digest_, "\""));
  // The origin was asked once; Varnish counts the hits (its counters may lag a moment).
  EXPECT_EQ(OriginBlobRequests(), 1);
  int64_t hits = 0;
  for (int i = 0; i < 50 && (hits = varnish.Counter("MAIN.cache_hit")) < 4; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_GE(hits, 4) << varnish.Log();
  EXPECT_EQ(varnish.Counter("MAIN.backend_req"), 1);
}

TEST_F(CdnCacheTest, NginxProxyCacheServesTheSecondDownloadWholeAndRanged) {
  NginxCache nginx(dir_.Join("nginx"), server_.server().http_port(), /*slice=*/false);
  ASSERT_GT(nginx.port(), 0) << nginx.ErrorLog();
  const std::string url = nginx.Url(Path());
  EXPECT_EQ(Fetch(url).Header("x-cache"), "MISS");
  EXPECT_EQ(Fetch(url).Header("x-cache"), "HIT");
  EXPECT_EQ(Fetch(url, "bytes=4194300-4194399", 4194300, 4194399).Header("x-cache"), "HIT");
  EXPECT_EQ(OriginBlobRequests(), 1);
  EXPECT_THAT(nginx.AccessLog(), HasSubstr("cache=HIT"));
}

TEST_F(CdnCacheTest, NginxSliceCachesRangesSliceBySlice) {
  NginxCache nginx(dir_.Join("nginx"), server_.server().http_port(), /*slice=*/true);
  ASSERT_GT(nginx.port(), 0) << nginx.ErrorLog();
  const std::string url = nginx.Url(Path());
  // A range inside slice 4 fetches that slice only, as a ranged request to the origin (206).
  Fetch(url, "bytes=5000000-5000099", 5000000, 5000099);
  EXPECT_EQ(OriginBlobRequests(), 1);
  EXPECT_EQ(
      ServerMetric(server_, "modeldist_http_requests_total", {"route=\"blob\"", "code=\"206\""}),
      1);
  EXPECT_EQ(Fetch(url, "bytes=5000000-5000099", 5000000, 5000099).Header("x-cache"), "HIT");
  EXPECT_EQ(OriginBlobRequests(), 1);
  // The whole blob: the other ten slices once, then nothing more from the origin.
  Fetch(url);
  EXPECT_EQ(OriginBlobRequests(), 11);
  Fetch(url);
  EXPECT_EQ(OriginBlobRequests(), 11) << nginx.AccessLog();
}

// Varnish must know the origin's port before the server starts, and the server Varnish's URL:
// members start in this order.
class AgentThroughCdnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(varnish_.port(), 0) << varnish_.Log();
    ASSERT_EQ(server_.server().http_port(), origin_port_);
    digest_ = server_.PublishBlob("llama", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64,
                                  v1::FORMAT_GGUF, bytes_);
    server_.SetTier("llama8b", "stable", "models/llama/versions/1");
    v1::GetTrustRootRequest request;
    request.set_version(1);
    v1::SignedTrustRoot root;
    grpc::ClientContext context;
    ASSERT_TRUE(server_.manifests().GetTrustRoot(&context, request, &root).ok());
    MD_ASSERT_OK(WriteFileAtomically(dir_.Join("root.bin"), root.SerializeAsString(), 0600));
  }

  agent::SyncOptions Device(const std::string& name) {
    agent::SyncOptions options;
    options.server = absl::StrCat("127.0.0.1:", server_.server().port());
    options.tier = "llama8b";
    options.dir = dir_.Join(name);
    options.trust_root_file = dir_.Join("root.bin");
    options.platform = v1::PLATFORM_LINUX;
    options.arch = v1::ARCH_X86_64;
    return options;
  }

  ScratchDir dir_;
  const int origin_port_ = FreePort();
  VarnishServer varnish_{dir_.Join("varnish"), origin_port_};
  TestServer server_{WithHttp(origin_port_, varnish_.Url(""))};
  const std::string bytes_ = RandomBytes(static_cast<size_t>(10 * kMiB + 123), 22);
  std::string digest_;
};

TEST_F(AgentThroughCdnTest, TheAgentSyncsThroughTheCdnTheManifestNamesFirst) {
  v1::SignedManifest signed_manifest;
  ASSERT_TRUE(
      server_.GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64, &signed_manifest).ok());
  ASSERT_GE(signed_manifest.mirrors_size(), 1);
  EXPECT_EQ(signed_manifest.mirrors(0).http_url(),
            varnish_.Url(absl::StrCat("/v1/blobs/", digest_)));

  for (const char* device : {"mac-1", "mac-2"}) {
    absl::StatusOr<agent::SyncResult> synced = agent::Sync(Device(device));
    ASSERT_TRUE(synced.ok()) << device << ": " << synced.status();
    EXPECT_EQ(synced->action, agent::SyncResult::Action::kActivated) << device;
    EXPECT_EQ(synced->download.bytes_received, static_cast<int64_t>(bytes_.size())) << device;
  }
  // Both devices' bytes came through Varnish, which asked the origin once; none over gRPC.
  EXPECT_EQ(ServerMetric(server_, "modeldist_http_requests_total", {"route=\"blob\""}), 1)
      << varnish_.Log();
  EXPECT_EQ(ServerMetric(server_, "modeldist_grpc_requests_total",
                         {"method=\"/modeldist.v1.ArtifactService/Read\""}),
            0);
  EXPECT_GT(varnish_.Counter("MAIN.cache_hit"), 0);
}

}  // namespace
}  // namespace modeldist::testing
