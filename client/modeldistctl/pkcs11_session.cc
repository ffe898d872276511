#include "client/modeldistctl/pkcs11_session.h"

#include <dlfcn.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/modeldistctl/errors.h"
#include "common/status.h"

namespace modeldist::ctl {

constexpr size_t kEd25519PublicKeyBytes = 32;

absl::Status Pkcs11Error(absl::StatusCode code, absl::string_view reason,
                         absl::string_view message) {
  return LocalError(MakeError(code, reason, message));
}

std::string Pkcs11RvName(CK_RV rv) {
  switch (rv) {
    case CKR_PIN_INCORRECT:
      return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED:
      return "CKR_PIN_LOCKED";
    case CKR_PIN_EXPIRED:
      return "CKR_PIN_EXPIRED";
    case CKR_USER_PIN_NOT_INITIALIZED:
      return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_TOKEN_NOT_PRESENT:
      return "CKR_TOKEN_NOT_PRESENT";
    case CKR_DEVICE_REMOVED:
      return "CKR_DEVICE_REMOVED";
    case CKR_DEVICE_ERROR:
      return "CKR_DEVICE_ERROR";
    case CKR_MECHANISM_INVALID:
      return "CKR_MECHANISM_INVALID";
    case CKR_KEY_TYPE_INCONSISTENT:
      return "CKR_KEY_TYPE_INCONSISTENT";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
      return "CKR_KEY_FUNCTION_NOT_PERMITTED";
    case CKR_USER_NOT_LOGGED_IN:
      return "CKR_USER_NOT_LOGGED_IN";
    case CKR_SESSION_HANDLE_INVALID:
      return "CKR_SESSION_HANDLE_INVALID";
    case CKR_TEMPLATE_INCONSISTENT:
      return "CKR_TEMPLATE_INCONSISTENT";
    case CKR_ATTRIBUTE_VALUE_INVALID:
      return "CKR_ATTRIBUTE_VALUE_INVALID";
    case CKR_CURVE_NOT_SUPPORTED:
      return "CKR_CURVE_NOT_SUPPORTED";
    case CKR_GENERAL_ERROR:
      return "CKR_GENERAL_ERROR";
    default:
      return absl::StrFormat("CKR 0x%lx", static_cast<unsigned long>(rv));
  }
}

namespace {

// A CK_UTF8CHAR field of CK_TOKEN_INFO: fixed width, padded with spaces.
std::string Padded(const CK_UTF8CHAR* field, size_t size) {
  std::string text(reinterpret_cast<const char*>(field), size);
  return std::string(absl::StripTrailingAsciiWhitespace(text));
}

bool Matches(const std::optional<std::string>& wanted, const std::string& have) {
  return !wanted.has_value() || *wanted == have;
}

}  // namespace

// The loaded module, initialized; finalized when the last session of it closes. The library
// is never dlclose'd: modules (SoftHSM among them) register atexit handlers and thread-local
// state that must outlive them.
class Pkcs11Module {
 public:
  static absl::StatusOr<std::shared_ptr<Pkcs11Module>> Load(const std::string& path) {
    auto unloadable = [&](absl::string_view why) {
      return Pkcs11Error(absl::StatusCode::kFailedPrecondition, "PKCS11_MODULE_UNLOADABLE",
                         absl::StrCat("PKCS#11 module ", path, ": ", why));
    };
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) return unloadable(::dlerror());
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
    if (get_list == nullptr) return unloadable("it has no C_GetFunctionList: not a PKCS#11 module");
    CK_FUNCTION_LIST_PTR functions = nullptr;
    if (CK_RV rv = get_list(&functions); rv != CKR_OK || functions == nullptr) {
      return unloadable(absl::StrCat("C_GetFunctionList failed: ", Pkcs11RvName(rv)));
    }
    CK_RV rv = functions->C_Initialize(nullptr);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      return unloadable(absl::StrCat("C_Initialize failed: ", Pkcs11RvName(rv)));
    }
    // Already initialized by someone else in this process: theirs to finalize.
    return std::shared_ptr<Pkcs11Module>(new Pkcs11Module(path, functions, rv == CKR_OK));
  }
  ~Pkcs11Module() {
    if (finalize_) f->C_Finalize(nullptr);
  }
  Pkcs11Module(const Pkcs11Module&) = delete;
  Pkcs11Module& operator=(const Pkcs11Module&) = delete;

  const std::string path;
  CK_FUNCTION_LIST_PTR const f;

 private:
  Pkcs11Module(std::string path_in, CK_FUNCTION_LIST_PTR functions, bool finalize)
      : path(std::move(path_in)), f(functions), finalize_(finalize) {}
  const bool finalize_;
};

