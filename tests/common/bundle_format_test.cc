// INDEX of a bundle: what the writer serializes parses back, and anything out of the strict
// grammar (order, names that are not digests, gaps in the roots) is BUNDLE_MALFORMED.
#include "common/bundle_format.h"

#include <string>

#include "common/status.h"
#include "gtest/gtest.h"

namespace modeldist {
namespace {

const std::string kHex(64, 'a');

TEST(BundleFormatTest, RoundTrips) {
  BundleIndex index{.first_root = 2, .root_count = 3, .blob = BundleBlob{"sha256:" + kHex, 42}};
  const std::string text = SerializeBundleIndex(index);
  EXPECT_EQ(text,
            "modeldist-bundle v1\nroot roots/2.pb\nroot roots/3.pb\nroot roots/4.pb\n"
            "manifest manifest.pb\nblob blobs/sha256-" +
                kHex + " 42\n");
  auto parsed = ParseBundleIndex(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->first_root, 2);
  EXPECT_EQ(parsed->root_count, 3);
  ASSERT_TRUE(parsed->blob.has_value());
  EXPECT_EQ(parsed->blob->digest, "sha256:" + kHex);
  EXPECT_EQ(parsed->blob->size, 42);
  auto manifest_only = ParseBundleIndex(SerializeBundleIndex({.root_count = 1}));
  ASSERT_TRUE(manifest_only.ok());
  EXPECT_FALSE(manifest_only->blob.has_value());
}

TEST(BundleFormatTest, RefusesAnythingElse) {
  const std::string head = "modeldist-bundle v1\n";
  for (const std::string& text : {
           std::string("modeldist-bundle v2\nroot roots/1.pb\nmanifest manifest.pb\n"),
           head + "manifest manifest.pb\n",                                    // no root
           head + "root roots/1.pb\n",                                         // no manifest
           head + "root roots/1.pb\nroot roots/3.pb\nmanifest manifest.pb\n",  // a gap
           head + "root roots/01.pb\nmanifest manifest.pb\n",
           head + "root roots/../1.pb\nmanifest manifest.pb\n",
           head + "root roots/1.pb\nmanifest other.pb\n",
           head + "root roots/1.pb\nmanifest manifest.pb\nblob blobs/model.gguf 5\n",
           head + "root roots/1.pb\nmanifest manifest.pb\nblob blobs/sha256-" + kHex + " -1\n",
           head + "root roots/1.pb\nmanifest manifest.pb\nblob blobs/sha256-" + kHex +
               " 1\nblob blobs/sha256-" + kHex + " 1\n",
           head + "root roots/1.pb\nmanifest manifest.pb\nextra thing\n",
           head + "manifest manifest.pb\nroot roots/1.pb\n",
       }) {
    SCOPED_TRACE(text);
    EXPECT_EQ(ErrorReason(ParseBundleIndex(text).status()), "BUNDLE_MALFORMED");
  }
}

// Root versions past kMaxBundleRootVersion are refused at parse time, so that no later sum of
// first_root and a count overflows (UBSan in CI would flag the INT64_MAX case otherwise).
TEST(BundleFormatTest, RefusesHugeRootVersions) {
  const std::string head = "modeldist-bundle v1\n";
  const std::string max = "9223372036854775807";
  for (const std::string& text : {
           head + "root roots/" + max + ".pb\nroot roots/" + max + ".pb\nmanifest manifest.pb\n",
           head + "root roots/" + max + ".pb\nmanifest manifest.pb\n",
           head + "root roots/" + std::to_string(kMaxBundleRootVersion + 1) +
               ".pb\nmanifest manifest.pb\n",
       }) {
    SCOPED_TRACE(text);
    EXPECT_EQ(ErrorReason(ParseBundleIndex(text).status()), "BUNDLE_MALFORMED");
  }
  auto at_cap = ParseBundleIndex(head + "root roots/" + std::to_string(kMaxBundleRootVersion) +
                                 ".pb\nmanifest manifest.pb\n");
  ASSERT_TRUE(at_cap.ok()) << at_cap.status();
  EXPECT_EQ(at_cap->first_root, kMaxBundleRootVersion);
}

}  // namespace
}  // namespace modeldist
