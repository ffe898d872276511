// `bundle export`: one file with what a device needs to install a tier's model without the
// network (common/bundle_format.h), for an app to ship or an operator to carry. The bytes are
// exactly what a device would get: the trust roots and the manifest as the server signed them,
// and the artifact streamed from ArtifactService.Read into the archive, checked against the
// manifest's chunk chain as it passes (never held whole), so a bundle that this writes is one
// the agent accepts. A failed export leaves no file: the archive is written to a temporary file
// beside --output and renamed over it only when complete and fsynced.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/download/raw_read.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/registry_client.h"
#include "client/rpc/channel.h"
#include "common/bundle_format.h"
#include "common/chunk_chain.h"
#include "common/digest.h"
#include "common/enum_names.h"
#include "common/file_util.h"
#include "common/grpc_status.h"
#include "common/json.h"
#include "common/retry_policy.h"
#include "common/status.h"
#include "common/tar.h"
#include "common/trust.h"
#include "modeldist/v1/manifest.grpc.pb.h"

namespace modeldist::ctl {
namespace {

// Room for a manifest listing many sources, and for Read's messages (raw_read.h).
constexpr int kMaxReceiveBytes = 16 * 1024 * 1024;
// A fixed HTTP/2 window, as the agent's (client/agent/grpc_source.cc): gRPC's probed window
// grows while the disk is slower than the network, and the bytes it lets in pile up in memory.
constexpr int kStreamWindowBytes = 4 * 1024 * 1024;

// A status from the server's answer that does not hold up: an RPC-side failure (exit 2) with a
// reason, since the user can do nothing about it locally.
absl::Status BadAnswer(absl::string_view what) {
  return MakeError(absl::StatusCode::kDataLoss, "BUNDLE_SOURCE_MISMATCH",
                   absl::StrCat(what, "; no bundle was written"));
}

// Roots 1 .. newest, each verified against the one before (the first against its own keys),
// as the server signed them: whichever of them a device pinned, it can walk to the newest.
absl::StatusOr<std::vector<v1::SignedTrustRoot>> FetchRootChain(
    const std::shared_ptr<grpc::Channel>& channel, v1::TrustRoot* newest) {
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot last, FetchTrustRoot(channel, 0));
  v1::TrustRoot last_root;
  if (!last_root.ParseFromString(last.root()) || last_root.version() < 1 ||
      last_root.version() > kMaxBundleRoots) {
    return BadAnswer("the server's newest trust root does not parse or has no usable version");
  }
  std::vector<v1::SignedTrustRoot> chain;
  v1::TrustRoot trusted;
  for (int64_t version = 1; version <= last_root.version(); ++version) {
    v1::SignedTrustRoot signed_root;
    if (version == last_root.version()) {
      signed_root = last;
    } else {
      MD_ASSIGN_OR_RETURN(signed_root, FetchTrustRoot(channel, version));
    }
    absl::StatusOr<v1::TrustRoot> verified =
        version == 1 ? VerifyFirstRoot(signed_root) : VerifyNextRoot(trusted, signed_root);
    if (!verified.ok()) {
      return WithContext(verified.status(),
                         absl::StrCat("the server's trust root ", version, " does not verify"));
    }
    trusted = *std::move(verified);
    chain.push_back(std::move(signed_root));
  }
  *newest = std::move(trusted);
  return chain;
}

// Streams blob `artifact` from ArtifactService.Read into the open entry of `tar`, checking each
// chunk against the signed chain as it completes and the whole digest at the end. A broken
// stream resumes at the next byte (the hash goes on where it was).
absl::Status StreamBlob(const std::shared_ptr<grpc::Channel>& channel,
                        const v1::ManifestArtifact& artifact, TarWriter* tar) {
  ChunkChainBuilder chain(artifact.chunk_size());
  int64_t checked_chunks = 0;
  // The one retry policy, jitter included; a stream that broke after moving forward starts
  // the count of failures in a row again, so a long export over a flaky link finishes while
  // a dead server still ends it after max_attempts.
  const RetryPolicy policy;
  Retrier retrier(policy);
  while (chain.bytes() < artifact.size_bytes()) {
    const int64_t attempt_start = chain.bytes();
    v1::ReadRequest request;
    request.set_digest(artifact.digest());
    request.set_offset(chain.bytes());
    grpc::ClientContext context;
    client::RawReadStream stream(channel, &context, request);
    client::ReadChunk message;
    absl::Status local;
    while (local.ok() && stream.Next(&message)) {
      if (message.offset != chain.bytes() ||
          static_cast<int64_t>(message.size()) > artifact.size_bytes() - chain.bytes()) {
        context.TryCancel();
        local = BadAnswer(absl::StrCat("the server sent bytes at ", message.offset, " where ",
                                       chain.bytes(), " were expected"));
        break;
      }
      for (absl::string_view piece : message.data) {
        chain.Update(piece);
        local = LocalError(tar->Write(piece));
        if (!local.ok()) break;
      }
      // The last chunk's entry is the file's digest, checked at the end.
      const int64_t whole = std::min<int64_t>(chain.WholeChunks(), artifact.chunk_chain_size() - 1);
      for (; local.ok() && checked_chunks < whole; ++checked_chunks) {
        if (chain.WholeChunkEntry(checked_chunks) != artifact.chunk_chain(checked_chunks)) {
          local = BadAnswer(absl::StrCat("chunk ", checked_chunks, " of ", artifact.digest(),
                                         " does not match the manifest's chunk chain"));
        }
      }
      if (!local.ok()) context.TryCancel();
    }
    absl::Status status = stream.Finish();
    if (!local.ok()) return local;
    if (status.ok()) {
      if (chain.bytes() < artifact.size_bytes()) {
        return BadAnswer(absl::StrCat("the server's Read of ", artifact.digest(), " ended after ",
                                      chain.bytes(), " of ", artifact.size_bytes(), " bytes"));
      }
      break;
    }
    if (chain.bytes() > attempt_start) retrier.Progressed();
    std::optional<absl::Duration> wait = retrier.NextWait(status);
    if (!wait.has_value()) return WithContext(status, absl::StrCat("Read ", artifact.digest()));
    absl::SleepFor(*wait);
  }
  if (FormatDigest(chain.DigestHex()) != artifact.digest() ||
      chain.bytes() != artifact.size_bytes()) {
    return BadAnswer(absl::StrCat("the server's bytes hash to sha256:", chain.DigestHex(),
                                  ", not the manifest's ", artifact.digest()));
  }
  return absl::OkStatus();
}

struct Exported {
  v1::Manifest manifest;
  int64_t roots = 0;
  int64_t bytes = 0;  // of the archive
};

absl::StatusOr<Exported> WriteBundle(const std::shared_ptr<grpc::Channel>& channel,
                                     const v1::GetManifestRequest& request, bool blobs,
                                     const std::string& output) {
  Exported exported;
  v1::TrustRoot newest;
  MD_ASSIGN_OR_RETURN(std::vector<v1::SignedTrustRoot> roots, FetchRootChain(channel, &newest));
  exported.roots = static_cast<int64_t>(roots.size());
  v1::SignedManifest signed_manifest;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status s =
        v1::ManifestService::NewStub(channel)->GetManifest(&context, request, &signed_manifest);
    if (!s.ok()) return FromGrpcStatus(s, "GetManifest");
  }
  // What the agent will check, checked now: a bundle that cannot install is not written.
  absl::StatusOr<v1::Manifest> manifest = VerifyManifest(newest, signed_manifest);
  if (!manifest.ok()) {
    return WithContext(manifest.status(), "the server's manifest does not verify");
  }
  exported.manifest = *std::move(manifest);
  const v1::ManifestArtifact& artifact = exported.manifest.artifact();
  if (absl::Status s = CheckManifestArtifact(artifact); !s.ok()) {
    return WithContext(s, "the server's manifest artifact");
  }
  // The signed bytes and signatures only: the unsigned mirrors and selection reason are the
  // server's advice to a device online, nothing a bundle needs or can vouch for.
  v1::SignedManifest kept;
  kept.set_manifest(signed_manifest.manifest());
  *kept.mutable_signatures() = signed_manifest.signatures();

