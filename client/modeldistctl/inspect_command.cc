// `inspect` and `publish --check`: the server's publish-time model checks
// (common/model_check/model_check.h) run on local files, so a broken model is found before
// its bytes are sent.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "common/json.h"
#include "common/model_check/model_check.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// The format a file's first bytes say it has: GGUF's magic, or a zip's local header (a CoreML
// zip); FORMAT_UNSPECIFIED otherwise.
v1::Format SniffFormat(const model_check::ByteSource& source) {
  char magic[4] = {};
  absl::StatusOr<size_t> got = source.ReadAt(0, magic, sizeof(magic));
  if (!got.ok() || *got < sizeof(magic)) return v1::FORMAT_UNSPECIFIED;
  const std::string head(magic, sizeof(magic));
  if (head == "GGUF") return v1::FORMAT_GGUF;
  if (head == std::string("PK\x03\x04", 4)) return v1::FORMAT_COREML_ZIP;
  return v1::FORMAT_UNSPECIFIED;
}

// The outcome for one file, printed as a block or one JSON object.
struct Outcome {
  ModelFile file;
  absl::Status status;
  v1::ModelInfo info;
};

absl::StatusOr<std::string> OutcomeJson(const Outcome& o) {
  std::string info = "null";
  if (o.status.ok()) {
    // Not swallowed: "modelInfo":null would call a valid file's description missing.
    absl::StatusOr<std::string> json = ToJson(o.info);
    if (!json.ok()) {
      return LocalError(WithContext(json.status(), absl::StrCat(o.file.path, ": model info")));
    }
    info = *std::move(json);
  }
  return absl::StrFormat(
      "{\"file\":%s,\"format\":\"%s\",\"valid\":%s,\"error\":%s,\"modelInfo\":%s}",
      JsonQuote(o.file.path), FormatName(o.file.format), o.status.ok() ? "true" : "false",
      o.status.ok() ? "null" : JsonQuote(std::string(o.status.message())), info);
}

}  // namespace

absl::Status CheckModelFiles(Invocation& inv, const std::vector<ModelFile>& files,
                             const std::vector<std::string>& required_files, bool json) {
  model_check::CheckOptions options;
  options.required_files = required_files;
  std::vector<Outcome> outcomes;
  int invalid = 0;
  for (const ModelFile& file : files) {
    Outcome o{file, absl::OkStatus(), {}};
    absl::StatusOr<std::unique_ptr<model_check::ByteSource>> source =
        model_check::OpenFileSource(file.path);
    if (!source.ok()) return LocalError(WithContext(source.status(), file.path));
    if (o.file.format == v1::FORMAT_UNSPECIFIED) o.file.format = SniffFormat(**source);
    if (o.file.format == v1::FORMAT_UNSPECIFIED) {
      return UsageError(
          absl::StrCat(file.path, " is neither a GGUF file nor a zip; give its --format"));
    }
    absl::StatusOr<v1::ModelInfo> info = model_check::CheckModel(o.file.format, **source, options);
    if (info.ok()) {
      o.info = *std::move(info);
    } else if (info.status().code() == absl::StatusCode::kInvalidArgument) {
      o.status = info.status();
      ++invalid;
    } else {
      return LocalError(WithContext(info.status(), file.path));
    }
    outcomes.push_back(std::move(o));
  }
  if (json) {
    std::vector<std::string> items;
    for (const Outcome& o : outcomes) {
      MD_ASSIGN_OR_RETURN(std::string item, OutcomeJson(o));
      items.push_back(std::move(item));
    }
    inv.out() << "{\"files\":[" << absl::StrJoin(items, ",") << "]}\n";
  } else {
    for (const Outcome& o : outcomes) {
      inv.out() << o.file.path << ": " << FormatName(o.file.format);
      if (!o.status.ok()) {
        inv.out() << " INVALID\n  " << o.status.message() << "\n";
      } else if (!model_check::HasCheck(o.file.format)) {
        inv.out() << " (no checks for this format)\n";
      } else {
        inv.out() << " ok\n" << model_check::DescribeModelInfo(o.info);
      }
    }
  }
  if (invalid > 0) {
    return DamageFound(
        absl::StrCat(invalid, " of ", outcomes.size(), " files would be refused by the server"));
  }
  return absl::OkStatus();
}

void InspectFlags(Flags* f) {
  f->Add("format", "F", "",
         "gguf|coreml-zip|...: the files' format (default: from their first bytes)");
  f->Add("require-file", "LIST", "",
         "CoreML zip: file names the archive must hold, e.g. tokenizer.json,config.json "
         "(default: one of tokenizer.json, tokenizer.model, tokenizer_config.json, vocab.json)");
  f->AddBool("json", "print the results as JSON");
}

std::vector<std::string> RequiredFiles(const Flags& flags) {
  return absl::StrSplit(flags.Get("require-file"), ',', absl::SkipWhitespace());
}

absl::Status RunInspect(Invocation& inv, const Flags& flags) {
  if (flags.positional().empty()) return UsageError("give at least one FILE to inspect");
  v1::Format format = v1::FORMAT_UNSPECIFIED;
  if (flags.IsSet("format")) {
    MD_ASSIGN_OR_RETURN(format, ParseFormat("--format", flags.Get("format")));
  }
  std::vector<ModelFile> files;
  for (const std::string& path : flags.positional()) files.push_back({path, format});
  return CheckModelFiles(inv, files, RequiredFiles(flags), WantJson(inv, flags));
}

}  // namespace modeldist::ctl
