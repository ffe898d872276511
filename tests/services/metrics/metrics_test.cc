#include "services/metrics/metrics.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldist::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, ContentTypeIsTextFormat004) {
  EXPECT_EQ(kContentType, "text/plain; version=0.0.4; charset=utf-8");
}

TEST(CounterTest, WithoutLabelsRendersZeroBeforeTheFirstIncrement) {
  Registry registry;
  CounterFamily& family = registry.AddCounter("modeldist_requests_total", "Requests answered.");
  EXPECT_EQ(registry.Render(),
            "# HELP modeldist_requests_total Requests answered.\n"
            "# TYPE modeldist_requests_total counter\n"
            "modeldist_requests_total 0\n");
  Counter* counter = family.With({});
  counter->Increment();
  counter->Add(41);
  family.Add({}, 1000000);
  EXPECT_EQ(counter->Value(), 1000042);
  EXPECT_EQ(registry.Render(),
            "# HELP modeldist_requests_total Requests answered.\n"
            "# TYPE modeldist_requests_total counter\n"
            "modeldist_requests_total 1000042\n");
}

TEST(CounterTest, WithLabelsRendersEachSeriesSortedByLabelValues) {
  Registry registry;
  CounterFamily& rpcs =
      registry.AddCounter("modeldist_rpcs_total", "RPCs answered.", {"method", "code"});
  EXPECT_EQ(registry.Render(), "") << "a labelled family has no series before With()";
  rpcs.With({"Read", "OK"})->Add(3);
  rpcs.Add({"GetManifest", "NOT_FOUND"}, 1);
  rpcs.With({"Read", "DATA_LOSS"})->Increment();
  EXPECT_EQ(registry.Render(),
            "# HELP modeldist_rpcs_total RPCs answered.\n"
            "# TYPE modeldist_rpcs_total counter\n"
            "modeldist_rpcs_total{method=\"GetManifest\",code=\"NOT_FOUND\"} 1\n"
            "modeldist_rpcs_total{method=\"Read\",code=\"DATA_LOSS\"} 1\n"
            "modeldist_rpcs_total{method=\"Read\",code=\"OK\"} 3\n");
}

TEST(CounterTest, WithReturnsTheSamePointerWhateverIsAddedLater) {
  Registry registry;
  CounterFamily& family = registry.AddCounter("x_total", "X.", {"key"});
  Counter* first = family.With({"first"});
  first->Add(5);
  for (int i = 0; i < 10000; ++i) family.With({absl::StrCat("k", i)});  // rehashes the map
  EXPECT_EQ(family.With({"first"}), first);
  EXPECT_EQ(first->Value(), 5);
}

TEST(RenderTest, EscapesHelpAndLabelValues) {
  Registry registry;
  CounterFamily& family =
      registry.AddCounter("modeldist_paths_total", "Reads of C:\\dir.\nSecond \"line\".", {"path"});
  family.With({"C:\\DIR\\FILE.TXT"})->Increment();
  family.With({"say \"hi\"\nbye"})->Increment();
  family.With({""})->Increment();
  // HELP escapes \ and newline; label values also ". UTF-8 passes as it is.
  EXPECT_EQ(registry.Render(), R"(# HELP modeldist_paths_total Reads of C:\\dir.\nSecond "line".
# TYPE modeldist_paths_total counter
modeldist_paths_total{path=""} 1
modeldist_paths_total{path="C:\\DIR\\FILE.TXT"} 1
modeldist_paths_total{path="say \"hi\"\nbye"} 1
)");
}

TEST(RenderTest, InvalidUtf8InLabelValuesBecomesReplacementCharacters) {
  Registry registry;
  CounterFamily& family = registry.AddCounter("x_total", "X.", {"v"});
  family.With({"a caf\xc3\xa9 \xf0\x9f\x90\x8b"})->Increment();  // valid: left alone
  family.With({"b ok\xff"})->Increment();                        // not UTF-8 at all
  family.With({"c \xed\xa0\x80"})->Increment();                  // a surrogate (U+D800)
  family.With({"d \xc0\xaf"})->Increment();                      // overlong '/'
  family.With({"e \xe2\x82"})->Increment();                      // cut short
  EXPECT_EQ(registry.Render(),
            "# HELP x_total X.\n"
            "# TYPE x_total counter\n"
            "x_total{v=\"a caf\xc3\xa9 \xf0\x9f\x90\x8b\"} 1\n"
            "x_total{v=\"b ok\xef\xbf\xbd\"} 1\n"
            "x_total{v=\"c \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 1\n"
            "x_total{v=\"d \xef\xbf\xbd\xef\xbf\xbd\"} 1\n"
            "x_total{v=\"e \xef\xbf\xbd\xef\xbf\xbd\"} 1\n");
}

