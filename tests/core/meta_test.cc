// SPDX-License-Identifier: Apache-2.0
// hpfile.meta parsing, writing and atomic replacement.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/meta.h"

namespace hpfile {
namespace {

TEST(Meta, RoundTripsEveryKey) {
  Meta meta;
  meta.segment_size = 4096;
  meta.head = 123;
  meta.mode = 0640;
  meta.uid = 1000;
  meta.gid = 100;
  meta.retain_bytes = 1ull << 30;
  meta.retain_seconds = 86400;
  meta.local_retain_bytes = 1ull << 20;
  meta.local_retain_seconds = 3600;
  meta.unknown = {{"zeta", "1"}, {"alpha", "x=y"}};
  auto parsed = ParseMeta(SerializeMeta(meta));
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  EXPECT_EQ(*parsed, meta);
}

TEST(Meta, SerializedFormIsKeyEqualsValueLines) {
  Meta meta;
  meta.segment_size = 67108864;
  meta.head = 0;
  meta.mode = 0644;
  EXPECT_EQ(SerializeMeta(meta), "format=1\nsegment_size=67108864\nhead=0\nmode=0644\n");
}

TEST(Meta, UnknownKeysArePreservedInOrder) {
  auto parsed = ParseMeta("format=1\nsegment_size=10\nhead=0\nfuture_b=2\nfuture_a=1\n");
  ASSERT_TRUE(parsed.has_value());
  ASSERT_EQ(parsed->unknown.size(), 2u);
  EXPECT_EQ(parsed->unknown[0].first, "future_b");
  EXPECT_EQ(parsed->unknown[1].first, "future_a");
  EXPECT_NE(SerializeMeta(*parsed).find("future_b=2\nfuture_a=1\n"), std::string::npos);
}

TEST(Meta, OptionalAttributesStayAbsent) {
  auto parsed = ParseMeta("format=1\nsegment_size=10\n");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->head, 0u);
  EXPECT_FALSE(parsed->mode.has_value());
  EXPECT_FALSE(parsed->retain_bytes.has_value());
}

TEST(Meta, BadTextIsRejectedWithAReasonNamingTheLine) {
  struct Case {
    const char* text;
    const char* reason_part;
  };
  for (const Case& c : {
           Case{"", "no format"},
           Case{"segment_size=10\n", "no format"},
           Case{"format=1\n", "no segment_size"},
           Case{"format=3\nsegment_size=10\n", "format 3 is not supported"},
           Case{"format=1\nsegment_size=0\n", "line 2"},
           Case{"format=1\nsegment_size=abc\n", "segment_size"},
           Case{"format=1\nsegment_size=10\nhead=-1\n", "head"},
           Case{"format=1\nsegment_size=10\nmode=999\n", "mode"},
           Case{"format=1\nsegment_size=10\ngarbage\n", "not key=value"},
           Case{"format=1\nsegment_size=10\nsegment_size=10\n", "repeated"},
           Case{"\x01\x02\x03", "not key=value"},
       }) {
    auto parsed = ParseMeta(c.text);
    ASSERT_FALSE(parsed.has_value()) << c.text;
    EXPECT_NE(parsed.error().find(c.reason_part), std::string::npos) << parsed.error();
  }
}

TEST(Meta, ReasonsQuoteGarbageAsShortPrintableText) {
  const std::string garbage = "\xff\x1b[2J\"" + std::string(500, 'x');
  auto parsed = ParseMeta(garbage + "\n");
  ASSERT_FALSE(parsed.has_value());
  const std::string& reason = parsed.error();
  EXPECT_NE(reason.find(R"("\xff\x1b[2J\")"), std::string::npos) << reason;
  EXPECT_NE(reason.find("...: not key=value"), std::string::npos) << reason;
  EXPECT_LT(reason.size(), 200u);
  for (char c : reason) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(static_cast<unsigned char>(c));
}

TEST(Meta, SegmentSizeLimits) {
  EXPECT_FALSE(ValidSegmentSize(0));
  EXPECT_TRUE(ValidSegmentSize(1));
  EXPECT_TRUE(ValidSegmentSize(format::kMaxSegmentSize));
  EXPECT_FALSE(ValidSegmentSize(format::kMaxSegmentSize + 1));
}

class MetaFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/hpfile-meta-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(MetaFileTest, AtomicWriteReplacesAndLeavesNoTemp) {
  Meta meta;
  meta.segment_size = 10;
  ASSERT_TRUE(WriteMetaAtomically(PosixIo::Default(), dir_, meta).has_value());
  meta.head = 5;
  ASSERT_TRUE(WriteMetaAtomically(PosixIo::Default(), dir_, meta).has_value());
  auto text = ReadMetaText(PosixIo::Default(), dir_);
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(*text, SerializeMeta(meta));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/" + std::string(format::kMetaTempName)));
}

TEST_F(MetaFileTest, ReadingAMissingMetaIsENOENT) {
  auto text = ReadMetaText(PosixIo::Default(), dir_);
  ASSERT_FALSE(text.has_value());
  EXPECT_EQ(text.error(), std::errc::no_such_file_or_directory);
}

}  // namespace
}  // namespace hpfile
