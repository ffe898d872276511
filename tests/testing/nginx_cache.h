// File: nginx_cache.h
//
// Debian's nginx-light as a caching reverse proxy (proxy_cache) on 127.0.0.1 in front of one
// origin port, from its own prefix in the foreground (`daemon off`, stopped by its PID): the
// second shared HTTP cache, besides Varnish, that the blob listener's immutable answers are
// tested behind. Every response carries `X-Cache: <$upstream_cache_status>` (MISS, HIT,
// EXPIRED, BYPASS, ...), and the access log has one line per request with the cache status,
// the client's Range and what came from the origin.
//
// Two ways of caching a large blob:
// - whole (slice false): a miss fetches the whole blob with a plain GET (nginx does not pass
//   Range, If-Range, If-None-Match, If-Modified-Since to the origin when it caches, and turns
//   HEAD into GET) and streams it to the client while it writes it to the cache; nginx answers
//   Range (206) and conditional requests from the cached file. Misses are not coalesced
//   (no proxy_cache_lock): two clients that miss at once make two origin fetches.
// - in 1 MiB slices (slice true, the slice module): the cache key is `$uri$slice_range`, each
//   slice is fetched from the origin with `Range: bytes=<slice>` (so the origin must answer 206)
//   and cached on its own, and a client's range fetches only the slices it covers (a suffix
//   range `bytes=-N` fetches the first slice too, to learn the size; a HEAD fetches the first
//   slice only). X-Cache and the main access log line then tell the status of the first slice
//   the response needs, not of the others; `log_subrequest on` adds one access log line per
//   other slice, with its range in `slice="..."`.
#ifndef MODELDIST_TESTS_TESTING_NGINX_CACHE_H_
#define MODELDIST_TESTS_TESTING_NGINX_CACHE_H_

#include <sys/types.h>

#include <string>

namespace modeldist::testing {

class NginxCache {
 public:
  // Caches http://127.0.0.1:<origin_port> under <prefix>/cache; in 1 MiB slices with `slice`.
  NginxCache(const std::string& prefix, int origin_port, bool slice);
  ~NginxCache();
  NginxCache(const NginxCache&) = delete;
  NginxCache& operator=(const NginxCache&) = delete;

  // 0 when nginx could not start (or, with `slice`, has no slice module: see ErrorLog()).
  int port() const { return port_; }
  // http://127.0.0.1:<port><path>
  std::string Url(const std::string& path) const;
  // The error log (and why nginx did not start, when the harness knows), for failure messages.
  std::string ErrorLog() const;
  // The access log, one line per request (per slice subrequest too, in slice mode):
  // `<method> <uri> <status> <bytes sent> range="<client's Range>" cache=<cache status>
  //  upstream=<origin status> upstream_bytes=<bytes from the origin>[ slice="<slice range>"]`.
  std::string AccessLog() const;
  // Where nginx keeps the cached responses.
  std::string cache_dir() const { return prefix_ + "/cache"; }

 private:
  void TryStart(int port);

  const std::string prefix_;
  const int origin_port_;
  const bool slice_;
  std::string error_;  // why nginx was not started, if the harness knows
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_NGINX_CACHE_H_
