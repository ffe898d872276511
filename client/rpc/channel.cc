#include "client/rpc/channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::rpc {

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ChannelOptions& options) {
  if (options.target.empty()) {
    return InvalidArgument("target", "MISSING_TARGET", "the server address (HOST:PORT) is empty");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    absl::StatusOr<std::string> pem = ReadFileToString(options.tls_ca_file);
    if (!pem.ok()) {
      return MakeError(absl::StatusCode::kFailedPrecondition, "TLS_CA_UNREADABLE",
                       absl::StrCat("cannot read the TLS CA file ", options.tls_ca_file, ": ",
                                    pem.status().message()));
    }
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = *std::move(pem);
    credentials = grpc::SslCredentials(tls);
  }
  grpc::ChannelArguments args;
  if (options.max_receive_message_bytes.has_value()) {
    args.SetMaxReceiveMessageSize(*options.max_receive_message_bytes);
  }
  if (options.keepalive_time.has_value()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                static_cast<int>(absl::ToInt64Milliseconds(*options.keepalive_time)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  }
  if (options.fixed_stream_window_bytes.has_value()) {
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, *options.fixed_stream_window_bytes);
  }
  return grpc::CreateCustomChannel(options.target, credentials, args);
}

}  // namespace modeldist::rpc
