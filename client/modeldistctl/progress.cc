#include "client/modeldistctl/progress.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace modeldist::ctl {

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1000) return absl::StrCat(bytes, " B");
  static constexpr const char* kUnits[] = {"kB", "MB", "GB", "TB", "PB"};
  double value = static_cast<double>(bytes) / 1000.0;
  size_t unit = 0;
  while (value >= 999.95 && unit + 1 < std::size(kUnits)) {
    value /= 1000.0;
    ++unit;
  }
  // Three significant digits is what a person reads; more only flickers.
  return absl::StrFormat(value < 9.995 ? "%.2f %s" : "%.1f %s", value, kUnits[unit]);
}

std::string FormatEta(absl::Duration d) {
  if (d == absl::InfiniteDuration() || d < absl::ZeroDuration()) return "--:--";
  int64_t s = absl::ToInt64Seconds(d + absl::Milliseconds(500));
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

std::string FormatProgressLine(absl::string_view label, int64_t start, int64_t done, int64_t total,
                               absl::Duration elapsed) {
  double seconds = absl::ToDoubleSeconds(elapsed);
  double rate = seconds > 0 ? static_cast<double>(done - start) / seconds : 0;
  std::string rate_text =
      rate > 0 ? absl::StrCat(FormatBytes(static_cast<int64_t>(rate)), "/s") : "-- MB/s";
  // A pipe: no total, so no percentage or ETA either.
  if (total < 0) return absl::StrFormat("%s %s  %s", label, FormatBytes(done), rate_text);
  double percent =
      total > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0;
  absl::Duration eta = absl::InfiniteDuration();
  if (rate > 0) eta = absl::Seconds(static_cast<double>(total - done) / rate);
  if (done >= total) eta = absl::ZeroDuration();
  return absl::StrFormat("%s %5.1f%%  %s / %s  %s  ETA %s", label, percent, FormatBytes(done),
                         FormatBytes(total), rate_text, FormatEta(eta));
}

ProgressMeter::ProgressMeter(std::ostream* out, bool enabled, std::string label, int64_t start,
                             int64_t total, std::function<absl::Time()> now)
    : out_(out),
      enabled_(enabled),
      label_(std::move(label)),
      start_(start),
      total_(total),
      done_(start),
      now_(std::move(now)),
      started_(now_()) {}

ProgressMeter::~ProgressMeter() { Finish(); }

void ProgressMeter::Update(int64_t done) {
  done_ = done;
  if (!enabled_) return;
  absl::Time now = now_();
  if (now - last_draw_ >= kRedrawInterval) Draw(now);
}

void ProgressMeter::Draw(absl::Time now) {
  std::string line = FormatProgressLine(label_, start_, done_, total_, now - started_);
  size_t width = line.size();
  // Pad over the tail of a longer previous line rather than rely on terminal escapes.
  if (width < drawn_width_) line.append(drawn_width_ - width, ' ');
  *out_ << '\r' << line << std::flush;
  drawn_width_ = width;
  last_draw_ = now;
}

void ProgressMeter::Finish() {
  if (!enabled_ || drawn_width_ == 0) return;
  *out_ << '\r' << std::string(drawn_width_, ' ') << '\r' << std::flush;
  drawn_width_ = 0;
}

}  // namespace modeldist::ctl
