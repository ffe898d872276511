#include "tests/testing/fault_proxy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace modeldist::testing {
namespace {

// Heads larger than this are not HTTP a test sends or nginx answers: give up on them.
constexpr size_t kMaxHead = 64 * 1024;

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    // MSG_NOSIGNAL: a peer that went away is an error here, not a SIGPIPE for the test.
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads from `fd` into `buf` until it holds a whole head (up to and including the blank
// line); `*head_end` is where what follows it starts. False on EOF, error or a huge head.
bool ReadHead(int fd, std::string* buf, size_t* head_end) {
  char chunk[16 * 1024];
  for (;;) {
    if (size_t at = buf->find("\r\n\r\n"); at != std::string::npos) {
      *head_end = at + 4;
      return true;
    }
    if (buf->size() > kMaxHead) return false;
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf->append(chunk, static_cast<size_t>(n));
  }
}

// The head's lines without the blank line that ends it: the start line, then the fields.
std::vector<std::string> HeadLines(absl::string_view head) {
  absl::ConsumeSuffix(&head, "\r\n\r\n");
  return absl::StrSplit(head, "\r\n");
}

std::string JoinHead(const std::vector<std::string>& lines) {
  return absl::StrCat(absl::StrJoin(lines, "\r\n"), "\r\n\r\n");
}

bool IsField(absl::string_view line, absl::string_view name) {
  return line.size() > name.size() && line[name.size()] == ':' &&
         absl::EqualsIgnoreCase(line.substr(0, name.size()), name);
}

// The value of field `name` (the first), or "" when absent.
std::string FieldValue(absl::string_view head, absl::string_view name) {
  for (const std::string& line : HeadLines(head)) {
    if (IsField(line, name)) {
      return std::string(
          absl::StripAsciiWhitespace(absl::string_view(line).substr(name.size() + 1)));
    }
  }
  return "";
}

// The request head with `Connection: close` as its only connection option: the upstream then
// ends its response by closing, which is all the framing the relay has to understand.
std::string ForceClose(absl::string_view head) {
  std::vector<std::string> lines;
  for (std::string& line : HeadLines(head)) {
    if (IsField(line, "connection") || IsField(line, "keep-alive") ||
        IsField(line, "proxy-connection")) {
      continue;
    }
    lines.push_back(std::move(line));
  }
  lines.push_back("Connection: close");
  return JoinHead(lines);
}

// The response head announcing `extra` more bytes than its Content-Length says.
std::string InflateLength(absl::string_view head, int64_t extra) {
  std::vector<std::string> lines = HeadLines(head);
  for (std::string& line : lines) {
    int64_t length = 0;
    if (IsField(line, "content-length") &&
        absl::SimpleAtoi(absl::string_view(line).substr(15), &length)) {
      line = absl::StrCat("Content-Length: ", length + extra);
    }
  }
  return JoinHead(lines);
}

}  // namespace

FaultProxy::FaultProxy(std::string upstream_host, int upstream_port)
    : upstream_host_(std::move(upstream_host)), upstream_port_(upstream_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;  // the kernel picks a free port: no race with other tests
  socklen_t len = sizeof addr;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
    return;
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

FaultProxy::~FaultProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // Wakes every thread blocked on a socket (a stalled relay waits on its client's).
    for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
  }
  if (listen_fd_ >= 0) {
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept() (Linux)
    acceptor_.join();
    ::close(listen_fd_);
  }
  // The acceptor is gone: no connection thread is added any more.
  std::vector<std::thread> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  for (std::thread& t : connections) t.join();
}

void FaultProxy::set_fault(Fault fault) {
  absl::MutexLock lock(&mu_);
  fault_ = fault;
}

Fault FaultProxy::TakeFault() {
  absl::MutexLock lock(&mu_);
  if (fault_.after > 0) {
    --fault_.after;
    return Fault();
  }
  const Fault fault = fault_;
  if (fault_.times > 0 && --fault_.times == 0) fault_ = Fault();
  return fault;
}

bool FaultProxy::Register(int fd) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  open_.insert(fd);
  return true;
}

void FaultProxy::Close(int fd, bool reset) {
  absl::MutexLock lock(&mu_);
  open_.erase(fd);
  if (reset) {
    // Linger on, for 0 s: close() drops what is unsent and sends RST instead of FIN.
    linger no_linger{.l_onoff = 1, .l_linger = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof no_linger);
  }
  ::close(fd);
}

