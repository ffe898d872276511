#include "services/http_server/listener.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <iostream>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/status.h"
#include "services/http_server/http_error.h"

namespace modeldist::http_server {
namespace {

// What the listener keeps of one request between libmicrohttpd's calls.
struct Exchange {
  Request request;
  bool too_big = false;   // the body passed max_body_bytes: the rest is dropped, 413
  bool answered = false;  // a response is queued already
  Completion completion = {.start = absl::Now()};  // what the hook is told
  // Body bytes handed to the connection; shared with the BodyState, which the response owns.
  std::shared_ptr<std::atomic<int64_t>> sent = std::make_shared<std::atomic<int64_t>>(0);
  int64_t file_bytes = 0;  // a file body's size: sent whole when the request completes
};

// A reader's body on its way out.
struct BodyState {
  BodyReader reader;
  std::string path;  // for the log line when it fails
  std::shared_ptr<std::atomic<int64_t>> sent;
};

std::string PeerOf(MHD_Connection* connection) {
  const MHD_ConnectionInfo* info =
      MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (info == nullptr || info->client_addr == nullptr) return "";
  char host[INET6_ADDRSTRLEN] = {};
  const sockaddr* addr = info->client_addr;
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return absl::StrCat(host, ":", ntohs(in->sin_port));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return absl::StrCat("[", host, "]:", ntohs(in6->sin6_port));
  }
  return "";
}

MHD_Result CollectHeader(void* cls, MHD_ValueKind, const char* key, const char* value) {
  auto* headers = static_cast<absl::flat_hash_map<std::string, std::string>*>(cls);
  std::string name = absl::AsciiStrToLower(key);
  auto [it, inserted] = headers->try_emplace(std::move(name), value == nullptr ? "" : value);
  // A repeated header is one list (RFC 9110 5.3).
  if (!inserted && value != nullptr) absl::StrAppend(&it->second, ", ", value);
  return MHD_YES;
}

ssize_t ReadBody(void* cls, uint64_t pos, char* buf, size_t max) {
  auto* body = static_cast<BodyState*>(cls);
  absl::StatusOr<size_t> got = body->reader(static_cast<int64_t>(pos), buf, max);
  if (got.ok() && *got > 0) {
    body->sent->fetch_add(static_cast<int64_t>(*got), std::memory_order_relaxed);
    return static_cast<ssize_t>(*got);
  }
  std::cerr << "modeldist-server: http: the body of " << body->path << " was cut at byte " << pos
            << ": " << (got.ok() ? "it ended early" : got.status().ToString()) << "\n";
  return MHD_CONTENT_READER_END_WITH_ERROR;
}

void FreeBody(void* cls) { delete static_cast<BodyState*>(cls); }

MHD_Result Queue(MHD_Connection* connection, Response response, Exchange* exchange,
                 size_t block_bytes) {
  exchange->completion.route = std::move(response.route);
  exchange->completion.device_id = std::move(response.device_id);
  exchange->completion.status = response.status;
  MHD_Response* out = nullptr;
  if (response.file.valid()) {
    const int fd = response.file.Release();  // libmicrohttpd closes it with the response
    out = MHD_create_response_from_fd_at_offset64(static_cast<uint64_t>(response.body_size), fd,
                                                  static_cast<uint64_t>(response.file_offset));
    if (out == nullptr) ::close(fd);
    if (exchange->request.method != "HEAD") exchange->file_bytes = response.body_size;
  } else if (response.reader) {
    auto* body = new BodyState{std::move(response.reader), exchange->request.path, exchange->sent};
    out = MHD_create_response_from_callback(static_cast<uint64_t>(response.body_size), block_bytes,
                                            &ReadBody, body, &FreeBody);
    if (out == nullptr) delete body;
  } else {
    // The string moves to the response (no copy of the body); freed with it.
    auto* body = new std::string(std::move(response.body));
    const int64_t size = static_cast<int64_t>(body->size());
    out = MHD_create_response_from_buffer_with_free_callback_cls(
        body->size(), body->data(), [](void* cls) { delete static_cast<std::string*>(cls); }, body);
    if (out == nullptr) delete body;
    if (exchange->request.method != "HEAD") *exchange->sent = size;
  }
  if (out == nullptr) return MHD_NO;  // out of memory: libmicrohttpd closes the connection
  for (const auto& [name, value] : response.headers) {
    MHD_add_response_header(out, name.c_str(), value.c_str());
  }
  const MHD_Result queued =
      MHD_queue_response(connection, static_cast<unsigned int>(response.status), out);
  MHD_destroy_response(out);
  return queued;
}

void LogToStderr(void*, const char* format, va_list args) {
  std::fputs("modeldist-server: http: ", stderr);
  std::vfprintf(stderr, format, args);
}

// HOST:PORT, [V6]:PORT -> host and port text.
absl::StatusOr<std::pair<std::string, std::string>> SplitHostPort(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return InvalidArgument("http_listen", "INVALID_FLAG",
                           absl::StrCat("--http-listen \"", listen,
                                        "\" must be HOST:PORT, e.g. 127.0.0.1:8480 or [::1]:0"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, listen.substr(colon + 1));
}

}  // namespace

std::string Request::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

// libmicrohttpd's callbacks, with access to the listener's options and handler.
struct ListenerCallbacks {
  static MHD_Result OnRequest(void* cls, MHD_Connection* connection, const char* url,
                              const char* method, const char*, const char* upload_data,
                              size_t* upload_data_size, void** state) {
    const Listener* listener = static_cast<const Listener*>(cls);
    auto* exchange = static_cast<Exchange*>(*state);
    if (exchange == nullptr) {  // the headers are in; the body (if any) comes next
      if (listener->options_.on_start) listener->options_.on_start();
      exchange = new Exchange;
      *state = exchange;
      exchange->request.method = method;
      exchange->request.path = url;
      exchange->request.peer = PeerOf(connection);
      MHD_get_connection_values(connection, MHD_HEADER_KIND, &CollectHeader,
                                &exchange->request.headers);
      int64_t declared = 0;
      if (absl::SimpleAtoi(exchange->request.Header("content-length"), &declared) &&
          declared > listener->options_.max_body_bytes) {
        exchange->answered = true;  // before reading it: no 100 Continue, the body is not read
        return Queue(connection, TooLarge(listener->options_.max_body_bytes), exchange,
                     listener->options_.body_block_bytes);
      }
      return MHD_YES;
    }
    if (*upload_data_size > 0) {  // a piece of the body
      const size_t piece = *upload_data_size;
      *upload_data_size = 0;
      if (exchange->answered || exchange->too_big) return MHD_YES;
      if (exchange->request.body.size() + piece >
          static_cast<size_t>(listener->options_.max_body_bytes)) {
        exchange->too_big = true;
        exchange->request.body.clear();
        return MHD_YES;
      }
      exchange->request.body.append(upload_data, piece);
      return MHD_YES;
    }
    if (exchange->answered) return MHD_YES;
    exchange->answered = true;
    if (exchange->too_big) {
      return Queue(connection, TooLarge(listener->options_.max_body_bytes), exchange,
                   listener->options_.body_block_bytes);
    }
    return Queue(connection, listener->handler_(exchange->request), exchange,
                 listener->options_.body_block_bytes);
  }

