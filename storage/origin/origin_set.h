// File: origin_set.h
//
// The server's origins: each entry of its origins file (origin_config.h) with the Origin that
// reaches it, built once at start-up so that a missing credential or an unusable setting stops
// the server there, not at the first replication hours later. And CheckOrigin, the access test
// behind `modeldistctl origins check NAME`.
#ifndef MODELDIST_STORAGE_ORIGIN_ORIGIN_SET_H_
#define MODELDIST_STORAGE_ORIGIN_ORIGIN_SET_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "modeldist/v1/origins.pb.h"
#include "storage/origin/origin.h"

namespace modeldist::origin {

// Builds the Origin of one configured entry (reading its secrets). MakeOrigin
// (origin_factory.h) is the server's; tests pass fakes.
using OriginFactory =
    std::function<absl::StatusOr<std::unique_ptr<Origin>>(const v1::Origin& config)>;

struct ConfiguredOrigin {
  v1::Origin config;
  std::unique_ptr<Origin> origin;
};

class OriginSet {
 public:
  // Validates `config` (ValidateOriginsConfig) and builds every origin with `factory`. The
  // first error, prefixed with the origin's place in the file ("origins[1] (r2): ...").
  static absl::StatusOr<std::unique_ptr<OriginSet>> Build(const v1::OriginsConfig& config,
                                                          const OriginFactory& factory);

  // In the file's order.
  const std::vector<ConfiguredOrigin>& origins() const { return origins_; }
  // nullptr when there is none of that name.
  const ConfiguredOrigin* Find(const std::string& name) const;

 private:
  OriginSet() = default;
  std::vector<ConfiguredOrigin> origins_;
};

// One request of a check.
struct CheckStep {
  std::string step;  // "put", "head", "get", "device-url", "delete"
  std::string key;
  absl::Duration took;
  absl::Status status;
};

// Fetches bytes [offset, offset + length) of `url` as a device would (no credentials beyond
// the URL itself). FetchWithHttp is the real one.
using UrlFetcher = std::function<absl::StatusOr<std::string>(const std::string& url, int64_t offset,
                                                             int64_t length)>;
absl::StatusOr<std::string> FetchWithHttp(const std::string& url, int64_t offset, int64_t length);

struct CheckOptions {
  int64_t probe_bytes = 64 << 10;
  UrlFetcher fetch = FetchWithHttp;
  std::function<absl::Time()> now = absl::Now;
};

// Tests access to `origin` now, as RegistryService.CheckOrigin documents: a writable origin
// gets a probe object of `probe_bytes` random bytes under "<key_prefix>modeldist-check/" put,
// headed (size, and SHA-256 when the store reports one), read back by range and compared;
// when devices are sent to the origin, also fetched by range through the URL a device would
// get (DeviceUrl: presigned, public or CDN, valid for 5 minutes) and compared ("device-url");
// then deleted and headed again (it must be gone). A read-only one has a probe key headed,
// which passes on any answer of the server, NOT_FOUND included. Stops at the first failed
// step, except that a probe that was stored is still deleted. Fails itself only when no probe
// can be made locally (no memory file).
absl::StatusOr<std::vector<CheckStep>> CheckOrigin(const ConfiguredOrigin& origin,
                                                   const CheckOptions& options = {});

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_ORIGIN_SET_H_
