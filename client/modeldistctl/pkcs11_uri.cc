#include "client/modeldistctl/pkcs11_uri.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/modeldistctl/errors.h"

namespace modeldist::ctl {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// RFC 3986 percent-decoding; nullopt for a broken escape.
std::optional<std::string> PercentDecode(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int hi = HexValue(text[i + 1]);
    const int lo = HexValue(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

absl::Status Bad(absl::string_view message) {
  return UsageError(absl::StrCat("--key: not a usable PKCS#11 URI: ", message,
                                 " (expected e.g. pkcs11:token=NAME;object=LABEL, RFC 7512)"));
}

}  // namespace

bool IsPkcs11Uri(absl::string_view key) { return absl::StartsWithIgnoreCase(key, kPkcs11Scheme); }

absl::StatusOr<Pkcs11Uri> ParsePkcs11Uri(absl::string_view text) {
  if (!IsPkcs11Uri(text)) return Bad("it does not start with pkcs11:");
  text.remove_prefix(kPkcs11Scheme.size());
  absl::string_view path = text;
  absl::string_view query;
  if (size_t q = text.find('?'); q != absl::string_view::npos) {
    path = text.substr(0, q);
    query = text.substr(q + 1);
  }
  Pkcs11Uri uri;
  for (absl::string_view part : absl::StrSplit(path, ';', absl::SkipEmpty())) {
    std::vector<absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (kv.size() != 2) return Bad(absl::StrCat("attribute \"", part, "\" has no value"));
    std::optional<std::string> value = PercentDecode(kv[1]);
    if (!value.has_value()) return Bad(absl::StrCat("a broken %-escape in ", kv[0]));
    std::optional<std::string>* slot = nullptr;
    if (kv[0] == "token") slot = &uri.token;
    if (kv[0] == "serial") slot = &uri.serial;
    if (kv[0] == "manufacturer") slot = &uri.manufacturer;
    if (kv[0] == "model") slot = &uri.model;
    if (kv[0] == "object") slot = &uri.object;
    if (kv[0] == "id") slot = &uri.id;
    if (kv[0] == "type") {
      if (*value != "private") return Bad("type must be private (the key that signs)");
      continue;
    }
    if (slot == nullptr) {
      return Bad(absl::StrCat("attribute \"", kv[0],
                              "\" is not supported (token, serial, manufacturer, model, object, "
                              "id, type)"));
    }
    if (slot->has_value()) return Bad(absl::StrCat(kv[0], " is given twice"));
    *slot = std::move(*value);
  }
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::vector<absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (kv[0] == "pin-value") {
      return Bad(
          "pin-value is refused: a PIN in a command line is visible to other users; use "
          "--pin-file or MODELDIST_PKCS11_PIN");
    }
    if (kv[0] != "module-path" || kv.size() != 2) {
      return Bad(absl::StrCat("query attribute \"", kv[0], "\" is not supported (module-path)"));
    }
    std::optional<std::string> value = PercentDecode(kv[1]);
    if (!value.has_value()) return Bad("a broken %-escape in module-path");
    uri.module_path = std::move(*value);
  }
  if (!uri.object.has_value() && !uri.id.has_value()) {
    return Bad("it names no key: give object=LABEL or id=%XX...");
  }
  return uri;
}

}  // namespace modeldist::ctl