absl::StatusOr<std::unique_ptr<Pkcs11Session>> Pkcs11Session::Open(const Pkcs11Uri& uri,
                                                                   const Pkcs11Access& access,
                                                                   bool rw) {
  MD_ASSIGN_OR_RETURN(std::shared_ptr<Pkcs11Module> module, Pkcs11Module::Load(access.module_path));
  CK_FUNCTION_LIST_PTR f = module->f;
  CK_ULONG count = 0;
  if (CK_RV rv = f->C_GetSlotList(CK_TRUE, nullptr, &count); rv != CKR_OK) {
    return Pkcs11Error(absl::StatusCode::kFailedPrecondition, "PKCS11_SESSION_FAILED",
                       absl::StrCat("C_GetSlotList: ", Pkcs11RvName(rv)));
  }
  std::vector<CK_SLOT_ID> slots(count);
  if (CK_RV rv = f->C_GetSlotList(CK_TRUE, slots.data(), &count); rv != CKR_OK) {
    return Pkcs11Error(absl::StatusCode::kFailedPrecondition, "PKCS11_SESSION_FAILED",
                       absl::StrCat("C_GetSlotList: ", Pkcs11RvName(rv)));
  }
  slots.resize(count);
  std::vector<std::string> seen;
  std::vector<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>> matching;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (f->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    const std::string label = Padded(info.label, sizeof(info.label));
    seen.push_back(absl::StrCat("\"", label, "\""));
    if (Matches(uri.token, label) &&
        Matches(uri.serial, Padded(info.serialNumber, sizeof(info.serialNumber))) &&
        Matches(uri.manufacturer, Padded(info.manufacturerID, sizeof(info.manufacturerID))) &&
        Matches(uri.model, Padded(info.model, sizeof(info.model)))) {
      matching.emplace_back(slot, info);
    }
  }
  const std::string wanted =
      uri.token.has_value() ? absl::StrCat("\"", *uri.token, "\"") : std::string("the URI names");
  if (matching.empty()) {
    return Pkcs11Error(absl::StatusCode::kNotFound, "PKCS11_TOKEN_NOT_FOUND",
                       absl::StrCat("no token ", wanted, " in ", module->path, " (tokens present: ",
                                    seen.empty() ? "none" : absl::StrJoin(seen, ", "), ")"));
  }
  if (matching.size() > 1) {
    return Pkcs11Error(absl::StatusCode::kFailedPrecondition, "PKCS11_TOKEN_AMBIGUOUS",
                       absl::StrCat(matching.size(), " tokens match ", wanted,
                                    "; name one with token=, serial= in the URI"));
  }
  const auto& [slot, info] = matching.front();
  const std::string label = Padded(info.label, sizeof(info.label));
  CK_FLAGS flags = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
  CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;
  if (CK_RV rv = f->C_OpenSession(slot, flags, nullptr, nullptr, &handle); rv != CKR_OK) {
    return Pkcs11Error(
        absl::StatusCode::kFailedPrecondition, "PKCS11_SESSION_FAILED",
        absl::StrCat("cannot open a session on token \"", label, "\": ", Pkcs11RvName(rv)));
  }
  std::unique_ptr<Pkcs11Session> session(new Pkcs11Session(std::move(module), handle, label));
  MD_RETURN_IF_ERROR(session->Login(info, access.pin));
  return session;
}

Pkcs11Session::Pkcs11Session(std::shared_ptr<Pkcs11Module> module, CK_SESSION_HANDLE handle,
                             std::string label)
    : module_(std::move(module)), handle_(handle), label_(std::move(label)) {}

Pkcs11Session::~Pkcs11Session() {
  if (logged_in_) module_->f->C_Logout(handle_);
  module_->f->C_CloseSession(handle_);
}

CK_FUNCTION_LIST_PTR Pkcs11Session::f() const { return module_->f; }

absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> Pkcs11Session::Find(const Pkcs11Uri& uri,
                                                                  CK_OBJECT_CLASS key_class) const {
  CK_KEY_TYPE key_type = CKK_EC_EDWARDS;
  std::vector<CK_ATTRIBUTE> attrs = {{CKA_CLASS, &key_class, sizeof(key_class)},
                                     {CKA_KEY_TYPE, &key_type, sizeof(key_type)}};
  std::string label = uri.object.value_or("");
  std::string id = uri.id.value_or("");
  if (uri.object.has_value()) attrs.push_back({CKA_LABEL, label.data(), label.size()});
  if (uri.id.has_value()) attrs.push_back({CKA_ID, id.data(), id.size()});
  CK_RV rv = f()->C_FindObjectsInit(handle_, attrs.data(), attrs.size());
  std::vector<CK_OBJECT_HANDLE> found(2);
  CK_ULONG n = 0;
  if (rv == CKR_OK) {
    rv = f()->C_FindObjects(handle_, found.data(), found.size(), &n);
    f()->C_FindObjectsFinal(handle_);
  }
  if (rv != CKR_OK) {
    return Pkcs11Error(absl::StatusCode::kFailedPrecondition, "PKCS11_SESSION_FAILED",
                       absl::StrCat("cannot search token \"", label_, "\": ", Pkcs11RvName(rv)));
  }
  found.resize(n);
  return found;
}

absl::StatusOr<Ed25519PublicKey> Pkcs11Session::PublicKeyOf(CK_OBJECT_HANDLE object,
                                                            absl::string_view what) const {
  CK_ATTRIBUTE attr = {CKA_EC_POINT, nullptr, 0};
  std::string point;
  CK_RV rv = f()->C_GetAttributeValue(handle_, object, &attr, 1);
  if (rv == CKR_OK && attr.ulValueLen != CK_UNAVAILABLE_INFORMATION && attr.ulValueLen < 256) {
    point.resize(attr.ulValueLen);
    attr.pValue = point.data();
    rv = f()->C_GetAttributeValue(handle_, object, &attr, 1);
  } else if (rv == CKR_OK) {
    rv = CKR_ATTRIBUTE_VALUE_INVALID;
  }
  if (rv != CKR_OK) {
    return Pkcs11Error(absl::StatusCode::kFailedPrecondition, "PKCS11_KEY_UNSUITABLE",
                       absl::StrCat(what, ": cannot read its CKA_EC_POINT: ", Pkcs11RvName(rv)));
  }
  absl::string_view raw = point;
  if (raw.size() == kEd25519PublicKeyBytes + 2 && raw[0] == 0x04 &&
      static_cast<size_t>(raw[1]) == kEd25519PublicKeyBytes) {
    raw.remove_prefix(2);
  }
  absl::StatusOr<Ed25519PublicKey> key = Ed25519PublicKey::FromRaw(raw);
  if (!key.ok()) {
    return Pkcs11Error(absl::StatusCode::kFailedPrecondition, "PKCS11_KEY_UNSUITABLE",
                       absl::StrCat(what, " is not an Ed25519 key (its CKA_EC_POINT has ",
                                    point.size(), " bytes)"));
  }
  return key;
}

absl::Status Pkcs11Session::Login(const CK_TOKEN_INFO& info, const std::string& pin) {
  const bool pin_pad = (info.flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0;
  if (pin.empty() && (info.flags & CKF_LOGIN_REQUIRED) != 0 && !pin_pad) {
    return Pkcs11Error(
        absl::StatusCode::kPermissionDenied, "PKCS11_LOGIN_FAILED",
        absl::StrCat("token \"", label_, "\" needs its user PIN: give --pin-file FILE or set ",
                     kPkcs11PinEnv));
  }
  if (pin.empty() && !pin_pad) return absl::OkStatus();
  // The PIN goes to the module alone; it is in no message.
  CK_UTF8CHAR_PTR pin_bytes =
      pin.empty() ? nullptr : reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.data()));
  CK_RV rv = f()->C_Login(handle_, CKU_USER, pin_bytes, pin.size());
  if (rv == CKR_USER_ALREADY_LOGGED_IN) return absl::OkStatus();
  if (rv != CKR_OK) {
    return Pkcs11Error(absl::StatusCode::kPermissionDenied, "PKCS11_LOGIN_FAILED",
                       absl::StrCat("cannot log in to token \"", label_, "\": ", Pkcs11RvName(rv)));
  }
  logged_in_ = true;
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