int FaultProxy::ConnectUpstream() {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(upstream_host_.c_str(), std::to_string(upstream_port_).c_str(), &hints,
                    &found) != 0) {
    return -1;
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && !Register(fd)) {
    ::close(fd);
    fd = -1;
  }
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
    Close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  return fd;
}

void FaultProxy::AcceptLoop() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down by the destructor
    }
    if (!Register(fd)) {
      ::close(fd);
      return;
    }
    absl::MutexLock lock(&mu_);
    connections_.emplace_back([this, fd] { Serve(fd); });
  }
}

void FaultProxy::Serve(int client) {
  std::string in;
  size_t head_end = 0;
  if (!ReadHead(client, &in, &head_end)) {
    Close(client);
    return;
  }
  ++requests_;
  const Fault fault = TakeFault();
  if (fault.kind == Fault::kStatus5xx) {
    constexpr absl::string_view kBody = "fault proxy: 503\n";
    SendAll(client, absl::StrCat("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                 "Content-Length: ",
                                 kBody.size(), "\r\nConnection: close\r\n\r\n", kBody));
    Close(client);
    return;
  }

  const int upstream = ConnectUpstream();
  if (upstream < 0) {
    SendAll(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    Close(client);
    return;
  }
  // The request as it came (its body included, when it has one), but for Connection.
  const absl::string_view head = absl::string_view(in).substr(0, head_end);
  int64_t body_left = 0;
  if (!absl::SimpleAtoi(FieldValue(head, "content-length"), &body_left)) body_left = 0;
  body_left -= static_cast<int64_t>(in.size() - head_end);
  int64_t forwarded = 0;  // request body bytes sent upstream
  auto forward = [&](std::string piece) {
    if (fault.kind == Fault::kCorruptRequest && fault.at >= forwarded &&
        fault.at < forwarded + static_cast<int64_t>(piece.size())) {
      piece[static_cast<size_t>(fault.at - forwarded)] ^= 0x01;
    }
    forwarded += static_cast<int64_t>(piece.size());
    return SendAll(upstream, piece);
  };
  bool ok = SendAll(upstream, ForceClose(head)) && forward(in.substr(head_end));
  char buf[64 * 1024];
  while (ok && body_left > 0) {
    const ssize_t n = ::recv(client, buf, std::min<size_t>(sizeof buf, body_left), 0);
    ok = n > 0 && forward(std::string(buf, static_cast<size_t>(n)));
    body_left -= n;
  }

  // The response's head, passed on (with a lying Content-Length for kWrongLength).
  std::string out;
  ok = ok && ReadHead(upstream, &out, &head_end);
  if (ok) {
    std::string response_head = out.substr(0, head_end);
    if (fault.kind == Fault::kWrongLength) response_head = InflateLength(response_head, 1000);
    ok = SendAll(client, response_head);
  }

  // The body, up to the upstream's close, damaged as `fault` says.
  const bool cut =
      fault.kind == Fault::kTruncate || fault.kind == Fault::kStall || fault.kind == Fault::kReset;
  int64_t sent = 0;  // body bytes sent to the client
  std::string piece = ok ? out.substr(head_end) : "";
  while (ok) {
    if (cut) piece.resize(static_cast<size_t>(std::min<int64_t>(piece.size(), fault.at - sent)));
    if (fault.kind == Fault::kCorrupt && fault.at >= sent &&
        fault.at < sent + static_cast<int64_t>(piece.size())) {
      piece[static_cast<size_t>(fault.at - sent)] ^= 0x01;
    }
    ok = SendAll(client, piece);
    sent += static_cast<int64_t>(piece.size());
    piece.clear();
    if (!ok || (cut && sent == fault.at)) break;
    const ssize_t n = ::recv(upstream, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the upstream's response is over
    piece.assign(buf, static_cast<size_t>(n));
  }
  Close(upstream);
  if (ok && sent == fault.at && fault.kind == Fault::kStall) {
    // Nothing more, but the connection stays up: wait for the client (or the destructor)
    // to end it.
    for (;;) {
      const ssize_t n = ::recv(client, buf, sizeof buf, 0);
      if (n <= 0 && !(n < 0 && errno == EINTR)) break;
    }
  }
  Close(client, /*reset=*/ok && sent == fault.at && fault.kind == Fault::kReset);
}

}  // namespace modeldist::testing
