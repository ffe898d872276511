// File: nginx_server.h
//
// Debian's nginx-light serving `<prefix>/www` on 127.0.0.1 from its own prefix, in the
// foreground (`daemon off`) so that the test owns its PID and stops it: the real web server
// the HTTP source and the HTTP origin are tested against. /norange/ serves the same files with
// byte ranges turned off (a Range-ignoring mirror).
#ifndef MODELDIST_TESTS_TESTING_NGINX_SERVER_H_
#define MODELDIST_TESTS_TESTING_NGINX_SERVER_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace modeldist::testing {

// Starts Debian's nginx in the foreground from `prefix` (which has logs/ and tmp/): one worker
// (as root, running as root: `nobody` cannot read a 0700 scratch prefix), its error log in
// logs/error.log, temp files under tmp/, and `http_block` as the inside of its http {} block.
// Returns its PID once each of `ports` accepts connections; -1 when nginx did not get there
// (it exits when a port is taken: pick others and call again). Shared by the test servers
// built on nginx (NginxServer, NginxCache).
pid_t SpawnNginx(const std::string& prefix, const std::string& http_block,
                 const std::vector<int>& ports);

class NginxServer {
 public:
  // With `tls`, also serves HTTPS on tls_port() with a fresh self-signed certificate for
  // 127.0.0.1, written to ca_file().
  NginxServer(const std::string& prefix, bool tls);
  ~NginxServer();
  NginxServer(const NginxServer&) = delete;
  NginxServer& operator=(const NginxServer&) = delete;

  // 0 when nginx could not start.
  int port() const { return port_; }
  int tls_port() const { return tls_port_; }
  std::string ca_file() const { return prefix_ + "/cert.pem"; }
  std::string www() const { return prefix_ + "/www"; }
  // http://127.0.0.1:<port><path>
  std::string Url(const std::string& path) const;
  // The error log, for failure messages.
  std::string ErrorLog() const;

 private:
  void TryStart(int port, int tls_port);

  const std::string prefix_;
  const bool tls_;
  pid_t pid_ = -1;
  int port_ = 0;
  int tls_port_ = 0;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_NGINX_SERVER_H_
