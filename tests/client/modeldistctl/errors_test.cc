// Tests of errors.h and of the gRPC status mapping: exit codes, and error lines that keep the
// server's code and ErrorInfo reason.
#include "client/modeldistctl/errors.h"

#include <grpcpp/grpcpp.h>

#include <string>

#include "client/modeldistctl/registry_client.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::StatusIs;

TEST(ErrorsTest, ExitCodes) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), kExitOk);
  EXPECT_EQ(ExitCodeFor(UsageError("x")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(LocalError(absl::NotFoundError("x"))), kExitLocal);
  EXPECT_EQ(ExitCodeFor(absl::UnauthenticatedError("x")), kExitRpc);
  EXPECT_THAT(LocalError(absl::OkStatus()), IsOk());
  // A DATA_LOSS from the server is an RPC error; only the CLI's own finding means "damage".
  EXPECT_EQ(ExitCodeFor(DamageFound("1 damaged")), kExitDamage);
  EXPECT_EQ(ExitCodeFor(absl::DataLossError("x")), kExitRpc);
  EXPECT_EQ(DescribeError(DamageFound("the scrub found 1 damaged")), "the scrub found 1 damaged");
}

TEST(ErrorsTest, DescribeNamesCodeAndReasonOfServerErrors) {
  absl::Status status = MakeError(absl::StatusCode::kFailedPrecondition, "ARTIFACT_NOT_UPLOADED",
                                  "artifact sha256:ab is not uploaded");
  EXPECT_EQ(DescribeError(status),
            "FAILED_PRECONDITION: artifact sha256:ab is not uploaded [ARTIFACT_NOT_UPLOADED]");
  EXPECT_EQ(DescribeError(UsageError("--model is required")), "--model is required");
}

TEST(FromGrpcStatusTest, KeepsCodeMessageAndErrorInfoReason) {
  v1::ErrorInfo info;
  info.set_reason("VERSION_EXISTS");
  info.set_domain("modeldist.dev");
  v1::RpcStatus details;
  details.set_code(grpc::ALREADY_EXISTS);
  details.set_message("exists");
  auto* any = details.add_details();
  any->set_type_url(std::string(kErrorInfoPayload));
  any->set_value(info.SerializeAsString());
  absl::Status status =
      FromGrpcStatus(grpc::Status(grpc::ALREADY_EXISTS, "exists", details.SerializeAsString()));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAlreadyExists, "exists"));
  EXPECT_EQ(ErrorReason(status), "VERSION_EXISTS");
  EXPECT_EQ(ErrorReason(FromGrpcStatus(grpc::Status(grpc::UNAVAILABLE, "down"))), "");
}

}  // namespace
}  // namespace modeldist::ctl
