// ReportQueue: the file (append, reopen, torn tails, the bound, crash leftovers) and Send
// against a FleetService on loopback (report_test_fleet.h): batches of at most 100 sent once
// and in order, failures that keep what was not accepted, RESOURCE_EXHAUSTED's delay, refused
// batches dropped, and servers that refuse connections or never answer.
#include "client/agent/report_queue.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/agent/report_queue_internal.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/agent/chunk_downloader_fixture.h"
#include "tests/client/agent/report_test_fleet.h"
#include "tests/testing/test_util.h"

namespace modeldist::agent {
namespace {

using ::modeldist::testing::HasReason;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::TestFleetServer;
using ::testing::ElementsAre;

// Report number `i`: its version names it, so order and loss show.
v1::StatusReport Report(int i, v1::StatusEvent event = v1::STATUS_EVENT_ACTIVATED) {
  v1::StatusReport r;
  r.set_tier("llama8b");
  r.set_channel("stable");
  r.set_version(absl::StrCat("models/llama/versions/v", i));
  r.set_digest("sha256:" + std::string(64, 'a'));
  r.set_event(event);
  r.set_platform(v1::PLATFORM_LINUX);
  r.set_arch(v1::ARCH_X86_64);
  r.mutable_time()->set_seconds(1700000000 + i);
  return r;
}

std::vector<int> Numbers(const std::vector<v1::StatusReport>& reports) {
  std::vector<int> out;
  for (const auto& r : reports) out.push_back(std::stoi(r.version().substr(23)));
  return out;
}

std::vector<int> Range(int from, int to) {
  std::vector<int> out;
  for (int i = from; i < to; ++i) out.push_back(i);
  return out;
}

int64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

class ReportQueueTest : public ::testing::Test {
 protected:
  std::unique_ptr<ReportQueue> Open(int64_t max_bytes = 1 << 20) {
    auto queue = ReportQueue::Open(dir_.path(), max_bytes);
    EXPECT_TRUE(queue.ok()) << queue.status();
    return queue.ok() ? *std::move(queue) : nullptr;
  }
  void AppendRange(ReportQueue& queue, int from, int to) {
    for (int i = from; i < to; ++i) ASSERT_TRUE(queue.Append(Report(i)).ok()) << i;
  }
  ReportSendOptions Send(const std::string& server = "") {
    return {.server = server.empty() ? fleet_.address() : server,
            .device_id = "device-1",
            .app_version = "app 3.1",
            .timeout = absl::Seconds(5)};
  }
  std::string QueueFile() const { return dir_.Join("reports/queue"); }

  ScratchDir dir_;
  TestFleetServer fleet_;
};

TEST_F(ReportQueueTest, AppendedReportsSurviveReopenAndAreSentOnceInOrder) {
  {
    auto queue = Open();
    ASSERT_NE(queue, nullptr);
    AppendRange(*queue, 0, 3);
    EXPECT_EQ(queue->size(), 3);
  }
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  EXPECT_EQ(queue->size(), 3);
  ReportSendStats stats;
  ASSERT_TRUE(queue->Send(Send(), &stats).ok());
  EXPECT_EQ(stats.sent, 3);
  EXPECT_EQ(queue->size(), 0);
  ASSERT_EQ(fleet_.fleet().batches().size(), 1u);
  const v1::ReportStatusRequest batch = fleet_.fleet().batches()[0];
  EXPECT_EQ(batch.device_id(), "device-1");
  EXPECT_EQ(batch.app_version(), "app 3.1");
  EXPECT_FALSE(batch.agent_version().empty());
  ASSERT_EQ(batch.reports_size(), 3);
  EXPECT_EQ(batch.reports(1).SerializeAsString(), Report(1).SerializeAsString());

  // Sent reports are gone for good: the next Send does not call, and the file starts over.
  ASSERT_TRUE(queue->Send(Send()).ok());
  EXPECT_EQ(fleet_.fleet().calls(), 1);
  EXPECT_LT(FileSize(QueueFile()), 64);
}

TEST_F(ReportQueueTest, TornTailIsCutOffOnOpenAndLaterAppendsAreKept) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 2);
  const int64_t good = FileSize(QueueFile());
  // A crash half-way through appending report 2: its length says more than what follows.
  const std::string whole = Report(2).SerializeAsString();
  {
    ScopedFd fd(::open(QueueFile().c_str(), O_WRONLY | O_APPEND));
    ASSERT_TRUE(fd.valid());
    const std::string torn = std::string("\x40\x00\x00\x00", 4) + "abcd" + whole.substr(0, 10);
    ASSERT_TRUE(WriteAll(fd.get(), torn.data(), torn.size()).ok());
  }
  auto reopened = Open();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->size(), 2);
  EXPECT_EQ(FileSize(QueueFile()), good);
  ASSERT_TRUE(reopened->Append(Report(3)).ok());
  ASSERT_TRUE(reopened->Send(Send()).ok());
  EXPECT_THAT(Numbers(fleet_.fleet().reports()), ElementsAre(0, 1, 3));
}

