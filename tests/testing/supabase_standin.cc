#include "tests/testing/supabase_standin.h"

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/http/http.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace modeldist::testing {
namespace {

constexpr char kNode[] = "/usr/bin/node";

std::string Script() {
  return absl::StrCat(MODELDIST_SOURCE_DIR, "/tests/node/supabase_standin.mjs");
}

// The stand-in's JSON files, read with protobuf's JSON parser.
std::optional<google::protobuf::Struct> ReadJsonFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  google::protobuf::Struct out;
  if (!text.ok() || !google::protobuf::util::JsonStringToMessage(*text, &out).ok()) {
    return std::nullopt;
  }
  return out;
}

const google::protobuf::Value& Get(const google::protobuf::Struct& object,
                                   const std::string& name) {
  static const auto* empty = new google::protobuf::Value();
  const auto it = object.fields().find(name);
  return it == object.fields().end() ? *empty : it->second;
}

}  // namespace

SupabaseStandin::~SupabaseStandin() {
  // SIGTERM by our own child's PID: the server closes its connections and exits; Wait kills
  // it if it does not within the timeout.
  if (node_.Signal(SIGTERM)) (void)node_.Wait(std::chrono::seconds(5));
}

bool SupabaseStandin::Installed() {
  return std::filesystem::exists(kNode) && std::filesystem::exists(Script());
}

std::string SupabaseStandin::MintServiceKey(const std::string& jwt_secret) {
  ScratchDir dir;
  ChildProcess mint;
  SpawnOptions options{.stdout_path = dir.Join("out"), .stderr_path = dir.Join("err")};
  EXPECT_TRUE(
      mint.Start({kNode, Script(), "--print-service-key", "--jwt-secret", jwt_secret}, options));
  const std::optional<int> exit = mint.Wait(std::chrono::seconds(30));
  const bool ok = exit.has_value() && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0;
  EXPECT_TRUE(ok) << ReadFileToString(dir.Join("err")).value_or("");
  if (!ok) return "";
  return std::string(absl::StripAsciiWhitespace(ReadFileToString(dir.Join("out")).value_or("")));
}

::testing::AssertionResult SupabaseStandin::Start() {
  service_key_ = MintServiceKey(kJwtSecret);
  if (service_key_.empty()) return ::testing::AssertionFailure() << "could not mint the key";
  SpawnOptions options{.stdout_path = dir_.Join("stdout"), .stderr_path = dir_.Join("stderr")};
  // --service-key: the stand-in checks at start that it accepts the key the tests use.
  ::testing::AssertionResult started =
      node_.Start({kNode, Script(), "--root", dir_.Join("root"), "--port", "0", "--jwt-secret",
                   kJwtSecret, "--service-key", service_key_},
                  options);
  if (!started) return started;
  for (int i = 0; i < 200; ++i) {
    absl::string_view out;
    const std::string text = ReadFileToString(dir_.Join("stdout")).value_or("");
    out = text;
    if (absl::ConsumePrefix(&out, "LISTENING ")) {
      const size_t end = out.find('\n');
      if (end != absl::string_view::npos && absl::SimpleAtoi(out.substr(0, end), &port_)) {
        return ::testing::AssertionSuccess();
      }
    }
    if (const std::optional<int> exited = node_.Poll(); exited.has_value()) {
      return ::testing::AssertionFailure() << "the stand-in " << DescribeExit(*exited) << ":\n"
                                           << Log();
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return ::testing::AssertionFailure() << "the stand-in did not print LISTENING in 10 s:\n"
                                       << Log();
}

::testing::AssertionResult SupabaseStandin::CreateBucket(const std::string& id, bool is_public) {
  google::protobuf::Struct body;
  (*body.mutable_fields())["id"].set_string_value(id);
  (*body.mutable_fields())["name"].set_string_value(id);
  (*body.mutable_fields())["public"].set_bool_value(is_public);
  http::HttpRequest request{.method = "POST", .url = absl::StrCat(url(), "/storage/v1/bucket")};
  request.headers = {{"Authorization", absl::StrCat("Bearer ", service_key_)},
                     {"apikey", service_key_},
                     {"Content-Type", "application/json"}};
  (void)google::protobuf::util::MessageToJsonString(body, &request.body);
  std::string answer;
  absl::StatusOr<http::HttpResponse> response = http::PerformToString(request, &answer);
  if (!response.ok()) return ::testing::AssertionFailure() << response.status();
  if (!response->ok()) {
    return ::testing::AssertionFailure()
           << "HTTP " << response->status << ": " << response->error_body;
  }
  return ::testing::AssertionSuccess();
}

std::string SupabaseStandin::url() const { return absl::StrCat("http://127.0.0.1:", port_); }

std::vector<StandinTusUpload> SupabaseStandin::TusUploads() const {
  std::vector<StandinTusUpload> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir_.Join("root/tus"), ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->path().extension() != ".json") continue;
    const std::optional<google::protobuf::Struct> json = ReadJsonFile(it->path().string());
    if (!json.has_value()) continue;
    StandinTusUpload upload;
    upload.bucket = Get(*json, "bucket").string_value();
    upload.name = Get(*json, "name").string_value();
    upload.offset = static_cast<int64_t>(Get(*json, "offset").number_value());
    upload.size = static_cast<int64_t>(Get(*json, "size").number_value());
    upload.done = Get(*json, "done").bool_value();
    out.push_back(upload);
  }
  return out;
}

std::string SupabaseStandin::Log() const {
  return absl::StrCat(ReadFileToString(dir_.Join("stdout")).value_or(""),
                      ReadFileToString(dir_.Join("stderr")).value_or(""));
}

}  // namespace modeldist::testing
