#include "services/metrics/metrics.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/utf8.h"

namespace modeldist::metrics {
namespace {

// A programming error (see the file comment): say what, then abort. Not absl's logging,
// which this abseil (Debian 12's) has only as an internal header.
[[noreturn]] void Fatal(absl::string_view what) {
  std::fprintf(stderr, "modeldist::metrics: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

bool IsMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
                    (i > 0 && absl::ascii_isdigit(static_cast<unsigned char>(c)));
    if (!ok) return false;
  }
  return true;
}

// Unlike metric names, label names have no colons; names starting with "__" are Prometheus's
// own (__name__, and those its relabelling uses).
bool IsLabelName(absl::string_view name) {
  if (name.empty() || absl::StartsWith(name, "__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_' ||
                    (i > 0 && absl::ascii_isdigit(static_cast<unsigned char>(c)));
    if (!ok) return false;
  }
  return true;
}

void CheckNames(absl::string_view name, const std::vector<std::string>& label_names) {
  if (!IsMetricName(name)) {
    Fatal(absl::StrCat("invalid metric name \"", absl::CEscape(name),
                       "\" (want [a-zA-Z_:][a-zA-Z0-9_:]*)"));
  }
  for (size_t i = 0; i < label_names.size(); ++i) {
    if (!IsLabelName(label_names[i])) {
      Fatal(absl::StrCat("metric ", name, ": invalid label name \"", absl::CEscape(label_names[i]),
                         "\" (want [a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (label_names[j] == label_names[i]) {
        Fatal(absl::StrCat("metric ", name, ": label \"", label_names[i], "\" given twice"));
      }
    }
  }
}

// Appends `text` escaped for the exposition format: backslash and newline always, the double
// quote too inside a label value (`quote`); bytes that are not UTF-8 become U+FFFD.
void AppendEscaped(absl::string_view text, bool quote, std::string* out) {
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"' && quote) {
      out->append("\\\"");
    } else {
      const size_t length = Utf8SequenceLength(text.substr(i));
      if (length == 0) {
        out->append("\xEF\xBF\xBD");
        ++i;
      } else {
        out->append(text.data() + i, length);
        i += length;
      }
      continue;
    }
    ++i;
  }
}

// A float as Prometheus (Go's strconv.ParseFloat) reads it: +Inf, -Inf, NaN; whole numbers
// up to 2^53 (where doubles stop holding every integer) as integers, never with an exponent;
// else the shortest form that reads back as the same double ("0.005", "1e-07", "1e+300").
void AppendDouble(double value, std::string* out) {
  if (std::isnan(value)) {
    out->append("NaN");
  } else if (std::isinf(value)) {
    out->append(value > 0 ? "+Inf" : "-Inf");
  } else if (std::trunc(value) == value && std::fabs(value) <= 9007199254740992.0) {
    absl::StrAppend(out, static_cast<int64_t>(value));
  } else {
    char buffer[32];
    const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
    if (result.ec != std::errc()) Fatal("cannot format a double");  // 32 bytes always fit
    out->append(buffer, result.ptr);
  }
}

std::string FormatDouble(double value) {
  std::string out;
  AppendDouble(value, &out);
  return out;
}

// Appends `{a="x",b="y"}`, with `le="..."` last when `le` is not null; nothing when there
// are no labels at all.
void AppendLabels(const std::vector<std::string>& names, const std::vector<std::string>& values,
                  const std::string* le, std::string* out) {
  if (names.empty() && le == nullptr) return;
  out->push_back('{');
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out->push_back(',');
    absl::StrAppend(out, names[i], "=\"");
    AppendEscaped(values[i], /*quote=*/true, out);
    out->push_back('"');
  }
  if (le != nullptr) {
    absl::StrAppend(out, names.empty() ? "" : ",", "le=\"", *le, "\"");
  }
  out->push_back('}');
}

// A gauge whose values a callback returns at render time.
class CallbackGaugeFamily final : public Family {
 public:
  CallbackGaugeFamily(std::string name, std::string help, std::vector<std::string> label_names,
                      GaugeCallback callback)
      : Family(std::move(name), std::move(help), std::move(label_names)),
        callback_(std::move(callback)) {}