TEST_F(ReportQueueTest, RecordFailingItsCheckEndsTheQueue) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 3);
  // Flip a byte inside the last record's payload: its length is whole but its check fails.
  ::modeldist::testing::DamageFile(QueueFile(), ::modeldist::testing::FileDamage::kFlip,
                                   FileSize(QueueFile()) - 3);
  EXPECT_EQ(queue->size(), 2);
  ASSERT_TRUE(queue->Send(Send()).ok());
  EXPECT_THAT(Numbers(fleet_.fleet().reports()), ElementsAre(0, 1));
}

TEST_F(ReportQueueTest, FullQueueDropsTheOldestAndStaysWithinItsBound) {
  constexpr int64_t kBound = 2000;
  auto queue = Open(kBound);
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 60);
  EXPECT_LE(FileSize(QueueFile()), kBound);
  const int64_t kept = queue->size();
  EXPECT_GT(kept, 5);
  EXPECT_LT(kept, 60);
  ASSERT_TRUE(queue->Send(Send()).ok());
  // The newest ones, in order, none twice.
  EXPECT_EQ(Numbers(fleet_.fleet().reports()), Range(60 - static_cast<int>(kept), 60));
}

TEST_F(ReportQueueTest, SendsInBatchesOfAtMostOneHundredEachReportOnceInOrder) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 250);
  ReportSendStats stats;
  ASSERT_TRUE(queue->Send(Send(), &stats).ok());
  EXPECT_EQ(stats.batches, 3);
  std::vector<int> sizes;
  for (const auto& batch : fleet_.fleet().batches()) sizes.push_back(batch.reports_size());
  EXPECT_THAT(sizes, ElementsAre(100, 100, 50));
  EXPECT_EQ(Numbers(fleet_.fleet().reports()), Range(0, 250));
  EXPECT_EQ(queue->size(), 0);
}

TEST_F(ReportQueueTest, FailureMidwayKeepsTheRestForTheNextSend) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 250);
  fleet_.fleet().set_answer([](grpc::ServerContext*, int call, const v1::ReportStatusRequest&) {
    return call == 1 ? MakeError(absl::StatusCode::kInternal, "BOOM", "boom") : absl::OkStatus();
  });
  EXPECT_THAT(queue->Send(Send()), HasReason(absl::StatusCode::kInternal, "BOOM"));
  EXPECT_EQ(queue->size(), 150);
  // Reopened (a later run), the rest goes, starting where the failure stopped.
  auto later = Open();
  ASSERT_NE(later, nullptr);
  ASSERT_TRUE(later->Send(Send()).ok());
  EXPECT_EQ(Numbers(fleet_.fleet().reports()), Range(0, 250));
}

TEST_F(ReportQueueTest, TransientErrorsAreRetriedWithinTheDeadline) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 150);
  fleet_.fleet().set_answer([](grpc::ServerContext*, int call, const v1::ReportStatusRequest&) {
    return call == 0 || call == 2 ? absl::UnavailableError("busy") : absl::OkStatus();
  });
  ASSERT_TRUE(queue->Send(Send()).ok());
  EXPECT_EQ(fleet_.fleet().calls(), 4);
  EXPECT_EQ(Numbers(fleet_.fleet().reports()), Range(0, 150));
}

