// End-to-end test of a site cache with the real binaries: the fixture's modeldist-server is the
// upstream ("hq"), a second modeldist-server runs with an origins file naming it as a
// `modeldist` origin that forwards manifests (docs/origins.md, "pull-through cache"), and
// modeldistctl and a device talk only to the cache.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/artifact.grpc.pb.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "tests/client/modeldistctl/ctl_e2e_fixture.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;

class CtlE2eCacheTest : public CtlE2eTest {
 protected:
  void TearDown() override {
    if (upstream_ && HasFailure()) std::cerr << "upstream log:\n" << upstream_->LogTail();
    upstream_.reset();
    CtlE2eTest::TearDown();
  }

  // Starts the cache in front of the fixture's server, which becomes upstream_; server_ (which
  // Ctl and ExpectDeviceGets talk to) is then the cache.
  void StartCache() {
    CtlRun root = Ctl({"keys", "root", "--out", root_file_});
    ASSERT_EQ(root.code, 0) << root.err;
    const std::string origins = dir_.Join("cache-origins.textproto");
    WriteFile(origins, absl::StrCat("origins { name: \"hq\" modeldist { target: \"",
                                    server_->address(), "\" forward_manifests: true ",
                                    "trust_root_file: \"", root_file_, "\" } }\n"));
    auto cache = std::make_unique<modeldist::testing::ServerProcess>(
        ServerBinary(), dir_.Join("cache-data"), dir_.Join("token"), dir_.path(),
        std::vector<std::string>{"--origins", origins});
    ASSERT_TRUE(cache->Start());
    upstream_ = std::exchange(server_, std::move(cache));
  }

  std::unique_ptr<modeldist::testing::ServerProcess> upstream_;
  const std::string root_file_ = dir_.Join("hq-root.bin");
};

TEST_F(CtlE2eCacheTest, DevicesGetTheUpstreamsModelThroughTheCacheAlsoWhenTheUplinkDrops) {
  CtlRun publish = Ctl(PublishArgs("1"));
  ASSERT_EQ(publish.code, 0) << publish.err;
  ASSERT_NO_FATAL_FAILURE(StartCache());

  CtlRun list = Ctl({"origins", "list"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("hq"));
  EXPECT_THAT(list.out, HasSubstr("modeldist"));
  EXPECT_THAT(list.out, HasSubstr(upstream_->address()));
  CtlRun check = Ctl({"origins", "check", "hq"});
  EXPECT_EQ(check.code, 0) << check.out << check.err;

  // The cache hands out the upstream's root (it signs nothing of its own).
  CtlRun root = Ctl({"keys", "root", "--out", dir_.Join("via-cache.bin")});
  ASSERT_EQ(root.code, 0) << root.err;
  absl::StatusOr<std::string> direct = ReadFileToString(root_file_);
  absl::StatusOr<std::string> via_cache = ReadFileToString(dir_.Join("via-cache.bin"));
  ASSERT_TRUE(direct.ok() && via_cache.ok());
  EXPECT_TRUE(*direct == *via_cache);

  ExpectDeviceGets("llama8b", v1::PLATFORM_MACOS, v1::ARCH_ARM64, digest_, contents_);
  EXPECT_THAT(server_->LogTail(), HasSubstr("from origin hq"));

  // The uplink drops: what the cache holds is still served; a manifest is UNAVAILABLE.
  upstream_->Kill();
  auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
  v1::ReadRequest read;
  read.set_digest(digest_);
  grpc::ClientContext read_context;
  auto reader = v1::ArtifactService::NewStub(channel)->Read(&read_context, read);
  std::string got;
  v1::ReadResponse chunk;
  while (reader->Read(&chunk)) got += chunk.data();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(got == contents_);
  v1::GetManifestRequest request;
  request.set_tier("llama8b");
  request.set_platform(v1::PLATFORM_MACOS);
  request.set_arch(v1::ARCH_ARM64);
  grpc::ClientContext context;
  v1::SignedManifest manifest;
  const grpc::Status down =
      v1::ManifestService::NewStub(channel)->GetManifest(&context, request, &manifest);
  EXPECT_EQ(down.error_code(), grpc::StatusCode::UNAVAILABLE) << down.error_message();
  EXPECT_THAT(down.error_message(), HasSubstr("upstream"));
}

}  // namespace
}  // namespace modeldist::ctl