  BundleIndex index;
  index.first_root = 1;
  index.root_count = exported.roots;
  if (blobs) index.blob = BundleBlob{artifact.digest(), artifact.size_bytes()};

  std::string temp = output + ".tmp.XXXXXX";
  ScopedFd fd(::mkstemp(temp.data()));
  if (!fd.valid()) return LocalError(ErrnoStatus(errno, absl::StrCat("creating ", temp)));
  auto written = [&]() -> absl::Status {
    TarWriter tar(fd.get(), temp);
    MD_RETURN_IF_ERROR(LocalError(tar.Add(kBundleIndexEntry, SerializeBundleIndex(index))));
    for (size_t i = 0; i < roots.size(); ++i) {
      MD_RETURN_IF_ERROR(LocalError(
          tar.Add(BundleRootEntry(static_cast<int64_t>(i) + 1), roots[i].SerializeAsString())));
    }
    MD_RETURN_IF_ERROR(LocalError(tar.Add(kBundleManifestEntry, kept.SerializeAsString())));
    if (blobs) {
      MD_RETURN_IF_ERROR(
          LocalError(tar.Begin(BundleBlobEntry(artifact.digest()), artifact.size_bytes())));
      MD_RETURN_IF_ERROR(StreamBlob(channel, artifact, &tar));
      MD_RETURN_IF_ERROR(LocalError(tar.End()));
    }
    MD_RETURN_IF_ERROR(LocalError(tar.Finish()));
    if (::fchmod(fd.get(), 0644) != 0 || ::fsync(fd.get()) != 0) {
      return LocalError(ErrnoStatus(errno, temp));
    }
    exported.bytes = static_cast<int64_t>(::lseek(fd.get(), 0, SEEK_CUR));
    if (fd.Close() != 0) return LocalError(ErrnoStatus(errno, temp));
    if (::rename(temp.c_str(), output.c_str()) != 0) {
      return LocalError(ErrnoStatus(errno, absl::StrCat("renaming ", temp, " to ", output)));
    }
    const size_t slash = output.rfind('/');
    return LocalError(FsyncDir(slash == std::string::npos ? "." : output.substr(0, slash)));
  }();
  if (!written.ok()) {
    ::unlink(temp.c_str());
    return written;
  }
  return exported;
}