TEST(RenderTest, FamiliesSortedByNameAndNoHelpLineWithoutHelp) {
  Registry registry;
  registry.AddGauge("c_gauge", "").With({})->Set(1);
  registry.AddCounter("b_total", "B.").With({})->Increment();
  registry.AddCounter("a_total", "A.", {"x"});  // no series: left out
  registry.AddCounter("a_b_total", "AB.");
  EXPECT_EQ(registry.Render(),
            "# HELP a_b_total AB.\n"
            "# TYPE a_b_total counter\n"
            "a_b_total 0\n"
            "# HELP b_total B.\n"
            "# TYPE b_total counter\n"
            "b_total 1\n"
            "# TYPE c_gauge gauge\n"
            "c_gauge 1\n");
}

TEST(GaugeTest, FormatsFloatsAsPrometheusReadsThem) {
  Registry registry;
  GaugeFamily& family = registry.AddGauge("modeldist_value", "Values.", {"case"});
  family.Set({"a_integer"}, 42);
  family.Set({"b_negative"}, -3);
  family.Set({"c_fraction"}, 0.25);
  family.Set({"d_small"}, 1e-7);
  family.Set({"e_huge"}, 1e300);
  family.Set({"f_two_to_53"}, 9007199254740992.0);
  family.Set({"g_two_to_64"}, 18446744073709551616.0);
  family.Set({"h_inf"}, std::numeric_limits<double>::infinity());
  family.Set({"i_minus_inf"}, -std::numeric_limits<double>::infinity());
  family.Set({"j_nan"}, std::nan(""));
  family.Set({"k_minus_zero"}, -0.0);
  family.Set({"l_third"}, 1.0 / 3);
  family.Add({"m_added"}, 1.5);
  family.With({"m_added"})->Add(1);
  family.With({"n_untouched"});
  EXPECT_EQ(registry.Render(),
            "# HELP modeldist_value Values.\n"
            "# TYPE modeldist_value gauge\n"
            "modeldist_value{case=\"a_integer\"} 42\n"
            "modeldist_value{case=\"b_negative\"} -3\n"
            "modeldist_value{case=\"c_fraction\"} 0.25\n"
            "modeldist_value{case=\"d_small\"} 1e-07\n"
            "modeldist_value{case=\"e_huge\"} 1e+300\n"
            "modeldist_value{case=\"f_two_to_53\"} 9007199254740992\n"
            "modeldist_value{case=\"g_two_to_64\"} 18446744073709551616\n"
            "modeldist_value{case=\"h_inf\"} +Inf\n"
            "modeldist_value{case=\"i_minus_inf\"} -Inf\n"
            "modeldist_value{case=\"j_nan\"} NaN\n"
            "modeldist_value{case=\"k_minus_zero\"} 0\n"
            "modeldist_value{case=\"l_third\"} 0.3333333333333333\n"
            "modeldist_value{case=\"m_added\"} 2.5\n"
            "modeldist_value{case=\"n_untouched\"} 0\n");
}

