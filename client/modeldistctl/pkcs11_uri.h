// File: pkcs11_uri.h
//
// The subset of RFC 7512 PKCS#11 URIs that names one key in one token, as `--key` takes it:
//   pkcs11:token=NAME;object=LABEL            (path attributes, `;`-separated)
//   pkcs11:token=NAME;id=%01%02;type=private  (id is bytes, percent-encoded)
//   pkcs11:serial=0123;object=L?module-path=/usr/lib/softhsm/libsofthsm2.so
// Path attributes: token, serial, manufacturer, model (which token), object, id (which key),
// type (private or absent). Query attributes: module-path. `pin-value` is refused: a PIN on
// the command line is visible to every user of the machine (ps); use --pin-file or the
// environment. Other attributes are refused rather than ignored, since an attribute that is
// ignored could select a different token or key than the user meant.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_PKCS11_URI_H_
#define MODELDIST_CLIENT_MODELDISTCTL_PKCS11_URI_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist::ctl {

inline constexpr absl::string_view kPkcs11Scheme = "pkcs11:";

struct Pkcs11Uri {
  // Token attributes (CK_TOKEN_INFO); unset ones match any token.
  std::optional<std::string> token;
  std::optional<std::string> serial;
  std::optional<std::string> manufacturer;
  std::optional<std::string> model;
  // Key attributes (CKA_LABEL, CKA_ID); at least one of them is set.
  std::optional<std::string> object;
  std::optional<std::string> id;
  // The module to load, when the URI names it.
  std::optional<std::string> module_path;
};

// True when `key` is meant as a PKCS#11 URI rather than a file name.
bool IsPkcs11Uri(absl::string_view key);

// Parses `text`; a usage error saying what is wrong otherwise (never echoing a pin-value).
absl::StatusOr<Pkcs11Uri> ParsePkcs11Uri(absl::string_view text);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_PKCS11_URI_H_
