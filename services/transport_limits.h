// File: transport_limits.h
//
// The gRPC server's HTTP/2 limits, so that no single connection can take the server: how many
// calls one connection may have open at once (more wait for a free one, on that connection
// only), how often a client may ping (more pings without data in between are strikes; after
// `max_ping_strikes` the connection is closed with GOAWAY ENHANCE_YOUR_CALM "too_many_pings"),
// the server's own keepalive pings (a peer that vanished without a FIN stops holding calls
// after keepalive_time + keepalive_timeout), and how long an idle connection is kept.
// Message sizes are ServerConfig.max_receive_message_bytes; upload streams per client address
// are services/upload_limits.h.
#ifndef MODELDIST_SERVICES_TRANSPORT_LIMITS_H_
#define MODELDIST_SERVICES_TRANSPORT_LIMITS_H_

#include <grpcpp/server_builder.h>

#include "absl/time/time.h"

namespace modeldist::services {

struct TransportLimits {
  // Calls open at once on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS).
  int max_concurrent_streams = 100;
  // The server pings a connection silent for this long, and closes it when no answer comes
  // within keepalive_timeout.
  absl::Duration keepalive_time = absl::Minutes(2);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // Client pings closer together than this, with no data sent in between, are strikes
  // (agents and modeldistctl do not ping on their own).
  absl::Duration min_client_ping_interval = absl::Minutes(1);
  int max_ping_strikes = 2;
  // A connection with no call for this long is closed (the client reconnects when it needs).
  absl::Duration max_connection_idle = absl::Minutes(30);
};

// Sets `limits` on `builder` as channel arguments.
void ApplyTransportLimits(const TransportLimits& limits, grpc::ServerBuilder* builder);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_TRANSPORT_LIMITS_H_
