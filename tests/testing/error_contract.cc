#include "tests/testing/error_contract.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "modeldist/v1/resources.pb.h"

#ifndef MODELDIST_SOURCE_DIR
#error "MODELDIST_SOURCE_DIR must name the source tree (tests/testing/CMakeLists.txt)"
#endif

namespace modeldist::testing {
namespace {

// gRPC's code names, by code (OK is 0 and is never an error).
constexpr absl::string_view kCodeNames[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

bool IsCodeName(absl::string_view name) {
  return name != "OK" &&
         std::find(std::begin(kCodeNames), std::end(kCodeNames), name) != std::end(kCodeNames);
}

std::string CodeName(grpc::StatusCode code) {
  const int i = static_cast<int>(code);
  return i >= 0 && i < static_cast<int>(std::size(kCodeNames)) ? std::string(kCodeNames[i])
                                                               : absl::StrCat("CODE_", i);
}

struct ErrorList {
  std::set<CodeReason> errors;
  std::set<std::string> codes_without_reason;
};

// One comment line of a block: its text after "//" and one space.
struct CommentLine {
  std::string text;
  int line_number;
};

// Adds one bullet ("CODE: text (REASON, ...) ...") to `out`.
absl::Status AddBullet(const std::string& bullet, const std::string& where, int line_number,
                       ErrorList* out) {
  const size_t colon = bullet.find(':');
  const std::string code = colon == std::string::npos ? "" : bullet.substr(0, colon);
  if (!IsCodeName(code)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ":", line_number, ": an error bullet must start with a gRPC code and ':', got \"",
        bullet.substr(0, 40), "\""));
  }
  static const std::regex kReason(R"(\b[A-Z][A-Z0-9]*(_[A-Z0-9]+)+\b)");
  bool any = false;
  int depth = 0;
  std::string inside;
  for (char c : bullet.substr(colon + 1)) {
    if (c == '(' && depth++ == 0) continue;
    if (c == ')' && depth > 0 && --depth == 0) {
      for (std::sregex_iterator it(inside.begin(), inside.end(), kReason), end; it != end; ++it) {
        out->errors.emplace(code, it->str());
        any = true;
      }
      inside.clear();
      continue;
    }
    if (depth > 0) inside.push_back(c);
  }
  if (!any) out->codes_without_reason.insert(code);
  return absl::OkStatus();
}

// Parses the bullets that follow comment line `header` of `block`.
absl::Status ParseBullets(const std::vector<CommentLine>& block, size_t header,
                          const std::string& where, ErrorList* out) {
  std::string bullet;
  int bullet_line = 0;
  for (size_t i = header + 1; i <= block.size(); ++i) {
    const bool more = i < block.size();
    const std::string& text = more ? block[i].text : "";
    if (more && !bullet.empty() && absl::StartsWith(text, "  ")) {
      absl::StrAppend(&bullet, " ", absl::StripAsciiWhitespace(text));
      continue;
    }
    if (!bullet.empty()) {
      if (absl::Status s = AddBullet(bullet, where, bullet_line, out); !s.ok()) return s;
      bullet.clear();
    }
    if (!more || !absl::StartsWith(text, "* ")) break;
    bullet = text.substr(2);
    bullet_line = block[i].line_number;
  }
  return absl::OkStatus();
}

// The index of the line of `block` that is `header` (or starts with it and a space).
std::optional<size_t> FindHeader(const std::vector<CommentLine>& block, absl::string_view header) {
  for (size_t i = 0; i < block.size(); ++i) {
    if (block[i].text == header || absl::StartsWith(block[i].text, absl::StrCat(header, " "))) {
      return i;
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<ErrorContract> ErrorContract::Parse(
    const std::map<std::string, std::string>& protos) {
  ErrorContract contract;
  for (const auto& [where, text] : protos) {
    std::string package;
    std::string service;
    ErrorList every_rpc, every_unary_rpc;
    std::vector<CommentLine> block;
    int line_number = 0;
    for (absl::string_view raw : absl::StrSplit(text, '\n')) {
      ++line_number;
      const absl::string_view line = absl::StripAsciiWhitespace(raw);
      if (absl::StartsWith(line, "//")) {
        absl::string_view comment = line.substr(2);
        if (absl::StartsWith(comment, " ")) comment.remove_prefix(1);
        block.push_back({std::string(comment), line_number});
        continue;
      }
      if (absl::StartsWith(line, "package ")) {
        package = std::string(absl::StripSuffix(line.substr(8), ";"));
      } else if (absl::StartsWith(line, "service ")) {
        service = std::string(absl::StripAsciiWhitespace(
            absl::StripSuffix(absl::StripSuffix(line.substr(8), "{"), " ")));
        every_rpc = {};
        every_unary_rpc = {};
        if (auto h = FindHeader(block, "Errors of every rpc:")) {
          MD_RETURN_IF_ERROR(ParseBullets(block, *h, where, &every_rpc));
        }
        if (auto h = FindHeader(block, "Errors of every unary rpc:")) {
          MD_RETURN_IF_ERROR(ParseBullets(block, *h, where, &every_unary_rpc));
        }
      } else if (absl::StartsWith(line, "rpc ")) {
        const absl::string_view rest = line.substr(4);
        DeclaredRpc rpc;
        rpc.path = absl::StrCat("/", package, ".", service, "/", rest.substr(0, rest.find('(')));
        rpc.unary = !absl::StrContains(line, "(stream ");
        std::optional<size_t> h = FindHeader(block, "Errors:");
        if (!h.has_value()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ":", line_number, ": rpc ", rpc.path,
                           " has no \"Errors:\" in its comment (write \"Errors: only those of "
                           "every rpc.\" when it has none of its own)"));
        }
        ErrorList own;
        MD_RETURN_IF_ERROR(ParseBullets(block, *h, where, &own));
        for (const ErrorList* list : {&own, &every_rpc, rpc.unary ? &every_unary_rpc : nullptr}) {
          if (list == nullptr) continue;
          rpc.errors.insert(list->errors.begin(), list->errors.end());
          rpc.codes_without_reason.insert(list->codes_without_reason.begin(),
                                          list->codes_without_reason.end());
        }
        contract.rpcs_[rpc.path] = std::move(rpc);
      }
      block.clear();
    }
  }
  return contract;
}

std::string SourceDir() { return MODELDIST_SOURCE_DIR; }

std::vector<std::string> ErrorContract::SourceProtoFiles() {
  std::vector<std::string> files;
  const std::filesystem::path dir = std::filesystem::path(SourceDir()) / "proto/modeldist/v1";
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".proto") files.push_back(it->path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

const ErrorContract& ErrorContract::OfSourceTree() {
  static const ErrorContract* const contract = [] {
    std::map<std::string, std::string> protos;
    absl::Status read = absl::OkStatus();
    for (const std::string& path : SourceProtoFiles()) {
      absl::StatusOr<std::string> text = ReadFileToString(path);
      if (!text.ok()) read = text.status();
      protos[std::filesystem::path(path).filename().string()] = text.value_or("");
    }
    absl::StatusOr<ErrorContract> parsed = read.ok() ? Parse(protos) : read;
    if (!parsed.ok() || parsed->rpcs().empty()) {
      // Every later check would be meaningless; stop loudly instead.
      std::cerr << "cannot read the errors the protos declare from " << MODELDIST_SOURCE_DIR << ": "
                << (parsed.ok() ? "no rpcs found" : parsed.status().ToString()) << "\n";
      std::abort();
    }
    return new ErrorContract(*std::move(parsed));
  }();
  return *contract;
}

std::set<std::string> ErrorContract::AllReasons() const {
  std::set<std::string> reasons;
  for (const auto& [path, rpc] : rpcs_) {
    for (const CodeReason& error : rpc.errors) reasons.insert(error.second);
  }
  return reasons;
}

std::string ErrorContract::Problem(absl::string_view method, const grpc::Status& status) const {
  if (status.ok() || !absl::StartsWith(method, "/modeldist.v1.")) return "";
  auto rpc = rpcs_.find(std::string(method));
  if (rpc == rpcs_.end()) return absl::StrCat(method, " is not an rpc of the protos");
  if (status.error_details().empty()) return "";  // gRPC's own answer
  const std::string code = CodeName(status.error_code());
  const std::string reason = ReasonOf(status);
  if (reason.empty()) {
    return absl::StrCat(method, " answered ", code, " without an ErrorInfo reason (\"",
                        status.error_message(), "\"); every error must carry one");
  }
  if (rpc->second.errors.count({code, reason}) == 0) {
    return absl::StrCat(method, " answered ", code, " with reason ", reason, " (\"",
                        status.error_message(), "\"), which its proto comment does not declare");
  }
  return "";
}

std::string ReasonOf(const grpc::Status& status) {
  v1::RpcStatus details;
  if (!details.ParseFromString(status.error_details())) return "";
  for (const auto& any : details.details()) {
    v1::ErrorInfo info;
    if (any.type_url() == kErrorInfoPayload && info.ParseFromString(any.value())) {
      return info.reason();
    }
  }
  return "";
}

namespace {

class ErrorContractInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ErrorContractInterceptor(std::string method) : method_(std::move(method)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_STATUS)) {
      const std::string problem =
          ErrorContract::OfSourceTree().Problem(method_, *methods->GetRecvStatus());
      if (!problem.empty()) ADD_FAILURE() << problem;
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
};

class ErrorContractInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    return new ErrorContractInterceptor(info->method() == nullptr ? "" : info->method());
  }
};

}  // namespace

std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
ErrorContractInterceptors() {
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> out;
  out.push_back(std::make_unique<ErrorContractInterceptorFactory>());
  return out;
}

}  // namespace modeldist::testing
