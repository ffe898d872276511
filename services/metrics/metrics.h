// File: metrics.h
//
// Prometheus metrics for the server's `/metrics`: counters, gauges and histograms kept in a
// Registry that renders them in the Prometheus text exposition format 0.0.4. It depends only
// on abseil and the standard library (no project headers), so it is cheap to compile and test
// and any component can count things without pulling in the server.
//
// Hot paths (each request, each MiB served) must not take a lock or look up labels: With()
// returns a child that lives as long as the Registry, so a caller looks it up once and keeps
// the pointer, and counting is then one relaxed atomic add. Looking a child up by its label
// values takes the family's mutex: that is for set-up and for rare label values.
//
// Values that are read rather than counted (the blob store's size, the catalog sequence of
// each tier) are callback gauges: the registry calls the function at each Render().
//
// Names are compile-time constants, so a bad metric or label name, a name registered twice,
// label values of the wrong arity or a counter made to go down is a programming error: the
// process prints what was wrong to stderr and aborts, and the first test that touches the
// metric finds it.
//
// Thread safety: every function here may be called from any thread at any time, concurrently
// with any other (registering, With(), counting, Render()). Render() sees each value as of
// some instant during the call; a histogram's _count always equals its le="+Inf" bucket.
//
// Example:
//   metrics::Registry registry;
//   metrics::CounterFamily& rpcs = registry.AddCounter(
//       "modeldist_rpcs_total", "RPCs answered, by method and status code.", {"method", "code"});
//   metrics::Counter* reads_ok = rpcs.With({"Read", "OK"});  // once, at set-up
//   reads_ok->Increment();                                   // per request: one atomic add
//   metrics::Counter* sent = registry.AddCounter("modeldist_sent_bytes_total",
//                                                "Artifact bytes sent.").With({});
//   sent->Add(chunk.size());
//   registry.AddGaugeCallback("modeldist_blob_store_bytes", "Bytes in the blob store.", {}, [&] {
//     return metrics::GaugeValues{{{}, static_cast<double>(store.Bytes())}};
//   });
//   Reply(200, metrics::kContentType, registry.Render());
#ifndef MODELDIST_SERVICES_METRICS_METRICS_H_
#define MODELDIST_SERVICES_METRICS_METRICS_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace modeldist::metrics {

// The Content-Type of Render()'s output.
inline constexpr absl::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Label values in the order of the family's label names: With({"Read", "OK"}), or With({})
// for a family without labels. Any bytes; invalid UTF-8 is rendered as U+FFFD (Prometheus
// would reject the whole scrape otherwise).
using LabelValues = absl::Span<const absl::string_view>;

// What a callback gauge reports at one Render(): one value per label set, the label values in
// the order of its label names, each label set at most once.
using GaugeValues = std::vector<std::pair<std::vector<std::string>, double>>;
using GaugeCallback = std::function<GaugeValues()>;

// One counter time series: a count that only goes up. int64_t, so bytes add up exactly.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Increment() { value_.fetch_add(1, std::memory_order_relaxed); }
  // `delta` >= 0: a counter never goes down (a negative delta aborts).
  void Add(int64_t delta) {
    if (delta < 0) NegativeDelta(delta);
    value_.fetch_add(delta, std::memory_order_relaxed);
  }
  int64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  [[noreturn]] static void NegativeDelta(int64_t delta);

  std::atomic<int64_t> value_{0};
};

// One gauge time series: a value that is set, or goes up and down.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// One histogram time series: how many observations fell in each bucket, and their sum.
class Histogram {
 public:
  // `bounds`: the family's upper bounds (strictly increasing, finite); it outlives this.
  explicit Histogram(const std::vector<double>* bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `value` in the first bucket whose upper bound is >= `value` (NaN: in +Inf only).
  void Observe(double value);
  // Observes `duration` in seconds, Prometheus's base unit of time.
  void ObserveDuration(absl::Duration duration) { Observe(absl::ToDoubleSeconds(duration)); }

  // The observations in each bucket, not cumulative: bounds().size() + 1 entries, the last
  // for the values above every bound.
  std::vector<int64_t> BucketCounts() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }
  const std::vector<double>& bounds() const { return *bounds_; }

 private:
  const std::vector<double>* bounds_;
  // Not cumulative, so that Observe adds to one bucket only; Render adds them up.
  std::unique_ptr<std::atomic<int64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

namespace metrics_internal {

[[noreturn]] void WrongArity(absl::string_view family, size_t want, size_t got);

// A family's children by label values. A child is never removed, so the pointers Get hands
// out stay valid as long as the family (the registry) does.
template <typename T>
class Children {
 public:
  struct Child {
    std::vector<std::string> labels;
    std::unique_ptr<T> metric;
  };

  Children(std::string family, size_t arity, std::function<std::unique_ptr<T>()> make)
      : family_(std::move(family)), arity_(arity), make_(std::move(make)) {}

  T* Get(LabelValues values) ABSL_LOCKS_EXCLUDED(mu_) {
    if (values.size() != arity_) WrongArity(family_, arity_, values.size());
    std::vector<std::string> labels(values.begin(), values.end());
    absl::MutexLock lock(&mu_);
    std::unique_ptr<Child>& child = children_[labels];
    if (child == nullptr) {
      child = std::make_unique<Child>(Child{std::move(labels), make_()});
    }
    return child->metric.get();
  }