TEST(HistogramTest, BucketsAreCumulativeWithInfSumAndCount) {
  Registry registry;
  HistogramFamily& family =
      registry.AddHistogram("modeldist_rpc_seconds", "RPC latency.", {"method"}, {0.25, 1, 8});
  Histogram* read = family.With({"Read"});
  // Exact binary fractions, so the sum is exact.
  for (double v : {0.125, 0.25, 0.5, 4.0, 16.0}) read->Observe(v);  // 0.25 is in le="0.25"
  family.Observe({"Write"}, 2);
  EXPECT_EQ(registry.Render(),
            "# HELP modeldist_rpc_seconds RPC latency.\n"
            "# TYPE modeldist_rpc_seconds histogram\n"
            "modeldist_rpc_seconds_bucket{method=\"Read\",le=\"0.25\"} 2\n"
            "modeldist_rpc_seconds_bucket{method=\"Read\",le=\"1\"} 3\n"
            "modeldist_rpc_seconds_bucket{method=\"Read\",le=\"8\"} 4\n"
            "modeldist_rpc_seconds_bucket{method=\"Read\",le=\"+Inf\"} 5\n"
            "modeldist_rpc_seconds_sum{method=\"Read\"} 20.875\n"
            "modeldist_rpc_seconds_count{method=\"Read\"} 5\n"
            "modeldist_rpc_seconds_bucket{method=\"Write\",le=\"0.25\"} 0\n"
            "modeldist_rpc_seconds_bucket{method=\"Write\",le=\"1\"} 0\n"
            "modeldist_rpc_seconds_bucket{method=\"Write\",le=\"8\"} 1\n"
            "modeldist_rpc_seconds_bucket{method=\"Write\",le=\"+Inf\"} 1\n"
            "modeldist_rpc_seconds_sum{method=\"Write\"} 2\n"
            "modeldist_rpc_seconds_count{method=\"Write\"} 1\n");
  EXPECT_EQ(read->BucketCounts(), (std::vector<int64_t>{2, 1, 1, 1}));
  EXPECT_EQ(read->Sum(), 20.875);
}

TEST(HistogramTest, WithoutLabelsRendersFromTheStartAndTakesDurationsInSeconds) {
  Registry registry;
  HistogramFamily& family =
      registry.AddHistogram("modeldist_scrub_seconds", "Scrub time.", {}, {0.001, 0.5, 1e6});
  EXPECT_EQ(registry.Render(),
            "# HELP modeldist_scrub_seconds Scrub time.\n"
            "# TYPE modeldist_scrub_seconds histogram\n"
            "modeldist_scrub_seconds_bucket{le=\"0.001\"} 0\n"
            "modeldist_scrub_seconds_bucket{le=\"0.5\"} 0\n"
            "modeldist_scrub_seconds_bucket{le=\"1000000\"} 0\n"
            "modeldist_scrub_seconds_bucket{le=\"+Inf\"} 0\n"
            "modeldist_scrub_seconds_sum 0\n"
            "modeldist_scrub_seconds_count 0\n");
  family.With({})->ObserveDuration(absl::Milliseconds(500));
  family.With({})->Observe(std::nan(""));  // counted above every bound; the sum is NaN
  EXPECT_EQ(registry.Render(),
            "# HELP modeldist_scrub_seconds Scrub time.\n"
            "# TYPE modeldist_scrub_seconds histogram\n"
            "modeldist_scrub_seconds_bucket{le=\"0.001\"} 0\n"
            "modeldist_scrub_seconds_bucket{le=\"0.5\"} 1\n"
            "modeldist_scrub_seconds_bucket{le=\"1000000\"} 1\n"
            "modeldist_scrub_seconds_bucket{le=\"+Inf\"} 2\n"
            "modeldist_scrub_seconds_sum NaN\n"
            "modeldist_scrub_seconds_count 2\n");
}

TEST(GaugeCallbackTest, EvaluatedAtEachRenderAndSortedByLabelValues) {
  Registry registry;
  double sequence = 7;
  int calls = 0;
  registry.AddGaugeCallback("modeldist_catalog_sequence", "Catalog sequence by tier.", {"tier"},
                            [&] {
                              ++calls;
                              return GaugeValues{{{"stable"}, sequence}, {{"beta"}, 3}};
                            });
  registry.AddGaugeCallback("modeldist_blob_store_bytes", "Bytes in the blob store.", {}, [] {
    return GaugeValues{{{}, 5e9}};
  });
  registry.AddGaugeCallback("modeldist_nothing", "Nothing yet.", {"x"},
                            [] { return GaugeValues{}; });
  EXPECT_EQ(calls, 0) << "only Render() calls them";
  EXPECT_EQ(registry.Render(),
            "# HELP modeldist_blob_store_bytes Bytes in the blob store.\n"
            "# TYPE modeldist_blob_store_bytes gauge\n"
            "modeldist_blob_store_bytes 5000000000\n"
            "# HELP modeldist_catalog_sequence Catalog sequence by tier.\n"
            "# TYPE modeldist_catalog_sequence gauge\n"
            "modeldist_catalog_sequence{tier=\"beta\"} 3\n"
            "modeldist_catalog_sequence{tier=\"stable\"} 7\n");
  sequence = 1793520000123456;
  EXPECT_THAT(registry.Render(),
              HasSubstr("modeldist_catalog_sequence{tier=\"stable\"} 1793520000123456\n"));
  EXPECT_EQ(calls, 2);
}

