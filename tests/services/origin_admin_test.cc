// RegistryService.ListOrigins and CheckOrigin on a real in-process server started with an
// origins file, its origins built by a factory of in-memory origins (MemoryOrigin, with fault
// seams); and a server refusing to start on a bad origins file without touching its data
// directory. The check against a real store is in ctl_e2e_origins_test (Swift's S3 API).
#include <sys/stat.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "services/server.h"
#include "tests/storage/origin/memory_origin.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kOrigins[] = R"pb(
  origins {
    name: "r2"
    s3 {
      endpoint: "https://acct.r2.cloudflarestorage.com"
      region: "auto"
      bucket: "models"
      access_key_id { env: "MODELDIST_TEST_R2_KEY_ID" }
      secret_access_key { env: "MODELDIST_TEST_R2_SECRET" }
    }
    key_prefix: "prod/"
    replicate: true
    cdn {
      base_url: "https://d111111abcdef8.cloudfront.net"
      cloudfront {
        key_pair_id: "K2JCJMDEHXQW5F"
        private_key { env: "MODELDIST_TEST_CF_KEY" }
      }
    }
  }
  origins {
    name: "backup"
    s3 {
      endpoint: "https://s3.eu-west-1.amazonaws.com"
      region: "eu-west-1"
      bucket: "models-backup"
      access_key_id { env: "MODELDIST_TEST_AWS_KEY_ID" }
      secret_access_key { env: "MODELDIST_TEST_AWS_SECRET" }
    }
    replicate: true
    hide_from_devices: true
  }
  origins {
    name: "web"
    http { base_url: "https://models.example.com/v1" }
    hide_from_devices: true
  }
)pb";

// The origins the server built, by name, so a test can set their faults.
struct Fakes {
  std::map<std::string, MemoryOrigin*> by_name;
};

services::ServerConfig WithOrigins(const std::string& file, Fakes* fakes) {
  services::ServerConfig config;
  config.origins_file = file;
  config.origin_factory = [fakes](const v1::Origin& entry) {
    auto origin = std::make_unique<MemoryOrigin>(entry.name());
    fakes->by_name[entry.name()] = origin.get();
    return absl::StatusOr<std::unique_ptr<origin::Origin>>(std::move(origin));
  };
  return config;
}

class OriginAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = dir_.Join("origins.textproto");
    ASSERT_TRUE(WriteFileAtomically(file_, kOrigins, 0600).ok());
    server_ = std::make_unique<TestServer>(WithOrigins(file_, &fakes_));
  }

  grpc::Status Check(const std::string& name, v1::CheckOriginResponse* response) {
    v1::CheckOriginRequest request;
    request.set_name(name);
    return server_->registry().CheckOrigin(server_->Admin().get(), request, response);
  }

  ScratchDir dir_;
  std::string file_;
  Fakes fakes_;
  std::unique_ptr<TestServer> server_;
};

std::vector<std::string> Steps(const v1::CheckOriginResponse& response) {
  std::vector<std::string> out;
  for (const auto& s : response.steps()) {
    out.push_back(s.step() + (s.error_code().empty() ? " ok" : " " + s.error_code()));
  }
  return out;
}

TEST_F(OriginAdminTest, ListShowsEveryOriginInTheFilesOrderWithoutSecrets) {
  v1::ListOriginsResponse list;
  ASSERT_TRUE(server_->registry()
                  .ListOrigins(server_->Admin().get(), v1::ListOriginsRequest(), &list)
                  .ok());
  ASSERT_EQ(list.origins_size(), 3);
  const v1::OriginSummary& r2 = list.origins(0);
  EXPECT_EQ(r2.name(), "r2");
  EXPECT_EQ(r2.kind(), "s3");
  EXPECT_EQ(r2.location(), "https://acct.r2.cloudflarestorage.com/models");
  EXPECT_EQ(r2.key_prefix(), "prod/");
  EXPECT_TRUE(r2.replicate());
  EXPECT_FALSE(r2.hide_from_devices());
  EXPECT_EQ(r2.cdn_base_url(), "https://d111111abcdef8.cloudfront.net");
  EXPECT_TRUE(r2.cdn_signed());
  EXPECT_EQ(list.origins(1).name(), "backup");
  EXPECT_TRUE(list.origins(1).hide_from_devices());
  const v1::OriginSummary& web = list.origins(2);
  EXPECT_EQ(web.kind(), "http");
  EXPECT_EQ(web.location(), "https://models.example.com/v1");
  EXPECT_TRUE(web.hide_from_devices());
  EXPECT_FALSE(web.replicate());
  // Not even where the secrets come from is shown.
  EXPECT_THAT(list.DebugString(), Not(HasSubstr("MODELDIST_TEST_")));
}

