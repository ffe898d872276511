#include "common/grpc_status.h"

#include "common/status.h"
#include "gtest/gtest.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist {
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

TEST(GrpcStatusTest, ContextPrefixesTheMessageAndKeepsTheReason) {
  grpc::Status out = ToGrpcStatus(MakeError(absl::StatusCode::kNotFound, "BLOB_NOT_FOUND", "gone"));
  absl::Status back = FromGrpcStatus(out, "grpc://127.0.0.1:1");
  EXPECT_EQ(back.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(back.message(), "grpc://127.0.0.1:1: gone");
  EXPECT_EQ(ErrorReason(back), "BLOB_NOT_FOUND");
}

TEST(WithContextTest, PrefixesTheMessageAndKeepsCodeAndReason) {
  absl::Status s = WithContext(MakeError(absl::StatusCode::kDataLoss, "BLOB_CORRUPT", "chunk 2"),
                               "grpc://host:1");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "grpc://host:1: chunk 2");
  EXPECT_EQ(ErrorReason(s), "BLOB_CORRUPT");
  EXPECT_TRUE(WithContext(absl::OkStatus(), "x").ok());
}

TEST(GrpcStatusTest, UnparsableDetailsLeaveCodeAndMessage) {
  absl::Status back = FromGrpcStatus(grpc::Status(grpc::StatusCode::INTERNAL, "boom", "\xff junk"));
  EXPECT_EQ(back.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(back.message(), "boom");
  EXPECT_EQ(ErrorReason(back), "");
}

}  // namespace
}  // namespace modeldist
