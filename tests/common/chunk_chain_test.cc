#include "common/chunk_chain.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist {
namespace {

using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::StatusIs;
using ::testing::HasSubstr;

// SHA-256's initial hash value H(0), FIPS 180-4 section 5.3.3.
constexpr absl::string_view kInitialValueHex =
    "6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19";
constexpr absl::string_view kAbcHex =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr int64_t kChunk = 256;  // small, block-aligned chunks so the edge cases are cheap

std::vector<std::string> Entries(const std::string& chain) {
  std::vector<std::string> out;
  for (size_t at = 0; at < chain.size(); at += Sha256::kStateBytes) {
    out.push_back(chain.substr(at, Sha256::kStateBytes));
  }
  return out;
}

std::string Chunk(const std::string& data, size_t index) {
  return data.substr(index * kChunk, kChunk);
}

// Whether chunk `index` of `data` verifies against `chain`, as a device checks it.
bool ChunkVerifies(const std::vector<std::string>& chain, size_t index, absl::string_view bytes) {
  auto hash =
      StartChunkHash(index == 0 ? "" : chain[index - 1], static_cast<int64_t>(index), kChunk);
  if (!hash.ok()) return false;
  hash->Update(bytes);
  return EndChunkHash(&*hash, index + 1 == chain.size()) == chain[index];
}

TEST(Sha256ChainingTest, TheEmptyPrefixHasTheStandardInitialValue) {
  EXPECT_EQ(HexEncode(Sha256().ChainingValue()), kInitialValueHex);
}

TEST(Sha256ChainingTest, ResumingFromTheInitialValueIsPlainSha256) {
  auto hash = Sha256::Resume(absl::HexStringToBytes(kInitialValueHex), 0);
  ASSERT_TRUE(hash.ok()) << hash.status();
  hash->Update("abc");
  EXPECT_EQ(hash->FinishHex(), kAbcHex);
}

TEST(Sha256ChainingTest, ResumeAfterAPrefixGivesTheDigestOfTheWholeStream) {
  const std::string data = RandomBytes(1000);
  for (size_t prefix : {64u, 128u, 640u, 960u}) {
    Sha256 head;
    head.Update(data.substr(0, prefix));
    EXPECT_EQ(head.bytes(), static_cast<int64_t>(prefix));
    auto tail = Sha256::Resume(head.ChainingValue(), static_cast<int64_t>(prefix));
    ASSERT_TRUE(tail.ok()) << tail.status();
    tail->Update(data.substr(prefix));
    EXPECT_EQ(tail->bytes(), 1000);
    EXPECT_EQ(tail->FinishHex(), Sha256::HexOf(data)) << "prefix " << prefix;
  }
}

TEST(Sha256ChainingTest, ResumeRefusesBadStatesAndUnalignedPrefixes) {
  const std::string state = Sha256().ChainingValue();
  EXPECT_THAT(Sha256::Resume(state.substr(1), 64),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32 bytes")));
  EXPECT_THAT(Sha256::Resume(state, 65),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 64")));
  EXPECT_THAT(Sha256::Resume(state, -64),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 64")));
}

TEST(ChunkChainTest, EntriesVerifyEachChunkAndTheLastIsTheFileDigest) {
  for (size_t size : {size_t{1}, size_t{63}, size_t{64}, size_t{kChunk - 1}, size_t{kChunk},
                      size_t{kChunk + 1}, size_t{3 * kChunk}, size_t{3 * kChunk + 17}}) {
    SCOPED_TRACE(absl::StrCat("size ", size));
    const std::string data = RandomBytes(size);
    for (size_t piece : {size_t{1}, size_t{7}, size_t{64}, size_t{kChunk}, size}) {
      ChunkChainBuilder builder(kChunk);
      for (size_t at = 0; at < size; at += piece) builder.Update(data.substr(at, piece));
      EXPECT_EQ(builder.bytes(), static_cast<int64_t>(size));
      EXPECT_EQ(builder.DigestHex(), Sha256::HexOf(data));
      const std::vector<std::string> chain = Entries(builder.Chain());
      ASSERT_EQ(chain.size(), (size + kChunk - 1) / kChunk) << "piece " << piece;
      EXPECT_EQ(HexEncode(chain.back()), Sha256::HexOf(data));
      for (size_t i = 0; i < chain.size(); ++i) {
        EXPECT_TRUE(ChunkVerifies(chain, i, Chunk(data, i))) << "chunk " << i;
        if (i + 1 < chain.size()) {
          // Each entry is the true state after its prefix: resuming from it and hashing the
          // rest gives the standard digest of the file.
          auto rest = Sha256::Resume(chain[i], static_cast<int64_t>((i + 1) * kChunk));
          ASSERT_TRUE(rest.ok()) << rest.status();
          rest->Update(absl::string_view(data).substr((i + 1) * kChunk));
          EXPECT_EQ(rest->FinishHex(), Sha256::HexOf(data)) << "entry " << i;
        }
      }
    }
  }
}

TEST(ChunkChainTest, TheEmptyFileHasNoEntries) {
  ChunkChainBuilder builder(kChunk);
  EXPECT_EQ(builder.Chain(), "");
  EXPECT_EQ(builder.DigestHex(), Sha256::HexOf(""));
}

TEST(ChunkChainTest, AFlippedByteFailsOnlyItsChunk) {
  const std::string data = RandomBytes(3 * kChunk + 100);
  ChunkChainBuilder builder(kChunk);
  builder.Update(data);
  const std::vector<std::string> chain = Entries(builder.Chain());
  ASSERT_EQ(chain.size(), 4u);
  for (size_t bad = 0; bad < chain.size(); ++bad) {
    for (size_t at : {size_t{0}, size_t{63}, size_t{64}, size_t{99}}) {
      std::string chunk = Chunk(data, bad);
      chunk[at] = static_cast<char>(chunk[at] ^ 0x01);
      EXPECT_FALSE(ChunkVerifies(chain, bad, chunk)) << "chunk " << bad << " byte " << at;
    }
  }
  // A whole chunk is refused in another chunk's place.
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_FALSE(ChunkVerifies(chain, (i + 1) % 3, Chunk(data, i))) << "chunk " << i;
  }
}

TEST(ChunkChainTest, ACopyTakesTheChainOfThePrefixAndTheStreamGoesOn) {
  const std::string data = RandomBytes(2 * kChunk + 5);
  ChunkChainBuilder builder(kChunk);
  builder.Update(data.substr(0, kChunk + 3));
  ChunkChainBuilder prefix = builder;
  EXPECT_EQ(prefix.Chain(), [&] {
    ChunkChainBuilder fresh(kChunk);
    fresh.Update(data.substr(0, kChunk + 3));
    return fresh.Chain();
  }());
  builder.Update(data.substr(kChunk + 3));
  ChunkChainBuilder whole(kChunk);
  whole.Update(data);
  EXPECT_EQ(builder.Chain(), whole.Chain());
}

TEST(ChunkChainTest, StartChunkHashRefusesAChunkSizeThatIsNotAMultipleOf64) {
  const std::string entry(32, '\x01');
  // 64 * 100 is a multiple of 64, so only the chunk size itself shows the problem.
  EXPECT_EQ(StartChunkHash(entry, 64, 100).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StartChunkHash("", 0, 100).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StartChunkHash(entry, 1, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(StartChunkHash(entry, 64, 128).ok());
}

TEST(ChunkChainBuilderTest, RewindingToAChunkBoundaryIsAsIfOnlyThoseChunksHadBeenHashed) {
  const std::string data = RandomBytes(5 * kChunk + 17, 3);
  ChunkChainBuilder whole(kChunk);
  whole.Update(data);
  for (int64_t keep : {0, 1, 2, 4}) {
    ChunkChainBuilder builder(kChunk);
    builder.Update(data.substr(0, static_cast<size_t>(keep * kChunk + 77)));  // mid-chunk
    ASSERT_TRUE(builder.RewindTo(keep).ok()) << keep;
    EXPECT_EQ(builder.bytes(), keep * kChunk);
    builder.Update(data.substr(static_cast<size_t>(keep * kChunk)));
    EXPECT_EQ(builder.Chain(), whole.Chain()) << keep;
    EXPECT_EQ(builder.DigestHex(), whole.DigestHex()) << keep;
  }
  ChunkChainBuilder short_stream(kChunk);
  short_stream.Update(data.substr(0, 2 * kChunk));
  EXPECT_FALSE(short_stream.RewindTo(3).ok());  // past what it holds
}

}  // namespace
}  // namespace modeldist
