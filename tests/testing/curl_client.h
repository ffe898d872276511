// File: curl_client.h
//
// The curl program, run as a child (ChildProcess), as CDNs' and apps' requests are checked
// against the HTTP listener: a real client's parsing of status lines, headers and bodies, not
// the test's own. Headers and body come back from files curl writes.
#ifndef MODELDIST_TESTS_TESTING_CURL_CLIENT_H_
#define MODELDIST_TESTS_TESTING_CURL_CLIENT_H_

#include <optional>
#include <string>
#include <vector>

namespace modeldist::testing {

struct CurlResult {
  int exit_code = -1;   // curl's: 0 ok, 18 a short body, 52 no reply, ...
  int status = 0;       // the last response's HTTP status, 0 when none
  std::string headers;  // the last response's header block, as received
  std::string body;
  std::string stderr_text;

  // The value of header `name` (any case) of the last response; "" when absent.
  std::string Header(const std::string& name) const { return Find(name).value_or(""); }
  bool HasHeader(const std::string& name) const { return Find(name).has_value(); }

 private:
  std::optional<std::string> Find(const std::string& name) const;
};

// Runs `curl -sS <args...> <url>` with a 60 s limit; `args` are options such as
// {"-H", "Range: bytes=0-9"}, {"-I"} or {"-X", "POST", "--data", "{}"}.
CurlResult Curl(const std::string& url, const std::vector<std::string>& args = {});

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_CURL_CLIENT_H_
