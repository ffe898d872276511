// libFuzzer target for chunk chains (common/chunk_chain.h) and the artifact check that guards
// them (CheckManifestArtifact, common/trust.h).
//
// Input: one mode byte, then
//   0  a chunk-size byte, a piece-size byte, then bytes: a ChunkChainBuilder fed those bytes
//      in pieces must give Sha256's digest of them, a chain of ceil(n / chunk) entries whose
//      last is that digest and that each chunk verifies against (StartChunkHash/EndChunkHash),
//      the same chain again after RewindTo a chunk boundary and feeding the rest, and
//      WholeChunkEntry equal to the chain's entries.
//   1  2-byte length, a ManifestArtifact, bytes: CheckManifestArtifact, and when it passes,
//      every chunk of the bytes the artifact covers checked against its chain as a device does
//      (a fuzzed chain must fail or succeed, never crash); when the bytes are exactly the
//      artifact's and every chunk verified, their digest is the artifact's.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/chunk_chain.h"
#include "common/digest.h"
#include "common/trust.h"
#include "tests/fuzz/fuzz_util.h"

namespace modeldist {
namespace {

using fuzz::Require;

// Verifies the chunks of `bytes` against `chain` (32-byte entries) as a device does; returns
// how many verified before the first that did not (or the end of bytes or chain).
int64_t VerifyChunks(absl::string_view bytes, int64_t chunk_size,
                     const google::protobuf::RepeatedPtrField<std::string>& chain) {
  int64_t verified = 0;
  for (int64_t i = 0; i < chain.size(); ++i) {
    const int64_t start = i * chunk_size;
    if (start >= static_cast<int64_t>(bytes.size())) break;
    const bool last = i == chain.size() - 1;
    // A device checks a chunk once all of it is there; only the last one may be short.
    if (!last && static_cast<int64_t>(bytes.size()) - start < chunk_size) break;
    const absl::string_view previous = i == 0 ? absl::string_view() : chain[i - 1];
    auto hash = StartChunkHash(previous, i, chunk_size);
    if (!hash.ok()) {
      fuzz::RequireParserError(hash.status(), "StartChunkHash");
      break;
    }
    hash->Update(bytes.substr(start, chunk_size));
    if (EndChunkHash(&*hash, last) != chain[i]) break;
    ++verified;
  }
  return verified;
}

void BuilderProperties(absl::string_view rest) {
  if (rest.size() < 2) return;
  const int64_t chunk_size = 64 * (1 + static_cast<uint8_t>(rest[0]) % 8);
  const size_t piece = 1 + static_cast<uint8_t>(rest[1]);
  const absl::string_view bytes = rest.substr(2);

  ChunkChainBuilder builder(chunk_size);
  for (size_t at = 0; at < bytes.size(); at += piece) builder.Update(bytes.substr(at, piece));
  Require(builder.bytes() == static_cast<int64_t>(bytes.size()), "bytes() differs");
  const std::string hex = Sha256::HexOf(bytes);
  Require(builder.DigestHex() == hex, "digest differs from one-shot SHA-256");

  const std::string chain = builder.Chain();
  const int64_t chunks = (static_cast<int64_t>(bytes.size()) + chunk_size - 1) / chunk_size;
  Require(chain.size() == static_cast<size_t>(chunks) * Sha256::kStateBytes, "chain length");
  google::protobuf::RepeatedPtrField<std::string> entries;
  for (int64_t i = 0; i < chunks; ++i) *entries.Add() = chain.substr(i * 32, 32);
  if (chunks > 0) {
    Sha256 whole;
    whole.Update(bytes);
    Require(entries[chunks - 1] == whole.FinishRaw(), "last entry is not the digest");
  }
  Require(VerifyChunks(bytes, chunk_size, entries) == chunks, "a chunk does not verify");

  Require(builder.WholeChunks() <= chunks, "WholeChunks beyond the chain");
  for (int64_t i = 0; i < builder.WholeChunks() && i < chunks - 1; ++i) {
    Require(builder.WholeChunkEntry(i) == entries[i], "WholeChunkEntry differs");
  }

  // Rewinding to a chunk boundary and feeding the rest again gives the same chain.
  const int64_t back = builder.WholeChunks() / 2;
  Require(builder.RewindTo(back).ok(), "RewindTo a whole chunk failed");
  Require(builder.bytes() == back * chunk_size, "bytes() after RewindTo");
  builder.Update(bytes.substr(back * chunk_size));
  Require(builder.Chain() == chain, "chain differs after RewindTo");
  Require(builder.DigestHex() == hex, "digest differs after RewindTo");
  Require(!builder.RewindTo(builder.WholeChunks() + 1).ok(), "RewindTo past the end accepted");
}

void ArtifactProperties(absl::string_view rest) {
  const auto [artifact_bytes, bytes] = fuzz::Split(rest);
  v1::ManifestArtifact artifact;
  if (!artifact.ParseFromString(std::string(artifact_bytes))) return;
  const absl::Status status = CheckManifestArtifact(artifact);
  fuzz::RequireParserError(status, "CheckManifestArtifact");
  if (!status.ok()) return;
  const int64_t verified = VerifyChunks(bytes, artifact.chunk_size(), artifact.chunk_chain());
  if (static_cast<int64_t>(bytes.size()) == artifact.size_bytes() &&
      verified == artifact.chunk_chain_size()) {
    Require(FormatDigest(Sha256::HexOf(bytes)) == artifact.digest(),
            "every chunk verified but the digest differs");
  }
}

void WriteSeeds(const std::string& dir) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) bytes.push_back(static_cast<char>(i * 7));
  fuzz::WriteSeed(dir, "0-builder-300-bytes", std::string("\x00\x01\x0d", 3) + bytes);
  fuzz::WriteSeed(dir, "0-builder-empty", std::string("\x00\x00\x00", 3));
  fuzz::WriteSeed(dir, "0-builder-one-chunk", std::string("\x00\x07\xff", 3) + bytes);

  // A valid artifact of `bytes` in 64-byte chunks, and the bytes.
  ChunkChainBuilder builder(64);
  builder.Update(bytes);
  v1::ManifestArtifact artifact;
  artifact.set_digest(FormatDigest(builder.DigestHex()));
  artifact.set_size_bytes(static_cast<int64_t>(bytes.size()));
  artifact.set_chunk_size(64);
  const std::string chain = builder.Chain();
  for (size_t at = 0; at < chain.size(); at += 32) artifact.add_chunk_chain(chain.substr(at, 32));
  Require(CheckManifestArtifact(artifact).ok(), "seed artifact refused");
  fuzz::WriteSeed(dir, "1-artifact-and-bytes",
                  std::string(1, 1) + fuzz::Join(artifact.SerializeAsString(), bytes));
  bytes[100] ^= 1;
  fuzz::WriteSeed(dir, "1-artifact-and-corrupt-bytes",
                  std::string(1, 1) + fuzz::Join(artifact.SerializeAsString(), bytes));
}

}  // namespace
}  // namespace modeldist

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  modeldist::fuzz::Initialize(modeldist::WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    modeldist::BuilderProperties(rest);
  } else {
    modeldist::ArtifactProperties(rest);
  }
  return 0;
}