TEST(GaugeCallbackTest, RunsWithoutTheRegistryLockSoItMayTakeOtherLocks) {
  Registry registry;
  // A callback that registers would deadlock if Render() held the registry's lock.
  bool registered = false;
  registry.AddGaugeCallback("a_gauge", "A.", {}, [&] {
    if (!registered) {
      registry.AddCounter("z_total", "Z.");
      registered = true;
    }
    return GaugeValues{{{}, 1}};
  });
  EXPECT_THAT(registry.Render(), Not(HasSubstr("z_total")));
  EXPECT_THAT(registry.Render(), HasSubstr("z_total 0\n"));
}

// The value on the line that starts with `prefix` ("name{labels} "), or -1.
int64_t SampleValue(const std::string& text, absl::string_view prefix) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, prefix)) continue;
    int64_t value = -1;
    if (!absl::SimpleAtoi(line.substr(prefix.size()), &value)) return -1;
    return value;
  }
  return -1;
}

TEST(ConcurrencyTest, IncrementsFromManyThreadsAddUpExactly) {
  Registry registry;
  CounterFamily& family = registry.AddCounter("x_total", "X.", {"who"});
  Counter* shared = family.With({"shared"});
  Gauge* gauge = registry.AddGauge("in_flight", "In flight.").With({});
  Histogram* histogram = registry.AddHistogram("latency_seconds", "Latency.", {}, {0.5}).With({});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100000;

  // Renders all along, checking that a histogram's _count is its +Inf bucket at every render.
  std::atomic<bool> done{false};
  int renders = 0;
  std::thread renderer([&] {
    while (!done.load()) {
      const std::string text = registry.Render();
      const int64_t inf = SampleValue(text, "latency_seconds_bucket{le=\"+Inf\"} ");
      const int64_t count = SampleValue(text, "latency_seconds_count ");
      ASSERT_EQ(inf, count) << text;
      ++renders;
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter* mine = family.With({absl::StrCat("thread", t)});
      for (int i = 0; i < kPerThread; ++i) {
        shared->Increment();  // the hot path: a cached pointer
        mine->Add(2);
        gauge->Add(1);
        histogram->Observe(i % 2 == 0 ? 0.25 : 1.0);
        if (i % 100 == 0) family.Add({"shared"}, 1);  // the slow path, concurrently
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  done = true;
  renderer.join();
  EXPECT_GT(renders, 0);

  const int64_t slow = kThreads * (kPerThread / 100);
  EXPECT_EQ(shared->Value(), kThreads * kPerThread + slow);
  EXPECT_EQ(gauge->Value(), kThreads * kPerThread);
  EXPECT_EQ(histogram->BucketCounts(),
            (std::vector<int64_t>{kThreads * kPerThread / 2, kThreads * kPerThread / 2}));
  const std::string text = registry.Render();
  EXPECT_EQ(SampleValue(text, "x_total{who=\"shared\"} "), kThreads * kPerThread + slow);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(SampleValue(text, absl::StrCat("x_total{who=\"thread", t, "\"} ")), 2 * kPerThread);
  }
  EXPECT_EQ(SampleValue(text, "latency_seconds_count "), kThreads * kPerThread);
  EXPECT_EQ(SampleValue(text, "in_flight "), kThreads * kPerThread);
}

TEST(ConcurrencyTest, RegisteringWhileRendering) {
  Registry registry;
  constexpr int kThreads = 4;
  constexpr int kFamilies = 200;
  std::atomic<bool> done{false};
  std::thread renderer([&] {
    while (!done.load()) registry.Render();
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kFamilies; ++i) {
        registry.AddCounter(absl::StrCat("family_", t, "_", i, "_total"), "F.").With({})->Add(i);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  done = true;
  renderer.join();
  const std::string text = registry.Render();
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kFamilies; ++i) {
      EXPECT_EQ(SampleValue(text, absl::StrCat("family_", t, "_", i, "_total ")), i);
    }
  }
}

TEST(NamesTest, ValidNamesAreAccepted) {
  Registry registry;
  registry.AddCounter("a", "");
  registry.AddCounter("_under", "");
  registry.AddCounter(":colon:rule_9", "");
  registry.AddGauge("B_9", "", {"_x", "a9", "Method"});
  registry.AddHistogram("h", "", {"method"}, {});
  SUCCEED();
}

// Each registration below is a programming error: it aborts, saying what is wrong.
TEST(NamesDeathTest, InvalidMetricNamesAbort) {
  Registry registry;
  EXPECT_DEATH(registry.AddCounter("9lives_total", "x"), "invalid metric name \"9lives_total\"");
  EXPECT_DEATH(registry.AddCounter("a-b_total", "x"), "invalid metric name \"a-b_total\"");
  EXPECT_DEATH(registry.AddGauge("", "x"), "invalid metric name \"\"");
  EXPECT_DEATH(registry.AddGauge("caf\xc3\xa9", "x"), "invalid metric name");
  EXPECT_DEATH(registry.AddHistogram("a b", "x", {}, {1}), "invalid metric name \"a b\"");
  EXPECT_DEATH(registry.AddGaugeCallback("a\nb", "x", {}, [] { return GaugeValues{}; }),
               "invalid metric name");
}

TEST(NamesDeathTest, InvalidLabelNamesAbort) {
  Registry registry;
  const std::vector<std::string> reserved = {"__name"};
  EXPECT_DEATH(registry.AddCounter("x_total", "x", reserved), "invalid label name \"__name\"");
  const std::vector<std::string> colon = {"a:b"};
  EXPECT_DEATH(registry.AddGauge("x", "x", colon), "invalid label name \"a:b\"");
  const std::vector<std::string> digit = {"ok", "9a"};
  EXPECT_DEATH(registry.AddGauge("x", "x", digit), "invalid label name \"9a\"");
  const std::vector<std::string> empty = {""};
  EXPECT_DEATH(registry.AddGauge("x", "x", empty), "invalid label name \"\"");
  const std::vector<std::string> twice = {"a", "b", "a"};
  EXPECT_DEATH(registry.AddGauge("x", "x", twice), "label \"a\" given twice");
  const std::vector<std::string> le = {"method", "le"};
  EXPECT_DEATH(registry.AddHistogram("h", "x", le, {1}), "\"le\" is reserved");
}

TEST(NamesDeathTest, ANameTakenTwiceAborts) {
  Registry registry;
  registry.AddCounter("x_total", "X.");
  registry.AddHistogram("h", "H.", {}, {1});
  registry.AddCounter("c_sum", "C.");
  EXPECT_DEATH(registry.AddCounter("x_total", "X."), "x_total is already taken");
  EXPECT_DEATH(registry.AddGauge("x_total", "X."), "x_total is already taken");
  EXPECT_DEATH(registry.AddCounter("h_count", "X."), "h_count is already taken");
  EXPECT_DEATH(registry.AddGauge("h_bucket", "X."), "h_bucket is already taken");
  EXPECT_DEATH(registry.AddHistogram("c", "X.", {}, {1}), "c_sum is already taken");
}

TEST(HistogramDeathTest, BoundsMustBeFiniteAndStrictlyIncreasing) {
  Registry registry;
  EXPECT_DEATH(registry.AddHistogram("h", "x", {}, {1, 1}), "strictly increasing");
  EXPECT_DEATH(registry.AddHistogram("h", "x", {}, {2, 1}), "strictly increasing");
  EXPECT_DEATH(registry.AddHistogram("h", "x", {}, {1, std::numeric_limits<double>::infinity()}),
               "the \\+Inf bucket is implicit");
  EXPECT_DEATH(registry.AddHistogram("h", "x", {}, {std::nan("")}), "must be finite");
}

TEST(UseDeathTest, WrongArityAndNegativeCountsAbort) {
  Registry registry;
  CounterFamily& family = registry.AddCounter("x_total", "X.", {"a", "b"});
  EXPECT_DEATH(family.With({"only one"}), "metric x_total: 1 label values for 2 labels");
  EXPECT_DEATH(family.With({}), "metric x_total: 0 label values for 2 labels");
  Counter* counter = registry.AddCounter("y_total", "Y.").With({});
  EXPECT_DEATH(counter->Add(-1), "a counter cannot go down");
  registry.AddGaugeCallback("g", "G.", {"tier"}, [] {
    return GaugeValues{{{"stable", "extra"}, 1}};
  });
  EXPECT_DEATH(registry.Render(), "metric g: 2 label values for 1 labels");
}

// --- The output as real parsers read it (tests/node/check_prometheus.mjs: promtool and the
// npm package parse-prometheus-text-format).

struct CheckResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Pipes `text` through the checker. Exit code 2 (a checker missing) or 127 (no node) means
// skip.
CheckResult RunChecker(const std::string& text, bool allow_lint = false) {
  CheckResult result;
#ifdef MODELDIST_SOURCE_DIR
  static int run = 0;
  const std::string base =
      absl::StrCat(::testing::TempDir(), "/metrics_check_", getpid(), "_", run++);
  {
    std::ofstream in(base + ".in", std::ios::binary);
    in << text;
  }
  const std::string command = absl::StrCat(
      "node '", MODELDIST_SOURCE_DIR, "/tests/node/check_prometheus.mjs'",
      allow_lint ? " --allow-lint" : "", " <'", base, ".in' >'", base, ".out' 2>'", base, ".err'");
  const int status = std::system(command.c_str());
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = ReadFile(base + ".out");
  result.err = ReadFile(base + ".err");
  for (const char* suffix : {".in", ".out", ".err"}) std::remove((base + suffix).c_str());
#else
  (void)text;
  (void)allow_lint;
  result.exit_code = 2;
  result.err = "built without MODELDIST_SOURCE_DIR (the script's location)";
#endif
  return result;
}

#define SKIP_WITHOUT_CHECKER(result)                                            \
  if ((result).exit_code == 2 || (result).exit_code == 127) {                   \
    GTEST_SKIP() << "the Prometheus checker cannot run here: " << (result).err; \
  }

// Every feature at once, with names that pass promtool's lint.
void FillSample(Registry& registry) {
  CounterFamily& rpcs =
      registry.AddCounter("modeldist_rpcs_total", "RPCs answered.", {"method", "code"});
  rpcs.With({"Read", "OK"})->Add(3);
  rpcs.With({"GetManifest", "NOT_FOUND"})->Increment();
  registry.AddCounter("modeldist_sent_bytes_total", "Artifact bytes sent.")
      .With({})
      ->Add(int64_t{5} << 40);
  registry
      .AddCounter("modeldist_escapes_total", "Help with \\ and\nnewline and \"quotes\".", {"path"})
      .With({"C:\\a \"b\"\nc \xff caf\xc3\xa9"})
      ->Increment();
  GaugeFamily& values = registry.AddGauge("modeldist_values", "Odd values.", {"case"});
  values.Set({"nan"}, std::nan(""));
  values.Set({"inf"}, std::numeric_limits<double>::infinity());
  values.Set({"minus_inf"}, -std::numeric_limits<double>::infinity());
  values.Set({"small"}, 1e-7);
  values.Set({"big"}, 1.8446744073709552e+19);
  values.Set({"third"}, 1.0 / 3);
  HistogramFamily& latency = registry.AddHistogram("modeldist_rpc_duration_seconds", "RPC latency.",
                                                   {"method"}, {0.005, 0.1, 1, 10});
  latency.Observe({"Read"}, 0.05);
  latency.Observe({"Read"}, 30);
  latency.Observe({"Write"}, 0.001);
  registry.AddHistogram("modeldist_chunk_bytes", "Chunk sizes.", {}, {1 << 20, 4 << 20})
      .Observe({}, 1 << 20);
  registry.AddGaugeCallback("modeldist_catalog_sequence", "Catalog sequence by tier.", {"tier"},
                            [] {
                              return GaugeValues{{{"stable"}, 1793520000123456}, {{"beta"}, 3}};
                            });
  registry.AddGaugeCallback("modeldist_blob_store_bytes", "Bytes in the blob store.", {}, [] {
    return GaugeValues{{{}, 5e9}};
  });
}

// name -> type of each family in the checker's JSON (one family per line).
std::map<std::string, std::string> FamilyTypes(const std::string& json) {
  std::map<std::string, std::string> types;
  for (absl::string_view line : absl::StrSplit(json, '\n')) {
    if (!absl::ConsumePrefix(&line, "{\"name\":\"")) continue;
    const std::string name(line.substr(0, line.find('"')));
    const size_t type = line.find("\"type\":\"");
    if (type == absl::string_view::npos) continue;
    line.remove_prefix(type + 8);
    types[name] = std::string(line.substr(0, line.find('"')));
  }
  return types;
}

TEST(ExpositionTest, RealParsersAcceptTheRenderedText) {
  Registry registry;
  FillSample(registry);
  const std::string text = registry.Render();
  const CheckResult result = RunChecker(text);
  SKIP_WITHOUT_CHECKER(result);
  ASSERT_EQ(result.exit_code, 0) << result.err << "\n" << text;
  EXPECT_EQ(FamilyTypes(result.out), (std::map<std::string, std::string>{
                                         {"modeldist_blob_store_bytes", "GAUGE"},
                                         {"modeldist_catalog_sequence", "GAUGE"},
                                         {"modeldist_chunk_bytes", "HISTOGRAM"},
                                         {"modeldist_escapes_total", "COUNTER"},
                                         {"modeldist_rpc_duration_seconds", "HISTOGRAM"},
                                         {"modeldist_rpcs_total", "COUNTER"},
                                         {"modeldist_sent_bytes_total", "COUNTER"},
                                         {"modeldist_values", "GAUGE"},
                                     }))
      << result.out;
  // What the parser read back, in prom2json's shape.
  EXPECT_THAT(result.out,
              HasSubstr("\"help\":\"Help with \\\\ and\\nnewline and \\\"quotes\\\".\""));
  EXPECT_THAT(result.out, HasSubstr("{\"value\":\"1\",\"labels\":{\"path\":\"C:\\\\a "
                                    "\\\"b\\\"\\nc \xef\xbf\xbd caf\xc3\xa9\"}}"));
  EXPECT_THAT(result.out, HasSubstr("\"value\":\"5497558138880\""));
  EXPECT_THAT(result.out, HasSubstr("{\"buckets\":{\"1048576\":\"1\",\"4194304\":\"1\","
                                    "\"+Inf\":\"1\"},\"count\":\"1\",\"sum\":\"1048576\"}"));
}

TEST(ExpositionTest, RealParsersRejectBrokenText) {
  const CheckResult good = RunChecker("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n");
  SKIP_WITHOUT_CHECKER(good);
  EXPECT_EQ(good.exit_code, 0) << good.err;
  for (const std::string& broken : {
           std::string("# HELP a_total A.\n# TYPE a_total counter\na_total 1"),  // no final \n
           std::string("a_total{path=\"\\q\"} 1\n"),                             // bad escape
           std::string("a_total{path=\"unterminated} 1\n"),
           std::string("a_total one\n"),            // no number
           std::string("a-b_total 1\n"),            // bad name
           std::string("a_total{v=\"\xff\"} 1\n"),  // not UTF-8
           std::string("# TYPE a_total counter\n# TYPE a_total counter\na_total 1\n"),
           std::string("# TYPE a_total summer\na_total 1\n"),
       }) {
    SCOPED_TRACE(broken);
    const CheckResult result = RunChecker(broken, /*allow_lint=*/true);
    EXPECT_EQ(result.exit_code, 1) << result.out;
    EXPECT_THAT(result.err, HasSubstr("rejected"));
  }
  // Lint: a counter that does not end in _total parses but is not clean.
  const std::string unlinted = "# HELP a A.\n# TYPE a counter\na 1\n";
  EXPECT_EQ(RunChecker(unlinted).exit_code, 1);
  EXPECT_EQ(RunChecker(unlinted, /*allow_lint=*/true).exit_code, 0);
}

}  // namespace
}  // namespace modeldist::metrics