TEST_F(ReportQueueTest, ResourceExhaustedStopsKeepsTheRestAndHonoursTheDelay) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 250);
  fleet_.fleet().set_answer([](grpc::ServerContext*, int call, const v1::ReportStatusRequest&) {
    if (call != 1) return absl::OkStatus();
    return WithRetryDelay(
        MakeError(absl::StatusCode::kResourceExhausted, "DEVICE_RATE_LIMITED", "slow down"),
        absl::Milliseconds(700));
  });
  const absl::Status first = queue->Send(Send());
  EXPECT_THAT(first, HasReason(absl::StatusCode::kResourceExhausted, "DEVICE_RATE_LIMITED"));
  EXPECT_EQ(fleet_.fleet().calls(), 2);  // not retried
  EXPECT_EQ(queue->size(), 150);
  // Within the delay: refused here, without calling.
  const absl::Status early = queue->Send(Send());
  EXPECT_THAT(early, HasReason(absl::StatusCode::kResourceExhausted, "DEVICE_RATE_LIMITED"));
  EXPECT_TRUE(RetryDelay(early).has_value());
  EXPECT_EQ(fleet_.fleet().calls(), 2);
  absl::SleepFor(absl::Milliseconds(800));
  ASSERT_TRUE(queue->Send(Send()).ok());
  EXPECT_EQ(Numbers(fleet_.fleet().reports()), Range(0, 250));
}

TEST_F(ReportQueueTest, BatchRefusedAsInvalidIsDroppedAndTheQueueGoesOn) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 250);
  fleet_.fleet().set_answer([](grpc::ServerContext*, int call, const v1::ReportStatusRequest&) {
    return call == 1 ? InvalidArgument("reports[3].event", "INVALID_EVENT", "report 3: no event")
                     : absl::OkStatus();
  });
  ReportSendStats stats;
  ASSERT_TRUE(queue->Send(Send(), &stats).ok());
  EXPECT_EQ(stats.sent, 150);
  EXPECT_EQ(stats.dropped, 100);
  EXPECT_THAT(stats.drop_message, ::testing::HasSubstr("report 3"));
  EXPECT_EQ(queue->size(), 0);
  std::vector<int> expected = Range(0, 100);
  for (int i : Range(200, 250)) expected.push_back(i);
  EXPECT_EQ(Numbers(fleet_.fleet().reports()), expected);
}

TEST_F(ReportQueueTest, RefusalOfTheDeviceItselfKeepsEverything) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 10);
  fleet_.fleet().set_answer([](grpc::ServerContext*, int, const v1::ReportStatusRequest&) {
    return InvalidArgument("device_id", "TEXT_TOO_LONG", "device id too long");
  });
  EXPECT_THAT(queue->Send(Send()), HasReason(absl::StatusCode::kInvalidArgument, "TEXT_TOO_LONG"));
  EXPECT_EQ(queue->size(), 10);
  // Without a device id nothing is even tried.
  ReportSendOptions no_id = Send();
  no_id.device_id.clear();
  EXPECT_THAT(queue->Send(no_id),
              HasReason(absl::StatusCode::kFailedPrecondition, "MISSING_DEVICE_ID"));
  EXPECT_EQ(fleet_.fleet().calls(), 1);
}

TEST_F(ReportQueueTest, ServerThatRefusesConnectionsCostsAtMostTheDeadline) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 5);
  ReportSendOptions options = Send(absl::StrCat("127.0.0.1:", ::modeldist::testing::FreePort()));
  options.timeout = absl::Seconds(1);
  const absl::Time start = absl::Now();
  const absl::Status status = queue->Send(options);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1500));
  EXPECT_TRUE(absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) << status;
  EXPECT_EQ(queue->size(), 5);
}

TEST_F(ReportQueueTest, ServerThatNeverAnswersCostsAtMostTheDeadline) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 5);
  SilentServer silent;
  ReportSendOptions options = Send(absl::StrCat("127.0.0.1:", silent.port()));
  options.timeout = absl::Seconds(1);
  const absl::Time start = absl::Now();
  const absl::Status status = queue->Send(options);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1500));
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(queue->size(), 5);
}

