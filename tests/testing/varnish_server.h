// File: varnish_server.h
//
// Varnish Cache (Debian's varnishd) as a caching reverse proxy on 127.0.0.1 in front of one
// origin port: the shared HTTP cache (what a CDN edge does) that the blob listener's
// `Cache-Control: public, max-age=31536000, immutable` answers are tested behind, so a test can
// see the second download of a blob served from the cache and not from the origin. It runs in
// the foreground (`varnishd -F`, stopped by its PID) with its own working directory
// `<prefix>/varnish` (`-n`), so it never touches a system instance, with no admin port
// (`-T none`; counters are read from shared memory by varnishstat), 256 MiB of malloc storage
// and no privilege separation (`-j none`: the default unix jail runs the child as `vcache`,
// which cannot read a 0700 scratch directory, and `-j unix,user=root` is refused because root
// and vcache have different login groups).
//
// What the VCL (<prefix>/varnish.vcl) does, on top of the builtin VCL:
// - every response gets `X-Cache: HIT` (served from a cached object, obj.hits > 0) or
//   `X-Cache: MISS` (fetched for this request, or passed);
// - responses stream to the client while they are fetched (beresp.do_stream), and a request that
//   arrives during the fetch is a HIT that streams from the object being fetched (one origin
//   fetch for both);
// - a miss always fetches the whole object with a plain GET: the builtin behaviour removes
//   Range, If-Range, If-None-Match and If-Modified-Since from the backend request and turns HEAD
//   into GET; Varnish then answers the Range (206, as soon as the bytes arrive), the HEAD or the
//   conditional (304) itself, from the object. It adds `Accept-Encoding: gzip` and
//   `X-Forwarded-For` to the backend request.
// - as in the builtin VCL, requests with an Authorization or a Cookie header, and methods other
//   than GET and HEAD, are passed to the origin (never cached); objects must fit in the 256 MiB
//   of storage.
#ifndef MODELDIST_TESTS_TESTING_VARNISH_SERVER_H_
#define MODELDIST_TESTS_TESTING_VARNISH_SERVER_H_

#include <cstdint>
#include <string>

#include "tests/testing/child_process.h"

namespace modeldist::testing {

class VarnishServer {
 public:
  // Caches http://127.0.0.1:<origin_port>. Returns once varnishd answers on port().
  VarnishServer(const std::string& prefix, int origin_port);
  ~VarnishServer();
  VarnishServer(const VarnishServer&) = delete;
  VarnishServer& operator=(const VarnishServer&) = delete;

  // 0 when varnishd could not start.
  int port() const { return port_; }
  // http://127.0.0.1:<port><path>
  std::string Url(const std::string& path) const;
  // varnishd's own output (VCL compile errors, child start and stop) and, while it runs, its
  // shared-memory log of the latest requests grouped by request (`varnishlog -d -g request`:
  // the client's and the backend's requests and responses, headers included), for failure
  // messages.
  std::string Log() const;
  // The value of a varnishstat counter such as "MAIN.cache_hit", "MAIN.cache_miss" or
  // "MAIN.backend_req"; -1 when it cannot be read. Workers add their counts to these totals
  // when they finish a task, so a count may lag the response a client has just received by a
  // moment: poll for an expected value rather than read it once.
  int64_t Counter(const std::string& name) const;
  // The working directory (`-n`), for varnishstat and varnishlog by hand.
  std::string workdir() const { return prefix_ + "/varnish"; }

 private:
  void TryStart(int port);

  const std::string prefix_;
  const int origin_port_;
  ChildProcess varnishd_;  // the manager, in the foreground (-F)
  int port_ = 0;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_VARNISH_SERVER_H_
