// `modeldistctl import-env`: the seed's six variables (env_import.h) to a published version
// bound to a tier. Every object is fetched, checked (size, SHA-256, model checks) into a
// private temp directory before the first rpc, so a wrong or broken object creates nothing;
// then publish.h's flow uploads the checked files as `publish` would.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/env_import.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "client/modeldistctl/publish.h"
#include "common/file_util.h"
#include "common/http/http.h"
#include "common/model_check/model_check.h"
#include "common/names.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// A private directory (0700) for the fetched objects, removed with what is in it when the
// command ends, however it ends.
class TempDir {
 public:
  static absl::StatusOr<TempDir> Make(const std::string& parent) {
    std::string path = absl::StrCat(parent, "/modeldistctl-import-XXXXXX");
    if (::mkdtemp(path.data()) == nullptr) {
      return LocalError(ErrnoStatus(errno, absl::StrCat("making a temp directory in ", parent,
                                                        " (choose another with --temp-dir)")));
    }
    return TempDir(std::move(path));
  }
  TempDir(TempDir&& other) noexcept
      : path_(std::move(other.path_)), files_(std::move(other.files_)) {
    other.path_.clear();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (path_.empty()) return;
    for (const std::string& file : files_) ::unlink(file.c_str());
    ::rmdir(path_.c_str());
  }

  // Creates the empty file `name` in the directory, for writing.
  absl::StatusOr<ScopedFd> Create(const std::string& name, std::string* path) {
    *path = absl::StrCat(path_, "/", name);
    ScopedFd fd(::open(path->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid()) return LocalError(ErrnoStatus(errno, absl::StrCat("creating ", *path)));
    files_.push_back(*path);
    return fd;
  }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
  std::vector<std::string> files_;
};

// Where the variables come from: the --env-file alone when given (a stale variable exported in
// the shell then cannot mix with the file's), else the environment.
absl::StatusOr<std::vector<SeedObject>> ReadSeedObjects(Invocation& inv, const Flags& flags) {
  if (!flags.IsSet("env-file")) {
    return SeedObjectsFrom([&inv](const std::string& name) { return inv.GetEnv(name); },
                           "the environment");
  }
  const std::string path = flags.Get("env-file");
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return LocalError(absl::Status(
        text.status().code(), absl::StrCat("--env-file ", path, ": ", text.status().message())));
  }
  MD_ASSIGN_OR_RETURN(auto values, ParseEnvFile(*text, path));
  return SeedObjectsFrom(
      [&values](const std::string& name) -> std::optional<std::string> {
        auto it = values.find(name);
        if (it == values.end()) return std::nullopt;
        return it->second;
      },
      path);
}

// The plan, as both the dry run and the real run print it first.
void PrintPlan(std::ostream& out, const PublishSpec& spec, const std::vector<SeedObject>& objects) {
  out << "model " << ModelName(spec.model_id) << " version " << spec.version_id << " tier "
      << spec.tier << "/" << spec.channel << "\n";
  for (const SeedObject& o : objects) {
    out << "  " << SeedTargetName(o) << " from " << o.prefix << "_URL " << http::RedactUrl(o.url)
        << " size " << o.expected.size << " (" << FormatBytes(o.expected.size) << ") digest "
        << FormatDigest(o.expected.hex) << "\n";
  }
}

// --dry-run: the plan and one HEAD per URL; nothing fetched, no rpc. The first problem found
// (an unreachable URL, a stated size that differs) is returned after every URL was tried.
absl::Status DryRun(Invocation& inv, const PublishSpec& spec,
                    const std::vector<SeedObject>& objects, const FetchOptions& fetch) {
  PrintPlan(inv.out(), spec, objects);
  absl::Status first;
  for (const SeedObject& o : objects) {
    absl::StatusOr<int64_t> stated = HeadSize(o.url, fetch);
    std::string line;
    if (!stated.ok()) {
      line = absl::StrCat("unreachable: ", stated.status().message());
      first.Update(stated.status());
    } else if (*stated < 0) {
      line = "reachable; it states no size";
    } else if (*stated == o.expected.size) {
      line = absl::StrCat("reachable; ", *stated, " bytes, as declared");
    } else {
      line = absl::StrCat("reachable; it is ", *stated, " bytes, not the ", o.expected.size,
                          " declared");
      first.Update(
          DamageFound(absl::StrCat(o.prefix, "_SIZE_BYTES says ", o.expected.size, " bytes, but ",
                                   http::RedactUrl(o.url), " is ", *stated, " bytes")));
    }
    inv.out() << "  HEAD " << SeedTargetName(o) << ": " << line << "\n";
  }
  inv.out() << "dry run: would fetch and check "
            << (objects.size() == 1 ? "this object" : "these objects")
            << ", then create the model if missing, the version with "
            << (objects.size() == 1 ? "this artifact" : "these artifacts")
            << ", publish it and bind tier " << spec.tier << "/" << spec.channel
            << "; nothing was fetched or created\n";
  return first;
}

}  // namespace

