#include "tests/testing/swift_s3_server.h"

#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/http/http.h"
#include "storage/origin/s3_origin.h"

namespace modeldist::testing {
namespace {

::testing::AssertionResult Run(const std::vector<std::string>& args, const std::string& log) {
  ChildProcess child;
  SpawnOptions options;
  options.stdout_path = log;
  options.append = true;
  if (!child.Start(args, options)) return ::testing::AssertionFailure() << "cannot run " << args[0];
  const std::optional<int> status = child.Wait(std::chrono::seconds(60));
  if (!status.has_value() || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return ::testing::AssertionFailure()
           << args[0] << " " << args[1]
           << " failed: " << (status.has_value() ? DescribeExit(*status) : "timed out");
  }
  return ::testing::AssertionSuccess();
}

// Debian installs Swift and memcached here (tools/install-deps.sh).
constexpr const char* kBin = "/usr/bin/";

// Writes the account, container and object rings (argv: swift_dir, then name port pairs), one
// device each on 127.0.0.1, with Swift's own RingBuilder: what `swift-ring-builder create 6 1
// 1`, `add r1z1-127.0.0.1:PORT/d1 100` and `rebalance` do, in one Python start instead of
// nine (about 10 s less per start on a busy machine).
constexpr const char* kMakeRings = R"(import sys
from swift.common.ring import RingBuilder
for name, port in zip(sys.argv[2::2], sys.argv[3::2]):
    builder = RingBuilder(6, 1, 1)
    builder.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1',
                     'port': int(port), 'device': 'd1', 'weight': 100})
    builder.rebalance()
    builder.get_ring().save('%s/%s.ring.gz' % (sys.argv[1], name))
)";

// The [DEFAULT] lines every Swift server shares. Swift started as root switches to `user`
// ("swift" unless told), which could not reach our scratch directory: stay who we are.
std::string CommonConf(const std::string& etc, int port) {
  const passwd* me = ::getpwuid(::geteuid());
  return absl::StrCat("[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = ", port,
                      "\nworkers = 0\nswift_dir = ", etc,
                      "\nlog_level = WARNING\nuser = ", me != nullptr ? me->pw_name : "root", "\n");
}

}  // namespace

bool SwiftS3Server::Installed() {
  for (const char* program : {"swift-proxy-server", "swift-object-server", "swift-container-server",
                              "swift-account-server", "python3", "memcached"}) {
    if (!std::filesystem::exists(absl::StrCat(kBin, program))) return false;
  }
  return true;
}

SwiftS3Server::~SwiftS3Server() {
  // The proxy first, then the servers behind it.
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) (*it)->KillAndReap();
}

std::string SwiftS3Server::endpoint() const {
  return absl::StrCat("http://127.0.0.1:", proxy_port_);
}

std::string SwiftS3Server::Logs() const {
  std::string out;
  for (const char* name : {"memcached", "account", "container", "object", "proxy", "setup"}) {
    absl::StrAppend(&out, "--- ", name, ":\n",
                    ReadFileToString(dir_.Join(absl::StrCat("log/", name, ".log"))).value_or(""));
  }
  return out;
}

