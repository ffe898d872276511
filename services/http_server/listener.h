// File: listener.h
//
// The HTTP side of modeldist-server: a listener beside gRPC for those who cannot speak gRPC
// (CDNs pulling blobs, apps built against the seed's edge function, Prometheus, load-balancer
// probes). Built on libmicrohttpd, which parses HTTP/1.1, keeps connections alive, times out
// idle ones and speaks TLS (GnuTLS); this file only turns its callbacks into one call of a
// Handler per request.
//
// Each connection has a thread (libmicrohttpd's thread-per-connection mode), so a handler and a
// body reader may block, on the disk or on a read-through waiting for an origin. Idle
// connections (slowloris: headers or a body that trickle in) are dropped after
// `idle_timeout`; at most `max_connections` are open at once, the rest are refused at accept.
// A request body larger than `max_body_bytes` is refused with 413 before it is read.
#ifndef MODELDIST_SERVICES_HTTP_SERVER_LISTENER_H_
#define MODELDIST_SERVICES_HTTP_SERVER_LISTENER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/file_util.h"

struct MHD_Daemon;

namespace modeldist::http_server {

// One request, read whole (bodies are small: the listener bounds them).
struct Request {
  std::string method;  // as sent: "GET", "HEAD", "POST", ...
  std::string path;    // percent-decoded, without the query string
  absl::flat_hash_map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string peer;  // the client's address, "127.0.0.1:52344"

  // The header's value, or "" when absent. `name` in lower case.
  std::string Header(const std::string& name) const;
  bool HasHeader(const std::string& name) const { return headers.contains(name); }
};

// Produces the body's bytes at position `pos` into `buf`, as they are sent: up to `max` of them,
// at least one. An error cuts the connection, so the client sees a short body (less
// than Content-Length), never a whole one with wrong bytes in it.
using BodyReader = std::function<absl::StatusOr<size_t>(int64_t pos, char* buf, size_t max)>;

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  // The body, unless `file` or `reader` is set: then the body is `body_size` bytes of `file`
  // from `file_offset`, sent with sendfile (no copy through user space; the listener owns the
  // descriptor), or what `reader` produces. A HEAD request gets the same headers
  // (Content-Length included) and no body; the reader is not called.
  std::string body;
  ScopedFd file;
  int64_t file_offset = 0;
  BodyReader reader;
  int64_t body_size = 0;
  // For metrics and the request log: a fixed name of what answered ("blob", "healthz"), never
  // a raw path, and the device the request named, if any.
  std::string route = "other";
  std::string device_id;

  Response& Header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

using Handler = std::function<Response(const Request&)>;

// A request once its answer is out, or cut short.
struct Completion {
  absl::Time start;       // when the request's headers were in
  std::string route;      // Response::route ("" and status 0 when no answer was queued)
  std::string device_id;  // Response::device_id
  int status = 0;
  int64_t bytes = 0;        // body bytes handed to the connection
  absl::Duration duration;  // from `start` to the end
  bool complete = false;    // the whole answer went out
};

struct ListenerOptions {
  // HOST:PORT, e.g. 127.0.0.1:8480 or [::1]:0; port 0 picks a free one (Listener::port()).
  std::string listen;
  // PEM certificate chain and key: both set means HTTPS, both empty means plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  int64_t max_body_bytes = 64 * 1024;
  int max_connections = 1024;
  absl::Duration idle_timeout = absl::Seconds(30);
  // The most bytes a BodyReader is asked for at once.
  size_t body_block_bytes = 256 * 1024;
  // Told of each request as it starts and once it is done (metrics, the request log); may be
  // empty. Called on the connection's thread.
  std::function<void()> on_start;
  std::function<void(const Request&, const Completion&)> on_complete;
};

class Listener {
 public:
  // Binds and starts serving; errors name the flag to fix (--http-listen, --tls-cert).
  static absl::StatusOr<std::unique_ptr<Listener>> Start(const ListenerOptions& options,
                                                         Handler handler);
  // Stops: no new connections; waits for the open ones' threads.
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  int port() const { return port_; }

 private:
  friend struct ListenerCallbacks;
  Listener(ListenerOptions options, Handler handler)
      : options_(std::move(options)), handler_(std::move(handler)) {}

  const ListenerOptions options_;
  const Handler handler_;
  std::string tls_cert_;  // libmicrohttpd keeps pointers to these while it runs
  std::string tls_key_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
};

}  // namespace modeldist::http_server

#endif  // MODELDIST_SERVICES_HTTP_SERVER_LISTENER_H_