void ImportEnvFlags(Flags* f) {
  f->Add("env-file", "FILE", "",
         "read the variables from this .env file alone (KEY=VALUE lines, quotes, `export`, "
         "# comments) instead of the environment");
  f->Add("model", "M", "", "model id, e.g. llama-3.1-8b-instruct (created if missing)");
  f->Add("version", "V", "", "version id, e.g. 2026.11.0");
  f->Add("tier", "T", std::string(kSeedTier), "the tier to bind (the seed's is llama8b)");
  f->Add("channel", "C", std::string(kDefaultChannel), "the channel to bind");
  f->Add("description", "TEXT", "", "model description, used when the model is created");
  f->Add("temp-dir", "DIR", "",
         "where the objects are fetched to before they are uploaded (default $TMPDIR, else /tmp; "
         "needs room for all of them)");
  f->Add("http-ca", "FILE", "", "trust this CA bundle (PEM) for the objects' https URLs");
  f->AddBool("dry-run",
             "print what would be done, with a HEAD of each URL; fetch nothing, "
             "create nothing");
}

absl::Status RunImportEnv(Invocation& inv, const Flags& flags) {
  MD_RETURN_IF_ERROR(NoPositional(flags, "import-env"));
  for (const char* required : {"model", "version"}) {
    if (flags.Get(required).empty()) {
      return UsageError(absl::StrCat("--", required, " is required"));
    }
  }
  MD_ASSIGN_OR_RETURN(std::vector<SeedObject> objects, ReadSeedObjects(inv, flags));
  PublishSpec spec;
  spec.model_id = flags.Get("model");
  spec.version_id = flags.Get("version");
  spec.tier = flags.Get("tier");
  spec.channel = flags.Get("channel");
  spec.description = flags.Get("description");
  for (const SeedObject& o : objects) {
    PublishArtifact& a = spec.artifacts.emplace_back();
    a.platform = o.platform;
    a.arch = o.arch;
    a.format = o.format;
    a.file = o.url;  // replaced by the fetched file below
  }
  MD_RETURN_IF_ERROR(ValidatePublishSpec(spec));
  FetchOptions fetch;
  fetch.ca_file = flags.Get("http-ca");
  fetch.log = &inv.err();
  fetch.show_progress = inv.err_is_tty();
  if (flags.GetBool("dry-run")) return DryRun(inv, spec, objects, fetch);

  PrintPlan(inv.err(), spec, objects);
  std::string parent = flags.Get("temp-dir");
  if (parent.empty()) parent = inv.GetEnv("TMPDIR").value_or("/tmp");
  MD_ASSIGN_OR_RETURN(TempDir temp, TempDir::Make(parent));
  // Every object is fetched and checked before the first rpc: a bad one creates nothing.
  for (size_t i = 0; i < objects.size(); ++i) {
    const SeedObject& o = objects[i];
    const std::string name = o.format == v1::FORMAT_COREML_ZIP ? "model-coreml.zip" : "model.gguf";
    std::string path;
    MD_ASSIGN_OR_RETURN(ScopedFd fd, temp.Create(name, &path));
    MD_RETURN_IF_ERROR(FetchSeedObject(o, fd.get(), path, fetch));
    if (fd.Close() != 0) return LocalError(ErrnoStatus(errno, absl::StrCat("closing ", path)));
    MD_ASSIGN_OR_RETURN(v1::ModelInfo info, CheckSeedObject(o, path));
    inv.err() << "fetched " << SeedTargetName(o) << ": " << o.expected.size
              << " bytes, SHA-256 as declared, a valid " << FormatName(o.format) << " file\n"
              << model_check::DescribeModelInfo(info);
    spec.artifacts[i].file = path;
  }

  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  PublishOptions options;
  options.log = &inv.err();
  options.show_progress = inv.err_is_tty();
  PublishResult result;
  MD_RETURN_IF_ERROR(Publish(*client, spec, options, &result));
  const v1::TierBinding& b = result.binding;
  inv.out() << (result.was_published ? "already published " : "published ") << result.version.name()
            << " with " << result.artifacts.size() << " artifact"
            << (result.artifacts.size() == 1 ? "" : "s")
            << (result.model_created ? " (new model)" : "") << "; tier " << b.tier() << "/"
            << b.channel() << " " << (result.tier_already_bound ? "already bound" : "bound")
            << " (sequence " << b.sequence() << ")\n";
  for (size_t i = 0; i < result.artifacts.size(); ++i) {
    const PublishedArtifact& a = result.artifacts[i];
    inv.out() << "  " << TargetName(a.spec.platform, a.spec.arch, a.spec.format) << " digest "
              << a.digest << " size " << a.file.size << " (" << FormatBytes(a.file.size)
              << ") from " << http::RedactUrl(objects[i].url) << "\n";
  }
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
