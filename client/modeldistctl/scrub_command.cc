#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "client/modeldistctl/registry_client.h"
#include "common/flags.h"
#include "common/json.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// "damaged", "missing", "restored", "ok": how a person reads the outcome.
std::string OutcomeName(v1::ScrubBlobsResponse::Outcome outcome) {
  std::string name = v1::ScrubBlobsResponse::Outcome_Name(outcome);
  return absl::AsciiStrToLower(name);
}

}  // namespace

void ScrubFlags(Flags* f) {
  f->Add("rate", "BYTES", "",
         "read at most this many bytes per second on the server, e.g. 200MiB, so downloads "
         "keep the disk (default: as fast as the disk allows)");
  f->AddBool("json", "print the summary and what was found as JSON");
}

absl::Status RunScrub(Invocation& inv, const Flags& flags) {
  MD_RETURN_IF_ERROR(NoPositional(flags, "scrub"));
  v1::ScrubBlobsRequest request;
  if (flags.IsSet("rate")) {
    absl::StatusOr<int64_t> rate = ParseSize(flags.Get("rate"));
    if (!rate.ok() || *rate < 0) {
      return UsageError(absl::StrCat("--rate: \"", flags.Get("rate"),
                                     "\" is not a number of bytes per second, e.g. 200MiB"));
    }
    request.set_bytes_per_second(*rate);
  }
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  const bool json = WantJson(inv, flags);

  // A stream with no deadline (a scrub of a large store takes hours); ^C ends the process,
  // the connection with it, and so the server's pass.
  std::unique_ptr<grpc::ClientContext> context = client->NewStreamContext();
  std::unique_ptr<grpc::ClientReader<v1::ScrubBlobsResponse>> reader =
      client->stub().ScrubBlobs(context.get(), request);
  const absl::Time start = absl::Now();
  std::unique_ptr<ProgressMeter> meter;       // made at the first message, which has the totals
  std::vector<v1::ScrubBlobsResponse> found;  // everything but OK, in the order found
  v1::ScrubBlobsResponse last;
  v1::ScrubBlobsResponse response;
  while (reader->Read(&response)) {
    if (!meter) {
      meter = std::make_unique<ProgressMeter>(&inv.err(), inv.err_is_tty(), "scrubbing", 0,
                                              response.bytes_total());
    }
    meter->Update(response.bytes_done());
    if (response.outcome() != v1::ScrubBlobsResponse::OK) {
      if (!json) {
        meter->Finish();  // stdout and stderr may share the terminal: no half-erased line
        inv.out() << OutcomeName(response.outcome()) << " " << response.digest();
        if (response.size_bytes() > 0)
          inv.out() << " (" << FormatBytes(response.size_bytes()) << ")";
        inv.out() << ": " << OneLine(response.details()) << "\n" << std::flush;
      }
      found.push_back(response);
    }
    last = std::move(response);
  }
  if (meter) meter->Finish();
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (!status.ok()) return status;

  const absl::Duration took = absl::Now() - start;
  int64_t damaged = 0, missing = 0, restored = 0;
  for (const v1::ScrubBlobsResponse& r : found) {
    damaged += r.outcome() == v1::ScrubBlobsResponse::DAMAGED;
    missing += r.outcome() == v1::ScrubBlobsResponse::MISSING;
    restored += r.outcome() == v1::ScrubBlobsResponse::RESTORED;
  }
  if (json) {
    std::vector<std::string> entries;
    for (const v1::ScrubBlobsResponse& r : found) {
      entries.push_back(
          absl::StrFormat("{\"outcome\":\"%s\",\"digest\":\"%s\",\"sizeBytes\":%d,\"details\":%s}",
                          v1::ScrubBlobsResponse::Outcome_Name(r.outcome()), r.digest(),
                          r.size_bytes(), JsonQuote(r.details())));
    }
    inv.out() << absl::StrFormat(
        "{\"blobsChecked\":%d,\"bytesChecked\":%d,\"durationSeconds\":%.3f,\"damaged\":%d,"
        "\"missing\":%d,\"restored\":%d,\"found\":[%s]}\n",
        last.blobs_done(), last.bytes_done(), absl::ToDoubleSeconds(took), damaged, missing,
        restored, absl::StrJoin(entries, ","));
  } else {
    inv.out() << "checked " << last.blobs_done() << " blobs (" << FormatBytes(last.bytes_done())
              << ") in " << absl::ToInt64Seconds(took + absl::Milliseconds(500))
              << " s: " << damaged << " damaged, " << missing << " missing, " << restored
              << " restored\n";
  }
  if (damaged + missing > 0) {
    return DamageFound(absl::StrCat(
        "the scrub found ", damaged, " damaged and ", missing,
        " missing blobs; their manifests are withheld until the same files are published "
        "again (see docs/architecture.md, \"Integrity at rest\")"));
  }
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