absl::Status BundleExport(Invocation& inv, const Flags& flags) {
  if (flags.positional().size() != 1) return UsageError("bundle export takes no arguments");
  const std::string output = flags.Get("output");
  if (output.empty()) return UsageError("--output FILE is required");
  v1::GetManifestRequest request;
  MD_ASSIGN_OR_RETURN(TierChannel tier, TierChannelFromFlags(flags));
  request.set_tier(tier.tier);
  request.set_channel(tier.channel);
  v1::Platform platform;
  v1::Arch arch;
  if (!ParsePlatformName(flags.Get("platform"), &platform)) {
    return UsageError("--platform must be macos, ios, linux, windows or android");
  }
  if (!ParseArchName(flags.Get("arch"), &arch)) return UsageError("--arch must be arm64 or x86_64");
  request.set_platform(platform);
  request.set_arch(arch);
  request.set_device_id(flags.Get("device-id"));

  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      rpc::MakeChannel({.target = inv.global().server,
                        .tls_ca_file = inv.global().tls_ca,
                        .max_receive_message_bytes = kMaxReceiveBytes,
                        .fixed_stream_window_bytes = kStreamWindowBytes});
  if (!channel.ok()) return LocalError(WithContext(channel.status(), "--tls-ca"));
  MD_ASSIGN_OR_RETURN(Exported exported,
                      WriteBundle(*channel, request, !flags.GetBool("no-blobs"), output));
  const v1::Manifest& m = exported.manifest;
  if (WantJson(inv, flags)) {
    inv.out() << "{\"output\":" << JsonQuote(output) << ",\"version\":" << JsonQuote(m.version())
              << ",\"digest\":" << JsonQuote(m.artifact().digest())
              << ",\"sizeBytes\":" << m.artifact().size_bytes() << ",\"sequence\":" << m.sequence()
              << ",\"roots\":" << exported.roots
              << ",\"blobs\":" << (flags.GetBool("no-blobs") ? 0 : 1)
              << ",\"bundleBytes\":" << exported.bytes << ",\"expiresAt\":\""
              << FormatTime(m.expires_at()) << "\"}\n";
    return absl::OkStatus();
  }
  inv.out() << "wrote " << output << " (" << exported.bytes << " bytes): " << m.version() << " "
            << m.artifact().digest() << " for " << tier.ToString() << " " << flags.Get("platform")
            << "/" << flags.Get("arch") << ", sequence " << m.sequence() << ", trust roots 1.."
            << exported.roots << ", "
            << (flags.GetBool("no-blobs") ? "manifest only (for modeldist-agent adopt)"
                                          : "with the model")
            << "; the manifest expires at " << FormatTime(m.expires_at())
            << " (modeldist-agent install-bundle waives that)\n";
  return absl::OkStatus();
}

}  // namespace

void BundleFlags(Flags* f) {
  AddTierFlags(f);
  f->Add("platform", "P", "", "the device platform: macos, ios, linux, windows, android");
  f->Add("arch", "A", "", "the device arch: arm64, x86_64");
  f->Add("device-id", "ID", "", "answer as for this device (pins, rollout cohorts)");
  f->Add("output", "FILE", "", "the bundle to write (replaced only when complete)");
  f->AddBool("no-blobs",
             "leave the model out: a manifest-only bundle, for adopting a model "
             "file the app already ships");
  f->AddBool("json", "print the result as JSON");
}

absl::Status RunBundle(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  if (args.empty() || args[0] != "export") {
    return UsageError("bundle needs a subcommand: export");
  }
  return BundleExport(inv, flags);
}

}  // namespace modeldist::ctl
