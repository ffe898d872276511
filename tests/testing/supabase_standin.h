// File: supabase_standin.h
//
// The Supabase Storage stand-in (tests/node/supabase_standin.mjs: the REST and TUS API of
// supabase/storage in standard-library node, proven against the official storage-js and
// tus-js-client by tests/node/supabase_standin_check.mjs) on 127.0.0.1, for the Supabase
// origin's tests: a real server that checks the HS256 service_role key, answers errors in
// Supabase's shape (HTTP 400 with the real status as a string in a JSON body), serves ranges
// and signed URLs, and keeps TUS uploads on disk. Its data lives in a scratch directory; the
// destructor stops it by its PID.
#ifndef MODELDIST_TESTS_TESTING_SUPABASE_STANDIN_H_
#define MODELDIST_TESTS_TESTING_SUPABASE_STANDIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {

// One TUS upload the stand-in holds (its tus/<id>.json).
struct StandinTusUpload {
  std::string bucket;
  std::string name;
  int64_t offset = 0;  // bytes stored so far
  int64_t size = 0;    // Upload-Length
  bool done = false;   // the object was stored
};

class SupabaseStandin {
 public:
  // The HS256 secret the stand-in verifies every JWT with.
  static constexpr const char* kJwtSecret = "modeldist-standin-jwt-secret";

  SupabaseStandin() = default;
  ~SupabaseStandin();
  SupabaseStandin(const SupabaseStandin&) = delete;
  SupabaseStandin& operator=(const SupabaseStandin&) = delete;

  // True when node and the stand-in script are there (tests skip otherwise).
  static bool Installed();

  // Mints the service_role key, starts the server on a port of its choosing and waits for
  // its `LISTENING <port>` line.
  ::testing::AssertionResult Start();

  // An HS256 service_role JWT signed with `jwt_secret` (the stand-in's --print-service-key);
  // "" and a test failure when node fails.
  static std::string MintServiceKey(const std::string& jwt_secret);

  // Creates bucket `id` (public or not) over the REST API with the service key.
  ::testing::AssertionResult CreateBucket(const std::string& id, bool is_public);

  // The project URL, http://127.0.0.1:<port> (the API is under /storage/v1).
  std::string url() const;
  const std::string& service_key() const { return service_key_; }
  // Every TUS upload the stand-in holds, finished ones included.
  std::vector<StandinTusUpload> TusUploads() const;
  // The server's output, for failure messages.
  std::string Log() const;

 private:
  ScratchDir dir_;
  std::string service_key_;
  int port_ = 0;
  ChildProcess node_;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_SUPABASE_STANDIN_H_
