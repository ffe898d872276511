// File: fault_proxy.h
//
// A plain HTTP/1.1 proxy on 127.0.0.1 that sits between a client under test and a real web
// server (e.g. NginxServer) and damages the responses' bodies on demand: a flipped bit, a
// connection closed or reset mid-body, a stall, a 503, a Content-Length that lies; or an
// upload's bytes on their way (a flipped bit in a request body). It lets a
// test put the faults of a real network between real HTTP code and a real server, where a
// fake origin would only simulate them.
//
// One request per connection: the request is forwarded with `Connection: close`, so the
// upstream closes after its response and the body is whatever comes before that close. Only
// bodies are damaged (offsets count from the first byte after the headers).
#ifndef MODELDIST_TESTS_TESTING_FAULT_PROXY_H_
#define MODELDIST_TESTS_TESTING_FAULT_PROXY_H_

#include <atomic>
#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace modeldist::testing {

struct Fault {
  enum Kind {
    kNone,            // pass through
    kCorrupt,         // flip one bit of body byte `at`
    kTruncate,        // close the connection (FIN) after `at` body bytes; headers unchanged
    kStall,           // send `at` body bytes, then nothing, keeping the socket open until the
                      // client closes it or the proxy is destroyed
    kReset,           // after `at` body bytes, close with RST (SO_LINGER 0)
    kStatus5xx,       // answer 503 with a small body, without contacting the upstream
    kWrongLength,     // announce a Content-Length larger than the body, close after the body
    kCorruptRequest,  // flip one bit of the request's body byte `at` on its way upstream
  };
  Kind kind = kNone;
  int64_t at = 0;
  // The fault applies to this many requests from set_fault on, then requests pass through;
  // negative: to every request.
  int times = -1;
  // Requests that pass untouched before the fault starts (e.g. 2 aims at the second part of a
  // multipart upload, after its create request and first part).
  int after = 0;
};

class FaultProxy {
 public:
  // Forwards to upstream_host:upstream_port (an IPv4 address or a name). port() is 0 when
  // the proxy could not listen.
  FaultProxy(std::string upstream_host, int upstream_port);
  // Closes every connection (a stalled one included) and joins the threads.
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }
  // For the requests that arrive from now on.
  void set_fault(Fault fault) ABSL_LOCKS_EXCLUDED(mu_);
  // Requests received so far (faulted or not).
  int requests() const { return requests_.load(); }

 private:
  void AcceptLoop();
  void Serve(int client);
  // The fault for a request that just arrived (consuming one of its `times`).
  Fault TakeFault() ABSL_LOCKS_EXCLUDED(mu_);
  // Sockets are registered while in use so that the destructor can shut them down (which
  // wakes any thread blocked on them); Close unregisters before closing, so that the
  // destructor never touches a descriptor number the kernel has handed out again.
  bool Register(int fd) ABSL_LOCKS_EXCLUDED(mu_);
  void Close(int fd, bool reset = false) ABSL_LOCKS_EXCLUDED(mu_);
  int ConnectUpstream() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string upstream_host_;
  const int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<int> requests_{0};

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Fault fault_ ABSL_GUARDED_BY(mu_);
  std::set<int> open_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> connections_ ABSL_GUARDED_BY(mu_);
  std::thread acceptor_;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_FAULT_PROXY_H_
