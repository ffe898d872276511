// File: memory_origin.h
//
// An Origin (storage/origin/origin.h) that keeps objects in a map, for tests of what uses
// origins: each operation can be made to fail, and stored bytes can be altered or kept past a
// delete, the faults a real store shows. The origins themselves are tested against real
// stores (s3_origin_test).
#ifndef MODELDIST_TESTS_STORAGE_ORIGIN_MEMORY_ORIGIN_H_
#define MODELDIST_TESTS_STORAGE_ORIGIN_MEMORY_ORIGIN_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/origin/origin.h"

namespace modeldist::testing {

class MemoryOrigin final : public origin::Origin {
 public:
  explicit MemoryOrigin(std::string name) : name_(std::move(name)) {}
  const std::string& name() const override { return name_; }

  absl::Status Put(const std::string& key, const http::BodyReader& source, int64_t size,
                   const std::string& sha256_hex, const origin::PutProgress& progress) override;
  absl::StatusOr<origin::ObjectInfo> Head(const std::string& key) override;
  absl::Status Get(const std::string& key, int64_t offset, int64_t length,
                   const origin::ByteSink& sink, const std::atomic<bool>* cancel) override;
  absl::StatusOr<std::string> DeviceUrl(const std::string& key, int64_t expires_unix) override;
  absl::Status Delete(const std::string& key) override;

  // Set by the test between calls (not synchronized: one call at a time).
  std::map<std::string, std::string> objects;
  absl::Status put_error;
  absl::Status head_error;
  bool flip_stored_byte = false;
  int64_t size_skew = 0;
  bool ignore_delete = false;
  int deletes = 0;
  int puts = 0;  // Put calls, failed ones included
  // Called before each read of a Put's source, with its offset (e.g. to stop a server).
  std::function<void(int64_t offset)> before_read;
  int device_urls = 0;  // DeviceUrl calls
  absl::Status device_url_error;
  // When set, DeviceUrl gives "<device_url_base>/<key>" (a web server the test fills).
  std::string device_url_base;
  // Get: calls so far (failed ones included), delivered in pieces of `get_piece_bytes`;
  // `before_piece` runs before each with its offset, and its error ends the Get. `get_error`
  // fails every Get; `stall_get` makes it send nothing until cancelled.
  std::atomic<int> gets{0};
  int64_t get_piece_bytes = 1 << 20;
  std::function<absl::Status(int64_t offset)> before_piece;
  absl::Status get_error;
  std::atomic<bool> stall_get{false};

 private:
  std::string name_;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_STORAGE_ORIGIN_MEMORY_ORIGIN_H_
