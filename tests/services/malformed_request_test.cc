// Request bytes that are not the method's protobuf message: every service answers
// INVALID_ARGUMENT with reason MALFORMED_REQUEST and a message naming the expected type
// (services/malformed_request.h), instead of gRPC's own INTERNAL or UNIMPLEMENTED with an
// empty message. The bytes go through TestServer::CallRaw, which sends them as they are.
#include "services/malformed_request.h"

#include <memory>
#include <string>

#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/grpc_status.h"
#include "tests/testing/test_server.h"

namespace modeldist::services {
namespace {

using ::modeldist::testing::TestServer;
using ::testing::HasSubstr;

// Not a protobuf message: 0xff starts a varint tag that never ends.
constexpr char kGarbage[] = "\xff\xff\xff";

class MalformedRequestTest : public ::testing::Test {
 protected:
  // Sends `bytes` as the one request message of `method` (TestServer::CallRaw; a unary call
  // on the wire is one message each way, so streaming methods are called the same way).
  grpc::Status Call(const std::string& method, const std::string& bytes, bool admin = false) {
    return server_.CallRaw(method, bytes, admin);
  }

  // The status says the request is not a `type`, with the reason, as every error does.
  static void ExpectMalformed(const grpc::Status& status, const std::string& type) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("could not be parsed as a " + type));
    absl::Status converted = FromGrpcStatus(status);
    EXPECT_EQ(ErrorReason(converted), "MALFORMED_REQUEST");
    EXPECT_EQ(ErrorMetadataValue(converted, "type"), type);
  }

  TestServer server_;
};

TEST_F(MalformedRequestTest, CallbackUnaryManifestMethodsSayWhatTheyExpected) {
  // gRPC's own answer here is UNIMPLEMENTED with no message, as if the method did not exist.
  ExpectMalformed(Call("/modeldist.v1.ManifestService/GetManifest", kGarbage),
                  "modeldist.v1.GetManifestRequest");
  ExpectMalformed(Call("/modeldist.v1.ManifestService/GetTrustRoot", kGarbage),
                  "modeldist.v1.GetTrustRootRequest");
}

TEST_F(MalformedRequestTest, SyncUnaryMethodsSayWhatTheyExpected) {
  // gRPC's own answer here is INTERNAL with an empty message.
  ExpectMalformed(Call("/modeldist.v1.RegistryService/GetVersion", kGarbage, /*admin=*/true),
                  "modeldist.v1.GetVersionRequest");
  ExpectMalformed(Call("/modeldist.v1.RegistryService/SetTier", kGarbage, /*admin=*/true),
                  "modeldist.v1.SetTierRequest");
  // The request is refused before anything reads the token: there is no call to authorize.
  ExpectMalformed(Call("/modeldist.v1.RegistryService/CreateModel", kGarbage),
                  "modeldist.v1.CreateModelRequest");
  ExpectMalformed(Call("/modeldist.v1.ArtifactService/Stat", kGarbage), "modeldist.v1.StatRequest");
}

TEST_F(MalformedRequestTest, RawReadSaysWhatItExpected) {
  ExpectMalformed(Call("/modeldist.v1.ArtifactService/Read", kGarbage), "modeldist.v1.ReadRequest");
}

TEST_F(MalformedRequestTest, WellFormedRequestsKeepTheirOwnAnswers) {
  // An empty message is a valid (empty) request: the services' own validation answers.
  grpc::Status status = Call("/modeldist.v1.RegistryService/GetVersion", "", /*admin=*/true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(ErrorReason(FromGrpcStatus(status)), "MALFORMED_REQUEST");
  status = Call("/modeldist.v1.RegistryService/GetVersion", "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  status = Call("/modeldist.v1.ArtifactService/Read", "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(ErrorReason(FromGrpcStatus(status)), "MALFORMED_REQUEST");
}

TEST(MalformedRequestErrorTest, NamesTheTypeWithAReason) {
  absl::Status status = MalformedRequestError("modeldist.v1.ReadRequest");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("could not be parsed as a modeldist.v1.ReadRequest"));
  EXPECT_EQ(ErrorReason(status), "MALFORMED_REQUEST");
}

}  // namespace
}  // namespace modeldist::services
