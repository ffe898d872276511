// OpenFileSource: a ByteSource over a local file, read with pread (common/file_util.h).
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <memory>
#include <string>
#include <utility>

#include "common/file_util.h"
#include "common/model_check/model_check.h"

namespace modeldist::model_check {
namespace {

class FileSource : public ByteSource {
 public:
  FileSource(ScopedFd fd, int64_t size, std::string path)
      : fd_(std::move(fd)), size_(size), path_(std::move(path)) {}
  int64_t size() const override { return size_; }
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) const override {
    return PreadAll(fd_.get(), buf, size, offset, path_);
  }

 private:
  ScopedFd fd_;
  int64_t size_;
  std::string path_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ByteSource>> OpenFileSource(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, path);
  if (!S_ISREG(st.st_mode)) return ErrnoStatus(EISDIR, path);
  return std::make_unique<FileSource>(std::move(fd), static_cast<int64_t>(st.st_size), path);
}

}  // namespace modeldist::model_check
