// File: progress.h
//
// A one-line progress display for hashing and uploading multi-GB files: percent, amount,
// rate and ETA, redrawn in place with '\r'. Drawn only when the output is a terminal (scripts
// and logs get the summary line alone), and at most every kRedrawInterval so that a fast
// local hash does not spend its time printing.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_PROGRESS_H_
#define MODELDIST_CLIENT_MODELDISTCTL_PROGRESS_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace modeldist::ctl {

// "0 B", "999 B", "1.5 kB", "12.3 MB", "2.61 GB": decimal units, as network rates are.
std::string FormatBytes(int64_t bytes);

// "0:07", "12:34", "1:02:03"; "--:--" for an infinite duration.
std::string FormatEta(absl::Duration d);

// The progress line, e.g. "uploading  42.0%  21.0 MB / 50.0 MB  10.5 MB/s  ETA 0:03".
// `done` and `total` are positions in the file; the rate counts only what this run moved
// since `start` (a resumed upload starts past 0), over `elapsed`. A negative `total` (a pipe,
// whose size is unknown) shows the amount and rate alone: "uploading  21.0 MB  10.5 MB/s".
std::string FormatProgressLine(absl::string_view label, int64_t start, int64_t done, int64_t total,
                               absl::Duration elapsed);

class ProgressMeter {
 public:
  static constexpr absl::Duration kRedrawInterval = absl::Milliseconds(200);

  // Draws nothing when `enabled` is false. `now` is injectable for tests.
  ProgressMeter(std::ostream* out, bool enabled, std::string label, int64_t start, int64_t total,
                std::function<absl::Time()> now = absl::Now);
  ~ProgressMeter();
  ProgressMeter(const ProgressMeter&) = delete;
  ProgressMeter& operator=(const ProgressMeter&) = delete;

  // Records the position; redraws when kRedrawInterval has passed since the last draw.
  void Update(int64_t done);
  // Erases the line so that the next output starts clean. Called by the destructor too.
  void Finish();

 private:
  void Draw(absl::Time now);

  std::ostream* out_;
  bool enabled_;
  std::string label_;
  int64_t start_;
  int64_t total_;
  int64_t done_;
  std::function<absl::Time()> now_;
  absl::Time started_;
  absl::Time last_draw_ = absl::InfinitePast();
  size_t drawn_width_ = 0;
};

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_PROGRESS_H_