::testing::AssertionResult SwiftS3Server::Start(const std::string& bucket) {
  ::testing::AssertionResult started = ::testing::AssertionFailure();
  // A port taken between FreePort and the bind makes a server exit: try other ports.
  for (int attempt = 0; attempt < 3 && !started; ++attempt) started = TryStart();
  if (!started) return started << "\n" << Logs();

  auto origin = origin::S3Origin::Create({.name = "swift",
                                          .endpoint = endpoint(),
                                          .bucket = bucket,
                                          .region = kRegion,
                                          .credentials = {kAccessKey, kSecret, ""}});
  if (!origin.ok()) return ::testing::AssertionFailure() << origin.status();
  const absl::Status created = (*origin)->CreateBucket();
  if (!created.ok()) return ::testing::AssertionFailure() << created << "\n" << Logs();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult SwiftS3Server::TryStart() {
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) (*it)->KillAndReap();
  children_.clear();
  const std::string w = dir_.path();
  std::filesystem::remove_all(w + "/etc");
  std::filesystem::remove_all(w + "/srv");
  for (const char* sub : {"/etc", "/srv/d1", "/log"}) {
    if (!MakeDirs(w + sub).ok()) return ::testing::AssertionFailure() << "mkdir " << w << sub;
  }
  const std::string etc = w + "/etc";
  const std::string setup_log = w + "/log/setup.log";
  auto write_file = [](const std::string& path, const std::string& text) {
    return WriteFileAtomically(path, text, 0644);
  };
  if (!write_file(etc + "/swift.conf",
                  "[swift-hash]\nswift_hash_path_suffix = t\nswift_hash_path_prefix = t\n"
                  "[storage-policy:0]\nname = Policy-0\ndefault = yes\n")
           .ok()) {
    return ::testing::AssertionFailure() << "cannot write swift.conf";
  }

  // memcached does not set SO_REUSEPORT: a free port, retried if taken before it binds.
  const int memcached_port = FreePort();
  ports_.clear();
  for (int i = 0; i < 4; ++i) ports_.emplace_back();
  proxy_port_ = ports_[0].port();
  struct Server {
    const char* name;
    int port;
  };
  std::vector<Server> servers = {
      {"account", ports_[1].port()}, {"container", ports_[2].port()}, {"object", ports_[3].port()}};
  for (const Server& s : servers) {
    if (s.port == 0 || memcached_port == 0 || proxy_port_ == 0) {
      return ::testing::AssertionFailure() << "no free port on 127.0.0.1";
    }
  }
  std::vector<std::string> make_rings = {absl::StrCat(kBin, "python3"), "-c", kMakeRings, etc};
  for (const Server& s : servers) {
    make_rings.push_back(s.name);
    make_rings.push_back(absl::StrCat(s.port));
  }
  ::testing::AssertionResult rings = Run(make_rings, setup_log);
  if (!rings) return rings;
  for (const Server& s : servers) {
    const std::string conf =
        absl::StrCat(CommonConf(etc, s.port), "devices = ", w,
                     "/srv\nmount_check = false\n[pipeline:main]\npipeline = ", s.name,
                     "-server\n[app:", s.name, "-server]\nuse = egg:swift#", s.name, "\n");
    if (!write_file(absl::StrCat(etc, "/", s.name, "-server.conf"), conf).ok()) {
      return ::testing::AssertionFailure() << "cannot write " << s.name << "-server.conf";
    }
  }
  // workers = 0: one process per server, so stopping it by its PID stops it all.
  const std::string proxy_conf = absl::StrCat(
      CommonConf(etc, proxy_port_),
      "[pipeline:main]\npipeline = catch_errors gatekeeper healthcheck proxy-logging "
      "listing_formats cache s3api tempauth copy slo dlo proxy-logging proxy-server\n",
      "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n",
      "[filter:catch_errors]\nuse = egg:swift#catch_errors\n",
      "[filter:gatekeeper]\nuse = egg:swift#gatekeeper\n",
      "[filter:healthcheck]\nuse = egg:swift#healthcheck\n",
      "[filter:proxy-logging]\nuse = egg:swift#proxy_logging\n",
      "[filter:listing_formats]\nuse = egg:swift#listing_formats\n",
      "[filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:", memcached_port,
      "\n", "[filter:s3api]\nuse = egg:swift#s3api\nlocation = ", kRegion, "\n",
      "[filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = testing .admin\n",
      "[filter:copy]\nuse = egg:swift#copy\n", "[filter:slo]\nuse = egg:swift#slo\n",
      "[filter:dlo]\nuse = egg:swift#dlo\n");
  if (!write_file(etc + "/proxy-server.conf", proxy_conf).ok()) {
    return ::testing::AssertionFailure() << "cannot write proxy-server.conf";
  }

  std::vector<std::string> memcached = {absl::StrCat(kBin, "memcached"), "-l", "127.0.0.1", "-p",
                                        absl::StrCat(memcached_port),    "-U", "0"};
  if (::geteuid() == 0) {
    memcached.push_back("-u");  // memcached refuses to run as root unless told which user
    memcached.push_back("root");
  }
  if (!Spawn("memcached", memcached)) return ::testing::AssertionFailure() << "memcached";
  for (const Server& s : servers) {
    if (!Spawn(s.name, {absl::StrCat(kBin, "swift-", s.name, "-server"),
                        absl::StrCat(etc, "/", s.name, "-server.conf"), "--verbose"})) {
      return ::testing::AssertionFailure() << s.name;
    }
  }
  // The proxy's /healthcheck passes before the servers behind it listen, and a request that
  // reaches it first gets 503 (seen under parallel tests): wait until each one answers HTTP.
  for (const Server& s : servers) {
    ::testing::AssertionResult up =
        WaitUntilAnswering(absl::StrCat("http://127.0.0.1:", s.port, "/"), /*need_200=*/false);
    if (!up) return up << " (" << s.name << " server)";
  }
  return SpawnProxy();
}

