// SPDX-License-Identifier: Apache-2.0
// Segment names and the offset-to-segment mapping: the arithmetic every other
// part of the library relies on.
#include <gtest/gtest.h>

#include <deque>
#include <memory>

#include "core/format.h"
#include "core/segment.h"
#include "core/segment_name.h"

namespace hpfile {
namespace {

TEST(SegmentName, FormatsBaseWithTwentyDigitsAndCapacity) {
  EXPECT_EQ(FormatSegmentName({0, 67108864}), "00000000000000000000-67108864.seg");
  EXPECT_EQ(FormatSegmentName({67108864, 67108864}), "00000000000067108864-67108864.seg");
  EXPECT_EQ(FormatSegmentName({18446744073709551615ull - 1, 1}), "18446744073709551614-1.seg");
}

TEST(SegmentName, ParsesWhatItFormats) {
  for (SegmentName name : {SegmentName{0, 1}, SegmentName{12345, 4096}, SegmentName{1ull << 40, 1ull << 40}}) {
    auto parsed = ParseSegmentName(FormatSegmentName(name));
    ASSERT_TRUE(parsed.has_value()) << FormatSegmentName(name);
    EXPECT_EQ(*parsed, name);
  }
}

// A grow spans a gap with one segment wider than any segment_size.
TEST(SegmentName, ParsesGapSegmentsWiderThanTheLargestSegmentSize) {
  for (SegmentName name : {SegmentName{4096, format::kMaxSegmentSize + 4096}, SegmentName{0, format::kMaxFileSize},
                           SegmentName{1, format::kMaxSlotEnd - 1}}) {
    auto parsed = ParseSegmentName(FormatSegmentName(name));
    ASSERT_TRUE(parsed.has_value()) << FormatSegmentName(name);
    EXPECT_EQ(*parsed, name);
  }
}

TEST(SegmentName, RejectsEverySpellingButTheCanonicalOne) {
  for (const char* bad : {
           "junk.seg",
           "123-abc.seg",
           "0000000000000000000-10.seg",     // 19 digits
           "000000000000000000000-10.seg",   // 21 digits
           "00000000000000000000-010.seg",   // capacity with a leading zero
           "00000000000000000000-0.seg",     // zero capacity
           "00000000000000000000-+10.seg",
           "00000000000000000000- 10.seg",
           "00000000000000000000-10.seg.tmp",
           "00000000000000000000-10",
           "0000000000000000000a-10.seg",
           "00000000000000000000-9223372036854775808.seg",  // capacity past the largest slot end
           "00000000000000000001-9223372036854775807.seg",  // slot ending past it
           "99999999999999999999-10.seg",             // base past the largest file
       }) {
    EXPECT_FALSE(ParseSegmentName(bad).has_value()) << bad;
  }
}

TEST(SegmentName, LooksLikeSegmentIsTheSuffixOnly) {
  EXPECT_TRUE(LooksLikeSegment("junk.seg"));
  EXPECT_FALSE(LooksLikeSegment("hpfile.meta"));
  EXPECT_FALSE(LooksLikeSegment("x.seg.tmp"));
}

std::deque<std::shared_ptr<Segment>> SegmentRun(std::initializer_list<std::pair<uint64_t, uint64_t>> slots) {
  std::deque<std::shared_ptr<Segment>> segments;
  for (auto [base, capacity] : slots) segments.push_back(std::make_shared<Segment>(base, capacity));
  return segments;
}

TEST(FindSegmentIndex, EmptyRunHoldsNothing) {
  EXPECT_EQ(FindSegmentIndex(SegmentRun({}), 0), -1);
  EXPECT_EQ(FindSegmentIndex(SegmentRun({}), 100), -1);
}

TEST(FindSegmentIndex, BoundariesBelongToTheSegmentTheyStart) {
  auto segments = SegmentRun({{0, 10}, {10, 10}, {20, 5}});
  EXPECT_EQ(FindSegmentIndex(segments, 0), 0);
  EXPECT_EQ(FindSegmentIndex(segments, 9), 0);
  EXPECT_EQ(FindSegmentIndex(segments, 10), 1);
  EXPECT_EQ(FindSegmentIndex(segments, 19), 1);
  EXPECT_EQ(FindSegmentIndex(segments, 20), 2);
  EXPECT_EQ(FindSegmentIndex(segments, 24), 2);
  EXPECT_EQ(FindSegmentIndex(segments, 25), -1);
}

TEST(FindSegmentIndex, OneByteSegments) {
  auto segments = SegmentRun({{5, 1}, {6, 1}, {7, 1}});
  EXPECT_EQ(FindSegmentIndex(segments, 4), -1);
  EXPECT_EQ(FindSegmentIndex(segments, 5), 0);
  EXPECT_EQ(FindSegmentIndex(segments, 6), 1);
  EXPECT_EQ(FindSegmentIndex(segments, 7), 2);
  EXPECT_EQ(FindSegmentIndex(segments, 8), -1);
}

TEST(FindSegmentIndex, MixedCapacitiesAfterASizeChange) {
  auto segments = SegmentRun({{100, 10}, {110, 1000}, {1110, 3}});
  EXPECT_EQ(FindSegmentIndex(segments, 99), -1);
  EXPECT_EQ(FindSegmentIndex(segments, 109), 0);
  EXPECT_EQ(FindSegmentIndex(segments, 110), 1);
  EXPECT_EQ(FindSegmentIndex(segments, 1109), 1);
  EXPECT_EQ(FindSegmentIndex(segments, 1112), 2);
}

TEST(FindSegmentIndex, GapBetweenSlotsHoldsNothing) {
  auto segments = SegmentRun({{0, 10}, {30, 10}});
  EXPECT_EQ(FindSegmentIndex(segments, 10), -1);
  EXPECT_EQ(FindSegmentIndex(segments, 29), -1);
  EXPECT_EQ(FindSegmentIndex(segments, 30), 1);
}

TEST(FindSegmentIndex, LargestOffsets) {
  const uint64_t base = format::kMaxFileSize - 10;
  auto segments = SegmentRun({{base, 10}});
  EXPECT_EQ(FindSegmentIndex(segments, base + 9), 0);
  EXPECT_EQ(FindSegmentIndex(segments, base + 10), -1);
}

}  // namespace
}  // namespace hpfile