 private:
  absl::string_view type() const override { return "gauge"; }

  void AppendSamples(std::string* out) const override {
    GaugeValues rows = callback_();
    for (const auto& [labels, value] : rows) {
      if (labels.size() != label_names().size()) {
        metrics_internal::WrongArity(name(), label_names().size(), labels.size());
      }
    }
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [labels, value] : rows) {
      out->append(name());
      AppendLabels(label_names(), labels, nullptr, out);
      out->push_back(' ');
      AppendDouble(value, out);
      out->push_back('\n');
    }
  }

  const GaugeCallback callback_;
};

}  // namespace

namespace metrics_internal {

void WrongArity(absl::string_view family, size_t want, size_t got) {
  Fatal(absl::StrCat("metric ", family, ": ", got, " label values for ", want, " labels"));
}

}  // namespace metrics_internal

void Counter::NegativeDelta(int64_t delta) {
  Fatal(absl::StrCat("a counter cannot go down (Add(", delta, "))"));
}

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(new std::atomic<int64_t>[bounds->size() + 1]()) {}

void Histogram::Observe(double value) {
  // lower_bound: the first bound >= value, since a bucket counts values <= its bound.
  size_t bucket = static_cast<size_t>(std::lower_bound(bounds_->begin(), bounds_->end(), value) -
                                      bounds_->begin());
  if (std::isnan(value)) bucket = bounds_->size();  // NaN compares false with every bound
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<int64_t> Histogram::BucketCounts() const {
  std::vector<int64_t> counts(bounds_->size() + 1);
  for (size_t i = 0; i < counts.size(); ++i) {
    counts[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  return counts;
}

CounterFamily::CounterFamily(std::string name, std::string help,
                             std::vector<std::string> label_names)
    : Family(std::move(name), std::move(help), std::move(label_names)),
      children_(this->name(), this->label_names().size(),
                [] { return std::make_unique<Counter>(); }) {
  if (this->label_names().empty()) With({});  // the one series exists from the start
}

void CounterFamily::AppendSamples(std::string* out) const {
  for (const auto* child : children_.Sorted()) {
    out->append(name());
    AppendLabels(label_names(), child->labels, nullptr, out);
    absl::StrAppend(out, " ", child->metric->Value(), "\n");
  }
}

GaugeFamily::GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names)
    : Family(std::move(name), std::move(help), std::move(label_names)),
      children_(this->name(), this->label_names().size(),
                [] { return std::make_unique<Gauge>(); }) {
  if (this->label_names().empty()) With({});
}

void GaugeFamily::AppendSamples(std::string* out) const {
  for (const auto* child : children_.Sorted()) {
    out->append(name());
    AppendLabels(label_names(), child->labels, nullptr, out);
    out->push_back(' ');
    AppendDouble(child->metric->Value(), out);
    out->push_back('\n');
  }
}

HistogramFamily::HistogramFamily(std::string name, std::string help,
                                 std::vector<std::string> label_names, std::vector<double> bounds)
    : Family(std::move(name), std::move(help), std::move(label_names)),
      bounds_(std::move(bounds)),
      children_(this->name(), this->label_names().size(),
                [this] { return std::make_unique<Histogram>(&bounds_); }) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
      Fatal(absl::StrCat(
          "histogram ", this->name(), ": bucket bounds must be finite and ",
          "strictly increasing (the +Inf bucket is implicit), got [",
          absl::StrJoin(bounds_, ", ", [](std::string* out, double b) { AppendDouble(b, out); }),
          "]"));
    }
  }
  for (const std::string& label : this->label_names()) {
    if (label == "le") Fatal(absl::StrCat("histogram ", this->name(), ": \"le\" is reserved"));
  }
  if (this->label_names().empty()) With({});
}