TEST_F(ReportQueueTest, AFullQueueIsSentWithinTheSyncsDeadline) {
  // The default 1 MiB of reports, as a device long offline keeps, written whole (appending
  // them one by one re-reads the queue each time: quadratic, and slow for a test).
  std::vector<std::string> records;
  size_t bytes = report_internal::kHeaderBytes;
  for (int i = 0;; ++i) {
    std::string record = report_internal::EncodeRecord(Report(i).SerializeAsString());
    if (bytes + record.size() > (1u << 20)) break;
    bytes += record.size();
    records.push_back(std::move(record));
  }
  ASSERT_TRUE(MakeDirs(dir_.Join("reports"), 0700).ok());
  ASSERT_TRUE(
      report_internal::WriteQueue(dir_.Join("reports"), {records.begin(), records.end()}).ok());
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  const int64_t n = static_cast<int64_t>(records.size());
  EXPECT_EQ(queue->size(), n);
  ReportSendOptions options = Send();
  options.timeout = absl::Seconds(3);  // ReportingOptions::send_timeout
  const absl::Time start = absl::Now();
  ReportSendStats stats;
  ASSERT_TRUE(queue->Send(options, &stats).ok());
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(stats.sent, n);
  EXPECT_EQ(Numbers(fleet_.fleet().reports()), Range(0, static_cast<int>(n)));
  RecordProperty("reports", static_cast<int>(n));
  RecordProperty("send_ms", static_cast<int>(absl::ToInt64Milliseconds(took)));
  std::printf("%lld reports in 1 MiB sent in %lld ms\n", static_cast<long long>(n),
              static_cast<long long>(absl::ToInt64Milliseconds(took)));
}

TEST_F(ReportQueueTest, SentOffsetOfAnotherGenerationSendsAgainRatherThanLoses) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  AppendRange(*queue, 0, 150);
  fleet_.fleet().set_answer([](grpc::ServerContext*, int call, const v1::ReportStatusRequest&) {
    return call == 1 ? MakeError(absl::StatusCode::kInternal, "BOOM", "boom") : absl::OkStatus();
  });
  EXPECT_FALSE(queue->Send(Send()).ok());
  EXPECT_EQ(queue->size(), 50);
  // What a crash between a compaction's rename and the next write of `sent` leaves.
  ASSERT_TRUE(WriteFileAtomically(dir_.Join("reports/sent"), "0123456789abcdef 100\n", 0600).ok());
  EXPECT_EQ(queue->size(), 150);
}

TEST_F(ReportQueueTest, ConcurrentAppendersLoseNothing) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      auto queue = ReportQueue::Open(dir_.path());
      ASSERT_TRUE(queue.ok());
      for (int i = 0; i < 25; ++i) ASSERT_TRUE((*queue)->Append(Report(t * 100 + i)).ok());
    });
  }
  for (auto& t : threads) t.join();
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  EXPECT_EQ(queue->size(), 100);
}

TEST_F(ReportQueueTest, ReportsTheServerWouldRefuseAreNotQueued) {
  auto queue = Open();
  ASSERT_NE(queue, nullptr);
  v1::StatusReport no_event = Report(0);
  no_event.set_event(v1::STATUS_EVENT_UNSPECIFIED);
  EXPECT_THAT(queue->Append(no_event),
              HasReason(absl::StatusCode::kInvalidArgument, "INVALID_EVENT"));
  v1::StatusReport bad_reason = Report(0, v1::STATUS_EVENT_LOAD_FAILED);
  bad_reason.set_reason("out of memory");
  EXPECT_THAT(queue->Append(bad_reason),
              HasReason(absl::StatusCode::kInvalidArgument, "INVALID_REASON"));
  v1::StatusReport no_arch = Report(0);
  no_arch.set_arch(v1::ARCH_UNSPECIFIED);
  EXPECT_THAT(queue->Append(no_arch),
              HasReason(absl::StatusCode::kInvalidArgument, "INVALID_ARCH"));
  EXPECT_EQ(queue->size(), 0);
}

}  // namespace
}  // namespace modeldist::agent
