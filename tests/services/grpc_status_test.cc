#include "services/grpc_status.h"

#include "common/status.h"
#include "gtest/gtest.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::services {
namespace {

TEST(GrpcStatusTest, CarriesCodeMessageAndErrorInfo) {
  absl::Status in = InvalidArgument("digest", "INVALID_DIGEST", "digest is bad");
  grpc::Status out = ToGrpcStatus(in);
  EXPECT_EQ(out.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(out.error_message(), "digest is bad");
  v1::RpcStatus details;
  ASSERT_TRUE(details.ParseFromString(out.error_details()));
  EXPECT_EQ(details.code(), 3);
  ASSERT_EQ(details.details_size(), 1);
  EXPECT_EQ(details.details(0).type_url(), "type.googleapis.com/google.rpc.ErrorInfo");
  v1::ErrorInfo info;
  ASSERT_TRUE(info.ParseFromString(details.details(0).value()));
  EXPECT_EQ(info.reason(), "INVALID_DIGEST");
  EXPECT_EQ(info.domain(), "modeldist.dev");
  EXPECT_EQ(info.metadata().at("field"), "digest");

  absl::Status back = FromGrpcStatus(out);
  EXPECT_EQ(back.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(back), "INVALID_DIGEST");
}

TEST(GrpcStatusTest, OkAndPlainErrors) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status out = ToGrpcStatus(absl::NotFoundError("nope"));
  EXPECT_EQ(out.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ErrorReason(FromGrpcStatus(out)), "");
}

}  // namespace
}  // namespace modeldist::services
