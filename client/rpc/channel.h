// File: channel.h
//
// The one way modeldist's clients (modeldistctl, the agent, the agent's gRPC source) open a
// gRPC channel: a target, plaintext or TLS with a CA file, and the few channel arguments they
// tune. A CA file that cannot be read is an error naming the file: a client asked for TLS must
// never fall back to the system roots or to plaintext because of a typo.
#ifndef MODELDIST_CLIENT_RPC_CHANNEL_H_
#define MODELDIST_CLIENT_RPC_CHANNEL_H_

#include <grpcpp/channel.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace modeldist::rpc {

struct ChannelOptions {
  // host:port (or any gRPC target string).
  std::string target;
  // PEM file with the CA certificates to trust; empty means plaintext.
  std::string tls_ca_file;
  // Largest message the channel accepts; gRPC's default (4 MiB) when unset.
  std::optional<int> max_receive_message_bytes;
  // HTTP/2 keepalive pings, which find a dead connection under a long call without a
  // deadline; off when unset.
  std::optional<absl::Duration> keepalive_time;
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // A fixed HTTP/2 stream window instead of gRPC's BDP-probed one, which bounds the bytes the
  // transport buffers ahead of a slow reader; gRPC's adaptive window when unset.
  std::optional<int> fixed_stream_window_bytes;
};

// A channel as described, or FAILED_PRECONDITION (TLS_CA_UNREADABLE) naming the CA file, or
// INVALID_ARGUMENT (MISSING_TARGET) for an empty target.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ChannelOptions& options);

}  // namespace modeldist::rpc

#endif  // MODELDIST_CLIENT_RPC_CHANNEL_H_