TEST_F(OriginAdminTest, CheckRunsEveryStepAgainstTheOrigin) {
  // An origin devices are not sent to: no device-url step (the fake's "memory://" URLs could
  // not be fetched; that step is origin_set_test's, and ctl_e2e_origins_test's on Swift).
  v1::CheckOriginResponse response;
  ASSERT_TRUE(Check("backup", &response).ok());
  EXPECT_TRUE(response.ok());
  EXPECT_EQ(response.name(), "backup");
  EXPECT_THAT(Steps(response), ElementsAre("put ok", "head ok", "get ok", "delete ok"));
  EXPECT_THAT(response.steps(0).object_key(), HasSubstr("modeldist-check/"));
  EXPECT_EQ(fakes_.by_name["backup"]->deletes, 1);
  EXPECT_TRUE(fakes_.by_name["backup"]->objects.empty());

  v1::CheckOriginResponse read_only;
  ASSERT_TRUE(Check("web", &read_only).ok());
  EXPECT_TRUE(read_only.ok());
  EXPECT_THAT(Steps(read_only), ElementsAre("head ok"));
}

TEST_F(OriginAdminTest, AFailingOriginIsTheResponsesFindingNotTheRpcsError) {
  fakes_.by_name["r2"]->put_error =
      MakeError(absl::StatusCode::kPermissionDenied, "HTTP_FORBIDDEN",
                "r2: PUT https://acct.r2.cloudflarestorage.com/models/x: HTTP 403");
  v1::CheckOriginResponse response;
  ASSERT_TRUE(Check("r2", &response).ok());
  EXPECT_FALSE(response.ok());
  ASSERT_THAT(Steps(response), ElementsAre("put PERMISSION_DENIED"));
  EXPECT_EQ(response.steps(0).error_reason(), "HTTP_FORBIDDEN");
  EXPECT_THAT(response.steps(0).error_message(), HasSubstr("HTTP 403"));
}

TEST_F(OriginAdminTest, CheckNamesTheBadOrUnknownOrigin) {
  v1::CheckOriginResponse response;
  grpc::Status unknown = Check("s3-backup", &response);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(unknown.error_message(), HasSubstr("s3-backup"));
  grpc::Status bad = Check("R2 ", &response);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("name"));
  EXPECT_EQ(Check("", &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(OriginAdminTest, BothNeedTheAdminToken) {
  v1::ListOriginsResponse list;
  EXPECT_EQ(server_->registry()
                .ListOrigins(server_->Admin("wrong-token").get(), v1::ListOriginsRequest(), &list)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::CheckOriginRequest request;
  request.set_name("r2");
  v1::CheckOriginResponse response;
  grpc::ClientContext no_token;
  EXPECT_EQ(server_->registry().CheckOrigin(&no_token, request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(fakes_.by_name["r2"]->objects.empty());
  EXPECT_EQ(fakes_.by_name["r2"]->deletes, 0);  // nothing was run
}

TEST(OriginAdminNoOriginsTest, AServerWithoutAnOriginsFileListsNoneAndKnowsNone) {
  TestServer server;
  v1::ListOriginsResponse list;
  ASSERT_TRUE(
      server.registry().ListOrigins(server.Admin().get(), v1::ListOriginsRequest(), &list).ok());
  EXPECT_EQ(list.origins_size(), 0);
  v1::CheckOriginRequest request;
  request.set_name("r2");
  v1::CheckOriginResponse response;
  grpc::Status status = server.registry().CheckOrigin(server.Admin().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("--origins"));
}

TEST(OriginAdminStartTest, ABadOriginsFileStopsTheStartBeforeTheDataDirIsMade) {
  ScratchDir dir;
  const std::string file = dir.Join("origins.textproto");
  ASSERT_TRUE(
      WriteFileAtomically(file, "origins { name: \"r2\" http { base_url: \"ftp://x\" } }", 0600)
          .ok());
  Fakes fakes;
  services::ServerConfig config = WithOrigins(file, &fakes);
  config.listen = "127.0.0.1:0";
  config.data_dir = dir.Join("data");
  config.admin_token = kTestToken;
  absl::StatusOr<std::unique_ptr<services::ModeldistServer>> server =
      services::ModeldistServer::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(ErrorReason(server.status()), "INVALID_ORIGINS_CONFIG");
  EXPECT_THAT(server.status().message(), HasSubstr("origins[0].http.base_url"));
  EXPECT_THAT(server.status().message(), HasSubstr(file));
  struct stat st;
  EXPECT_NE(::stat(config.data_dir.c_str(), &st), 0) << "the data dir was created";

  // An origin the factory cannot build (a missing credential) stops it the same way.
  ASSERT_TRUE(WriteFileAtomically(file, kOrigins, 0600).ok());
  config.origin_factory =
      [](const v1::Origin& entry) -> absl::StatusOr<std::unique_ptr<origin::Origin>> {
    return MakeError(absl::StatusCode::kFailedPrecondition, "SECRET_UNAVAILABLE",
                     "environment variable MODELDIST_TEST_R2_KEY_ID is not set");
  };
  server = services::ModeldistServer::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(ErrorReason(server.status()), "SECRET_UNAVAILABLE");
  EXPECT_THAT(server.status().message(), HasSubstr("origins[0] (r2)"));
}

}  // namespace
}  // namespace modeldist::testing