  static void OnCompleted(void* cls, MHD_Connection*, void** state,
                          MHD_RequestTerminationCode how) {
    auto* exchange = static_cast<Exchange*>(*state);
    if (exchange == nullptr) return;
    *state = nullptr;
    const Listener* listener = static_cast<const Listener*>(cls);
    if (listener->options_.on_complete) {
      Completion& done = exchange->completion;
      done.duration = absl::Now() - done.start;
      done.complete = how == MHD_REQUEST_TERMINATED_COMPLETED_OK;
      done.bytes = exchange->sent->load(std::memory_order_relaxed);
      if (done.complete && exchange->file_bytes > 0) done.bytes = exchange->file_bytes;
      listener->options_.on_complete(exchange->request, done);
    }
    delete exchange;
  }
};

absl::StatusOr<std::unique_ptr<Listener>> Listener::Start(const ListenerOptions& options,
                                                          Handler handler) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return InvalidArgument("tls_key_file", "INVALID_FLAG",
                           "--tls-cert and --tls-key must be given together");
  }
  MD_ASSIGN_OR_RETURN(auto host_port, SplitHostPort(options.listen));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host_port.first.c_str(), host_port.second.c_str(), &hints, &found);
      rc != 0) {
    return InvalidArgument("http_listen", "INVALID_FLAG",
                           absl::StrCat("--http-listen ", options.listen, ": ", gai_strerror(rc)));
  }
  sockaddr_storage address{};
  std::memcpy(&address, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);

  auto listener = std::unique_ptr<Listener>(new Listener(options, std::move(handler)));
  unsigned int flags =
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
  if (address.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  std::vector<MHD_OptionItem> items = {
      // First, so that what the options below make libmicrohttpd say goes through it too.
      {MHD_OPTION_EXTERNAL_LOGGER, reinterpret_cast<intptr_t>(&LogToStderr), nullptr},
      {MHD_OPTION_SOCK_ADDR, 0, &address},
      {MHD_OPTION_CONNECTION_LIMIT, options.max_connections, nullptr},
      {MHD_OPTION_CONNECTION_TIMEOUT,
       static_cast<intptr_t>(std::max<int64_t>(1, absl::ToInt64Seconds(options.idle_timeout))),
       nullptr},
      {MHD_OPTION_NOTIFY_COMPLETED, reinterpret_cast<intptr_t>(&ListenerCallbacks::OnCompleted),
       listener.get()},
  };
  if (!options.tls_cert_file.empty()) {
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
      return MakeError(absl::StatusCode::kFailedPrecondition, "TLS_UNSUPPORTED",
                       "this libmicrohttpd has no TLS: serve --http-listen in plain HTTP (no "
                       "--tls-cert) behind a TLS-terminating proxy");
    }
    MD_ASSIGN_OR_RETURN(listener->tls_cert_, ReadFileToString(options.tls_cert_file));
    MD_ASSIGN_OR_RETURN(listener->tls_key_, ReadFileToString(options.tls_key_file));
    flags |= MHD_USE_TLS;
    items.push_back({MHD_OPTION_HTTPS_MEM_CERT, 0, listener->tls_cert_.data()});
    items.push_back({MHD_OPTION_HTTPS_MEM_KEY, 0, listener->tls_key_.data()});
  }
  items.push_back({MHD_OPTION_END, 0, nullptr});
  listener->daemon_ =
      MHD_start_daemon(flags, 0, nullptr, nullptr, &ListenerCallbacks::OnRequest, listener.get(),
                       MHD_OPTION_ARRAY, items.data(), MHD_OPTION_END);
  if (listener->daemon_ == nullptr) {
    return MakeError(absl::StatusCode::kUnavailable, "LISTEN_FAILED",
                     absl::StrCat("cannot serve HTTP on ", options.listen,
                                  " (address in use or not local, or a bad TLS certificate or "
                                  "key? pick another --http-listen port)"));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(listener->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  listener->port_ = info == nullptr ? 0 : info->port;
  return listener;
}

Listener::~Listener() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

}  // namespace modeldist::http_server