::testing::AssertionResult SwiftS3Server::Spawn(const std::string& log,
                                                const std::vector<std::string>& args) {
  auto child = std::make_unique<ChildProcess>();
  SpawnOptions options;
  options.stdout_path = dir_.Join(absl::StrCat("log/", log, ".log"));
  options.append = true;
  ::testing::AssertionResult ok = child->Start(args, options);
  children_.push_back(std::move(child));
  return ok;
}

::testing::AssertionResult SwiftS3Server::SpawnProxy() {
  const std::string etc = dir_.Join("etc");
  if (!Spawn("proxy",
             {absl::StrCat(kBin, "swift-proxy-server"), etc + "/proxy-server.conf", "--verbose"})) {
    return ::testing::AssertionFailure() << "proxy";
  }
  // Ready once /healthcheck answers 200 on the proxy.
  return WaitUntilAnswering(absl::StrCat(endpoint(), "/healthcheck"), /*need_200=*/true);
}

::testing::AssertionResult SwiftS3Server::WaitUntilAnswering(const std::string& url,
                                                             bool need_200) {
  http::HttpRequest probe;
  probe.url = url;
  probe.connect_timeout = absl::Seconds(1);
  probe.total_timeout = absl::Seconds(2);
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    // A child that exited could not bind.
    for (const auto& child : children_) {
      if (child->Poll().has_value()) {
        return ::testing::AssertionFailure() << "a Swift process exited at start";
      }
    }
    std::string body;
    absl::StatusOr<http::HttpResponse> answer = http::PerformToString(probe, &body);
    if (answer.ok() && (need_200 ? answer->status == 200 : answer->status != 0)) {
      return ::testing::AssertionSuccess();
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return ::testing::AssertionFailure() << url << " did not answer in 60 s";
}

void SwiftS3Server::StopProxy() {
  if (!children_.empty()) {
    children_.back()->KillAndReap();
    children_.pop_back();
  }
}

::testing::AssertionResult SwiftS3Server::StartProxy() { return SpawnProxy(); }

std::string SwiftS3Server::GetObject(const std::string& bucket, const std::string& key) const {
  auto origin = origin::S3Origin::Create({.name = "swift",
                                          .endpoint = endpoint(),
                                          .bucket = bucket,
                                          .region = kRegion,
                                          .credentials = {kAccessKey, kSecret, ""}});
  if (!origin.ok()) return origin.status().ToString();
  std::string out;
  const absl::Status got = (*origin)->Get(
      key, 0, -1,
      [&out](absl::string_view piece) {
        out.append(piece.data(), piece.size());
        return absl::OkStatus();
      },
      nullptr);
  return got.ok() ? out : got.ToString();
}

}  // namespace modeldist::testing