void HistogramFamily::AppendSamples(std::string* out) const {
  // The le values are the same for every child: format them once.
  std::vector<std::string> les;
  les.reserve(bounds_.size() + 1);
  for (double bound : bounds_) les.push_back(FormatDouble(bound));
  les.push_back("+Inf");

  for (const auto* child : children_.Sorted()) {
    // One read per bucket; the total of those reads is both +Inf and _count, so that the two
    // agree even while other threads observe.
    const std::vector<int64_t> counts = child->metric->BucketCounts();
    int64_t cumulative = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      cumulative += counts[i];
      absl::StrAppend(out, name(), "_bucket");
      AppendLabels(label_names(), child->labels, &les[i], out);
      absl::StrAppend(out, " ", cumulative, "\n");
    }
    absl::StrAppend(out, name(), "_sum");
    AppendLabels(label_names(), child->labels, nullptr, out);
    out->push_back(' ');
    AppendDouble(child->metric->Sum(), out);
    absl::StrAppend(out, "\n", name(), "_count");
    AppendLabels(label_names(), child->labels, nullptr, out);
    absl::StrAppend(out, " ", cumulative, "\n");
  }
}

template <typename F>
F& Registry::Register(std::unique_ptr<F> family, absl::Span<const std::string> sample_names) {
  F& ref = *family;
  absl::MutexLock lock(&mu_);
  for (const std::string& sample_name : sample_names) {
    if (sample_names_.contains(sample_name)) {
      Fatal(absl::StrCat("metric ", family->name(), ": the name ", sample_name,
                         " is already taken by another family"));
    }
  }
  sample_names_.insert(sample_names.begin(), sample_names.end());
  std::string name = family->name();
  families_.emplace(std::move(name), std::move(family));
  return ref;
}

CounterFamily& Registry::AddCounter(absl::string_view name, absl::string_view help,
                                    std::vector<std::string> label_names) {
  CheckNames(name, label_names);
  const std::string names[] = {std::string(name)};
  return Register(std::unique_ptr<CounterFamily>(new CounterFamily(
                      std::string(name), std::string(help), std::move(label_names))),
                  names);
}

GaugeFamily& Registry::AddGauge(absl::string_view name, absl::string_view help,
                                std::vector<std::string> label_names) {
  CheckNames(name, label_names);
  const std::string names[] = {std::string(name)};
  return Register(std::unique_ptr<GaugeFamily>(new GaugeFamily(std::string(name), std::string(help),
                                                               std::move(label_names))),
                  names);
}

HistogramFamily& Registry::AddHistogram(absl::string_view name, absl::string_view help,
                                        std::vector<std::string> label_names,
                                        std::vector<double> bounds) {
  CheckNames(name, label_names);
  // A counter named x_count next to a histogram x would render two x_count series.
  const std::string names[] = {std::string(name), absl::StrCat(name, "_bucket"),
                               absl::StrCat(name, "_sum"), absl::StrCat(name, "_count")};
  return Register(
      std::unique_ptr<HistogramFamily>(new HistogramFamily(
          std::string(name), std::string(help), std::move(label_names), std::move(bounds))),
      names);
}

void Registry::AddGaugeCallback(absl::string_view name, absl::string_view help,
                                std::vector<std::string> label_names, GaugeCallback callback) {
  CheckNames(name, label_names);
  const std::string names[] = {std::string(name)};
  Register(std::make_unique<CallbackGaugeFamily>(std::string(name), std::string(help),
                                                 std::move(label_names), std::move(callback)),
           names);
}

std::string Registry::Render() const {
  // Families are never removed and live as long as the registry, so they can be rendered
  // after the lock is released: a slow callback holds up neither registration nor other
  // renders, and may itself take locks that a registering thread holds.
  std::vector<const Family*> families;
  {
    absl::MutexLock lock(&mu_);
    families.reserve(families_.size());
    for (const auto& entry : families_) families.push_back(entry.second.get());
  }
  std::string out;
  for (const Family* family : families) {
    const size_t start = out.size();
    if (!family->help().empty()) {
      absl::StrAppend(&out, "# HELP ", family->name(), " ");
      AppendEscaped(family->help(), /*quote=*/false, &out);
      out.push_back('\n');
    }
    absl::StrAppend(&out, "# TYPE ", family->name(), " ", family->type(), "\n");
    const size_t header_end = out.size();
    family->AppendSamples(&out);
    // A family without time series is left out, as the reference client (client_golang) does.
    if (out.size() == header_end) out.resize(start);
  }
  return out;
}

}  // namespace modeldist::metrics
