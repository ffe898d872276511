#include "tests/testing/nginx_cache.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {

NginxCache::NginxCache(const std::string& prefix, int origin_port, bool slice)
    : prefix_(prefix), origin_port_(origin_port), slice_(slice) {
  for (const char* dir : {"logs", "tmp", "cache"}) {
    EXPECT_TRUE(MakeDirs(prefix_ + "/" + dir).ok()) << dir;
  }
  // `nginx -V` lists the modules built in (it prints to stderr).
  if (slice_ && std::system("/usr/sbin/nginx -V 2>&1 | grep -q -e --with-http_slice_module") != 0) {
    error_ = "this nginx has no ngx_http_slice_module (not in `nginx -V`): slice mode cannot run";
    return;
  }
  // A port free a moment ago may be taken before nginx binds it: try again on new ones.
  for (int attempt = 0; attempt < 5 && port_ == 0; ++attempt) TryStart(FreePort());
}

NginxCache::~NginxCache() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

std::string NginxCache::Url(const std::string& path) const {
  return absl::StrCat("http://127.0.0.1:", port_, path);
}

std::string NginxCache::ErrorLog() const {
  return absl::StrCat(error_.empty() ? "" : error_ + "\n",
                      ReadFileToString(prefix_ + "/logs/error.log").value_or(""));
}

std::string NginxCache::AccessLog() const {
  return ReadFileToString(prefix_ + "/logs/access.log").value_or("");
}

void NginxCache::TryStart(int port) {
  if (port == 0) return;
  const std::string& p = prefix_;
  const std::string http = absl::StrCat(
      "  log_format cache '$request_method $request_uri $status $body_bytes_sent "
      "range=\"$http_range\" cache=$upstream_cache_status upstream=$upstream_status "
      "upstream_bytes=$upstream_response_length",
      slice_ ? " slice=\"$slice_range\"" : "", "';\n  access_log ", p,
      "/logs/access.log cache;\n  proxy_cache_path ", p,
      "/cache keys_zone=blobs:10m max_size=4g inactive=1d use_temp_path=off;\n  server {\n"
      "    listen 127.0.0.1:",
      port, ";\n    location / {\n      proxy_pass http://127.0.0.1:", origin_port_,
      ";\n      proxy_cache blobs;\n      proxy_cache_valid 200 206 1d;\n",
      slice_ ? "      slice 1m;\n      proxy_cache_key $uri$slice_range;\n"
               "      proxy_set_header Range $slice_range;\n      log_subrequest on;\n"
             : "",
      "      add_header X-Cache $upstream_cache_status always;\n    }\n  }\n");
  const pid_t pid = SpawnNginx(p, http, {port});
  if (pid <= 0) return;
  pid_ = pid;
  port_ = port;
}

}  // namespace modeldist::testing
