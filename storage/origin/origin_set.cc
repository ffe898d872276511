#include "storage/origin/origin_set.h"

#include <openssl/rand.h>
#include <sys/mman.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/http/http.h"
#include "common/status.h"
#include "storage/origin/origin_config.h"

namespace modeldist::origin {
namespace {

std::string RandomBytes(size_t n) {
  std::string bytes(n, '\0');
  // A probe's bytes need not be secret, only unlike any other probe's; RAND_bytes cannot fail
  // once OpenSSL has seeded, and a failure would still leave distinct keys from the clock.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(n)) != 1) {
    bytes = absl::StrCat(absl::ToUnixNanos(absl::Now()), bytes).substr(0, n);
  }
  return bytes;
}

// Runs one step, timing it, and records it.
template <typename Fn>
bool Run(std::vector<CheckStep>* steps, std::string step, const std::string& key, Fn&& fn) {
  const absl::Time start = absl::Now();
  absl::Status status = fn();
  steps->push_back(CheckStep{std::move(step), key, absl::Now() - start, status});
  return status.ok();
}

absl::Status Mismatch(const std::string& what) {
  return MakeError(absl::StatusCode::kDataLoss, "ORIGIN_PROBE_MISMATCH", what);
}

}  // namespace

absl::StatusOr<std::unique_ptr<OriginSet>> OriginSet::Build(const v1::OriginsConfig& config,
                                                            const OriginFactory& factory) {
  MD_RETURN_IF_ERROR(ValidateOriginsConfig(config));
  std::unique_ptr<OriginSet> set(new OriginSet());
  for (int i = 0; i < config.origins_size(); ++i) {
    const v1::Origin& entry = config.origins(i);
    absl::StatusOr<std::unique_ptr<Origin>> built = factory(entry);
    if (!built.ok()) {
      return WithContext(built.status(), absl::StrCat("origins[", i, "] (", entry.name(), ")"));
    }
    set->origins_.push_back(ConfiguredOrigin{entry, *std::move(built)});
  }
  return set;
}

const ConfiguredOrigin* OriginSet::Find(const std::string& name) const {
  for (const ConfiguredOrigin& entry : origins_) {
    if (entry.config.name() == name) return &entry;
  }
  return nullptr;
}

absl::StatusOr<std::string> FetchWithHttp(const std::string& url, int64_t offset, int64_t length) {
  http::HttpRequest request{.method = "GET", .url = url};
  request.total_timeout = absl::Minutes(1);
  const std::string where = http::RedactUrl(url);
  // One attempt, as a device's first: the check reports what the URL does, not what retries
  // hide. A server that ignores Range fails it (RANGE_IGNORED): devices resume with ranges.
  std::string body;
  int64_t delivered = 0;
  MD_RETURN_IF_ERROR(http::GetRange(
      where, offset, length, http::PlainRangeRequest(request, where),
      [&](absl::string_view piece) {
        body.append(piece.data(), piece.size());
        return absl::OkStatus();
      },
      &delivered));
  return body;
}

absl::StatusOr<std::vector<CheckStep>> CheckOrigin(const ConfiguredOrigin& entry,
                                                   const CheckOptions& options) {
  Origin& origin = *entry.origin;
  const int64_t probe_bytes = options.probe_bytes;
  const std::string key =
      absl::StrCat(entry.config.key_prefix(), "modeldist-check/", HexEncode(RandomBytes(8)));
  std::vector<CheckStep> steps;
  if (!IsWritable(entry.config)) {
    Run(&steps, "head", key, [&]() -> absl::Status {
      absl::StatusOr<ObjectInfo> info = origin.Head(key);
      // Any answer of the server shows it is reachable; only a probe key nobody stored is
      // asked for, so NOT_FOUND is the expected one.
      return info.ok() || absl::IsNotFound(info.status()) ? absl::OkStatus() : info.status();
    });
    return steps;
  }

  const std::string bytes = RandomBytes(static_cast<size_t>(probe_bytes));
  const std::string hex = Sha256::HexOf(bytes);
  ScopedFd fd(::memfd_create("modeldist-origin-check", MFD_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "memfd_create for the origin check's probe");
  MD_RETURN_IF_ERROR(WriteAll(fd.get(), bytes.data(), bytes.size()));

  const bool stored = Run(&steps, "put", key, [&] {
    return origin.Put(key, http::FileBodyReader(fd.get()), probe_bytes, hex, nullptr);
  });
  if (stored) {
    const bool found = Run(&steps, "head", key, [&]() -> absl::Status {
      MD_ASSIGN_OR_RETURN(ObjectInfo info, origin.Head(key));
      if (info.size != probe_bytes) {
        return Mismatch(
            absl::StrCat("head reports ", info.size, " bytes; ", probe_bytes, " were stored"));
      }
      if (!info.sha256_hex.empty() && info.sha256_hex != hex) {
        return Mismatch(
            absl::StrCat("head reports SHA-256 ", info.sha256_hex, "; ", hex, " was stored"));
      }
      return absl::OkStatus();
    });
    if (found) {
      // A range, as devices and read-through ask: from byte 1 to the end.
      Run(&steps, "get", key, [&]() -> absl::Status {
        std::string got;
        MD_RETURN_IF_ERROR(origin.Get(
            key, 1, probe_bytes - 1,
            [&](absl::string_view piece) {
              got.append(piece.data(), piece.size());
              return absl::OkStatus();
            },
            nullptr));
        if (got != absl::string_view(bytes).substr(1)) {
          return Mismatch(absl::StrCat("bytes 1-", probe_bytes - 1, " read back (", got.size(),
                                       " bytes) differ from those stored"));
        }
        return absl::OkStatus();
      });
    }
    if (steps.back().status.ok() && !entry.config.hide_from_devices()) {
      Run(&steps, "device-url", key, [&]() -> absl::Status {
        const int64_t expires = absl::ToUnixSeconds(options.now() + absl::Minutes(5));
        MD_ASSIGN_OR_RETURN(std::string url, origin.DeviceUrl(key, expires));
        // The last half, as a device resuming a download asks.
        const int64_t from = probe_bytes / 2;
        MD_ASSIGN_OR_RETURN(std::string got, options.fetch(url, from, probe_bytes - from));
        if (got != absl::string_view(bytes).substr(static_cast<size_t>(from))) {
          return Mismatch(absl::StrCat("the bytes a device gets from ", http::RedactUrl(url),
                                       " differ from those stored"));
        }
        return absl::OkStatus();
      });
    }
  }
  // Also after a failed head or get: no probe is left behind that the check could remove.
  if (stored) {
    Run(&steps, "delete", key, [&]() -> absl::Status {
      MD_RETURN_IF_ERROR(origin.Delete(key));
      absl::StatusOr<ObjectInfo> after = origin.Head(key);
      if (after.ok()) return Mismatch("the probe is still there after delete");
      return absl::IsNotFound(after.status()) ? absl::OkStatus() : after.status();
    });
  }
  return steps;
}

}  // namespace modeldist::origin