  // Every child, sorted by label values so that the output is stable from one render to the
  // next. The map's keys move when it grows; Child and its labels do not.
  std::vector<const Child*> Sorted() const ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<const Child*> out;
    {
      absl::MutexLock lock(&mu_);
      out.reserve(children_.size());
      for (const auto& entry : children_) out.push_back(entry.second.get());
    }
    std::sort(out.begin(), out.end(),
              [](const Child* a, const Child* b) { return a->labels < b->labels; });
    return out;
  }

 private:
  const std::string family_;
  const size_t arity_;
  const std::function<std::unique_ptr<T>()> make_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::vector<std::string>, std::unique_ptr<Child>> children_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace metrics_internal

// What every family has: a name, help text and label names. Made by the Registry only.
class Family {
 public:
  virtual ~Family() = default;
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

 protected:
  Family(std::string name, std::string help, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}

 private:
  friend class Registry;
  // "counter", "gauge" or "histogram", for the # TYPE line.
  virtual absl::string_view type() const = 0;
  // Appends the family's sample lines (nothing when it has no time series yet).
  virtual void AppendSamples(std::string* out) const = 0;

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
};

class CounterFamily final : public Family {
 public:
  // The counter for these label values, made on first use; keep it for hot paths.
  Counter* With(LabelValues values) { return children_.Get(values); }
  void Add(LabelValues values, int64_t delta) { With(values)->Add(delta); }

 private:
  friend class Registry;
  CounterFamily(std::string name, std::string help, std::vector<std::string> label_names);
  absl::string_view type() const override { return "counter"; }
  void AppendSamples(std::string* out) const override;

  metrics_internal::Children<Counter> children_;
};

class GaugeFamily final : public Family {
 public:
  // The gauge for these label values, made on first use (at 0); keep it for hot paths.
  Gauge* With(LabelValues values) { return children_.Get(values); }
  void Set(LabelValues values, double value) { With(values)->Set(value); }
  void Add(LabelValues values, double delta) { With(values)->Add(delta); }

 private:
  friend class Registry;
  GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names);
  absl::string_view type() const override { return "gauge"; }
  void AppendSamples(std::string* out) const override;

  metrics_internal::Children<Gauge> children_;
};

class HistogramFamily final : public Family {
 public:
  // The histogram for these label values, made on first use; keep it for hot paths.
  Histogram* With(LabelValues values) { return children_.Get(values); }
  void Observe(LabelValues values, double value) { With(values)->Observe(value); }
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  friend class Registry;
  HistogramFamily(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> bounds);
  absl::string_view type() const override { return "histogram"; }
  void AppendSamples(std::string* out) const override;

  const std::vector<double> bounds_;  // before children_, which points at it
  metrics_internal::Children<Histogram> children_;
};

// Owns metric families and renders them. Families live as long as the Registry, and so do
// the pointers their With() returns.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Each Add* registers a family. `name` matches [a-zA-Z_:][a-zA-Z0-9_:]* and is not taken
  // by another family (nor, for a histogram, are name_bucket, name_sum and name_count);
  // `label_names` match [a-zA-Z_][a-zA-Z0-9_]*, do not start with "__" and are distinct.
  // Anything else aborts. A family without labels has its one time series from the start
  // (a counter renders 0 before its first increment); a family with labels renders nothing
  // until its first With(). Conventions (not enforced): counters end in _total, and values
  // are in base units (seconds, bytes).
  CounterFamily& AddCounter(absl::string_view name, absl::string_view help,
                            std::vector<std::string> label_names = {});
  GaugeFamily& AddGauge(absl::string_view name, absl::string_view help,
                        std::vector<std::string> label_names = {});
  // `bounds`: the buckets' upper bounds, strictly increasing and finite (the +Inf bucket is
  // always there); no label may be named "le".
  HistogramFamily& AddHistogram(absl::string_view name, absl::string_view help,
                                std::vector<std::string> label_names, std::vector<double> bounds);
  // A gauge whose values `callback` returns at each Render(). It is called without any of the
  // registry's locks held (so it may take its own), possibly from several threads at once
  // when Render() is; a row whose arity differs from `label_names` aborts.
  void AddGaugeCallback(absl::string_view name, absl::string_view help,
                        std::vector<std::string> label_names, GaugeCallback callback);

  // Every family with at least one time series, sorted by name, in the text exposition format
  // 0.0.4 (serve it with kContentType).
  std::string Render() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  template <typename F>
  F& Register(std::unique_ptr<F> family, absl::Span<const std::string> sample_names)
      ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  // By name: the order of Render().
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_ ABSL_GUARDED_BY(mu_);
  // Every metric name a sample line may carry (a histogram's _bucket, _sum, _count too), so
  // that two families can never render the same name.
  absl::flat_hash_set<std::string> sample_names_ ABSL_GUARDED_BY(mu_);
};

}  // namespace modeldist::metrics

#endif  // MODELDIST_SERVICES_METRICS_METRICS_H_
