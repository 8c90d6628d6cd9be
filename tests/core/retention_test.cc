// SPDX-License-Identifier: Apache-2.0
// Retention in the library: the policy rule (core/retention.h), its
// enforcement by HPFile::ApplyRetention, and the check at each segment roll
// inside Append, against the real filesystem in a temporary directory.
#include "core/retention.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/hpfile.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::ExpectWellFormed;
using testing::FileExists;
using testing::OptionsWithSegmentSize;
using testing::PatternBytes;
using testing::ReadRange;
using testing::SegmentFileName;
using testing::TempDir;

constexpr uint64_t kSegment = 100;

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

class RetentionTest : public ::testing::Test {
 protected:
  std::string Dir() const { return tmp_.Sub("file"); }
  std::string SegPath(uint64_t base) const { return Dir() + "/" + SegmentFileName(base, kSegment); }

  // Opens the file with 100-byte segments, reporting every enforcement to
  // `reports_`.
  std::unique_ptr<HPFile> OpenFile(std::optional<uint64_t> retain_bytes = std::nullopt,
                                   std::optional<uint64_t> retain_seconds = std::nullopt) {
    Options options = OptionsWithSegmentSize(kSegment);
    options.initial_meta.retain_bytes = retain_bytes;
    options.initial_meta.retain_seconds = retain_seconds;
    options.discard_segment = discard_;
    options.on_retention = [this](const RetentionResult& result) { reports_.push_back(result); };
    auto file = HPFile::Open(Dir(), options);
    EXPECT_TRUE(file) << file.error().message();
    return file ? std::move(*file) : nullptr;
  }

  // Appends the pattern bytes of [Size(), Size() + n).
  static void AppendPattern(HPFile& file, size_t n) {
    auto start = file.Append(PatternBytes(file.Size(), n));
    ASSERT_TRUE(start) << start.error().message();
  }

  // Sets a segment file's mtime to `seconds_ago` before now.
  void Age(uint64_t base, int64_t seconds_ago) {
    const timespec times[2] = {{Now() - seconds_ago, 0}, {Now() - seconds_ago, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, SegPath(base).c_str(), times, 0), 0) << SegPath(base);
  }

  TempDir tmp_;
  std::function<Result<void>(const std::string&)> discard_;
  std::vector<RetentionResult> reports_;
};

// --- the rule ---

TEST(RetentionPolicyTest, ByteLimitKeepsAtLeastTheNewestBytes) {
  const RetentionPolicy policy{.retain_bytes = 150};
  EXPECT_TRUE(policy.BytesAllowDrop(100, 250)) << "exactly 150 bytes stay";
  EXPECT_FALSE(policy.BytesAllowDrop(100, 249)) << "149 would stay";
  EXPECT_FALSE(policy.BytesAllowDrop(300, 250)) << "a slot past the end";
  EXPECT_FALSE(RetentionPolicy{}.BytesAllowDrop(100, 1000)) << "no limit, nothing goes";
}

TEST(RetentionPolicyTest, AgeLimitDropsOnlyWhatIsStrictlyOlder) {
  const RetentionPolicy policy{.retain_seconds = 60};
  EXPECT_TRUE(policy.AgeAllowsDrop(1000, 1061));
  EXPECT_FALSE(policy.AgeAllowsDrop(1000, 1060)) << "exactly the limit stays";
  EXPECT_FALSE(policy.AgeAllowsDrop(2000, 1000)) << "written in the future";
  EXPECT_FALSE(RetentionPolicy{}.AgeAllowsDrop(0, 1000000));
  EXPECT_FALSE((RetentionPolicy{.retain_seconds = UINT64_MAX}.AgeAllowsDrop(0, INT64_MAX)));
}

TEST(RetentionPolicyTest, FromMetaTakesBothLimits) {
  Meta meta;
  EXPECT_TRUE(RetentionPolicy::FromMeta(meta).empty());
  meta.retain_bytes = 5;
  meta.retain_seconds = 7;
  const RetentionPolicy policy = RetentionPolicy::FromMeta(meta);
  EXPECT_EQ(policy.retain_bytes, 5u);
  EXPECT_EQ(policy.retain_seconds, 7u);
}

// --- at each roll, inside Append ---

TEST_F(RetentionTest, AppendThatRollsDropsTheOldestSegmentTheByteLimitLetsGo) {
  auto file = OpenFile(/*retain_bytes=*/150);
  ASSERT_TRUE(file);
  AppendPattern(*file, kSegment);
  AppendPattern(*file, kSegment);
  EXPECT_EQ(file->Head(), 0u) << "[0,100) going would leave 100 bytes, fewer than 150";
  EXPECT_TRUE(reports_.empty());

  AppendPattern(*file, kSegment);  // rolls to [200,300): 200 bytes stay without [0,100)
  EXPECT_EQ(file->Head(), kSegment);
  testing::DeleteAllPruned(*file);
  EXPECT_FALSE(FileExists(SegPath(0)));
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].old_head, 0u);
  EXPECT_EQ(reports_[0].new_head, kSegment);
  EXPECT_EQ(reports_[0].segments, 1u);
  EXPECT_EQ(reports_[0].bytes_dropped(), kSegment);
  EXPECT_FALSE(reports_[0].error);

  AppendPattern(*file, kSegment);
  EXPECT_EQ(file->Head(), 2 * kSegment);
  EXPECT_EQ(reports_.size(), 2u);
  ASSERT_OK_AND_ASSIGN(auto bytes, ReadRange(*file, 2 * kSegment, 2 * kSegment));
  EXPECT_EQ(bytes, PatternBytes(2 * kSegment, 2 * kSegment));
  ExpectWellFormed(*file);
}

TEST_F(RetentionTest, AppendLargerThanSeveralSegmentsDropsEverySegmentTheLimitLetsGo) {
  auto file = OpenFile(/*retain_bytes=*/150);
  ASSERT_TRUE(file);
  AppendPattern(*file, 50);
  AppendPattern(*file, 10 * kSegment);  // one write: [0,1050) in 11 segments
  ASSERT_EQ(file->Size(), 1050u);
  // A slot ending at 900 leaves exactly 150 bytes; the one ending at 1000, 50.
  EXPECT_EQ(file->Head(), 9 * kSegment);
  testing::DeleteAllPruned(*file);
  for (uint64_t base = 0; base < 9 * kSegment; base += kSegment) {
    EXPECT_FALSE(FileExists(SegPath(base))) << "segment " << base << " outlived the limit";
  }
  EXPECT_TRUE(FileExists(SegPath(9 * kSegment)));
  ASSERT_EQ(reports_.size(), 1u) << "one report per enforcement, not per segment";
  EXPECT_EQ(reports_[0].old_head, 0u);
  EXPECT_EQ(reports_[0].new_head, 9 * kSegment);
  EXPECT_EQ(reports_[0].segments, 9u);
  ASSERT_OK_AND_ASSIGN(auto bytes, ReadRange(*file, 9 * kSegment, 150));
  EXPECT_EQ(bytes, PatternBytes(9 * kSegment, 150));
  ExpectWellFormed(*file);
}

TEST_F(RetentionTest, AppendsKeepPaceWithTheByteLimitAndNeverDropTooMuch) {
  auto file = OpenFile(/*retain_bytes=*/250);
  ASSERT_TRUE(file);
  for (int i = 0; i < 200; ++i) {
    AppendPattern(*file, 37);
    if (file->Head() > 0) {
      ASSERT_GE(file->Size() - file->Head(), 250u) << "after append " << i;
    }
    // At most one segment, plus the part of the tail past a slot, beyond the limit.
    ASSERT_LT(file->Size() - file->Head(), 250u + 2 * kSegment) << "after append " << i;
    ASSERT_EQ(file->Head() % kSegment, 0u) << "only whole segments go";
  }
  ExpectWellFormed(*file);
}

TEST_F(RetentionTest, AppendWithinTheTailLeavesRetentionToApplyRetention) {
  auto file = OpenFile();
  ASSERT_TRUE(file);
  AppendPattern(*file, 4 * kSegment + 10);
  ASSERT_OK(file->UpdateMeta([](Meta& meta) { meta.retain_bytes = 50; }));
  AppendPattern(*file, 10);  // no roll
  EXPECT_EQ(file->Head(), 0u);
  EXPECT_TRUE(reports_.empty());

  const RetentionResult result = file->ApplyRetention(Now());
  EXPECT_FALSE(result.error) << result.error.message();
  EXPECT_EQ(result.old_head, 0u);
  // 420 bytes: [300,400) going would leave 20, fewer than 50.
  EXPECT_EQ(result.new_head, 3 * kSegment);
  EXPECT_EQ(result.segments, 3u);
  ASSERT_EQ(reports_.size(), 1u) << "one report per enforcement, not per segment";
  EXPECT_EQ(reports_[0].new_head, 3 * kSegment);
  ExpectWellFormed(*file);
}

TEST_F(RetentionTest, SegmentFilesDroppedAtARollWaitForDeletePrunedSegments) {
  auto file = OpenFile(/*retain_bytes=*/kSegment);
  ASSERT_TRUE(file);
  AppendPattern(*file, kSegment);
  AppendPattern(*file, kSegment);  // rolls; [0,100) goes
  EXPECT_EQ(file->Size(), 2 * kSegment);
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_FALSE(reports_[0].error);
  // The head has moved, so the bytes are gone for readers; the segment file
  // stays until the deleter runs, and the head is not on disk yet.
  EXPECT_EQ(file->Head(), kSegment);
  EXPECT_TRUE(FileExists(SegPath(0)));
  EXPECT_EQ(file->PrunedSegments().segments, 1u);
  ASSERT_OK_AND_ASSIGN(auto bytes, ReadRange(*file, kSegment, kSegment));
  EXPECT_EQ(bytes, PatternBytes(kSegment, kSegment));
  ExpectWellFormed(*file);

  // The deleter writes the head before it deletes below it.
  ASSERT_OK_AND_ASSIGN(uint64_t left, file->DeletePrunedSegments(100));
  EXPECT_EQ(left, 0u);
  EXPECT_FALSE(FileExists(SegPath(0)));
  EXPECT_NE(testing::ReadFileText(Dir() + "/hpfile.meta").find("head=100\n"), std::string::npos);
  ExpectWellFormed(*file);
}

// --- ApplyRetention ---

TEST_F(RetentionTest, ByteLimitNeverDropsTheTail) {
  auto file = OpenFile();
  ASSERT_TRUE(file);
  AppendPattern(*file, 3 * kSegment);  // three full segments; the last is the tail
  ASSERT_OK(file->UpdateMeta([](Meta& meta) { meta.retain_bytes = 1; }));
  const RetentionResult result = file->ApplyRetention(Now());
  EXPECT_FALSE(result.error);
  EXPECT_EQ(result.new_head, 2 * kSegment);
  EXPECT_EQ(file->Segments().size(), 1u);
  ExpectWellFormed(*file);
}

TEST_F(RetentionTest, AgeLimitDropsSealedSegmentsOlderThanItOldestFirst) {
  auto file = OpenFile();
  ASSERT_TRUE(file);
  AppendPattern(*file, 3 * kSegment + 10);
  ASSERT_OK(file->UpdateMeta([](Meta& meta) { meta.retain_seconds = 3600; }));
  Age(0, 7200);
  Age(kSegment, 7200);
  Age(2 * kSegment, 10);
  Age(3 * kSegment, 7200);  // the tail: never dropped by age
  RetentionResult result = file->ApplyRetention(Now());
  EXPECT_FALSE(result.error);
  EXPECT_EQ(result.new_head, 2 * kSegment) << "stops at the first segment young enough";

  Age(2 * kSegment, 3601 + 60);
  result = file->ApplyRetention(Now());
  EXPECT_EQ(result.old_head, 2 * kSegment);
  EXPECT_EQ(result.new_head, 3 * kSegment);
  EXPECT_EQ(file->ApplyRetention(Now()).segments, 0u) << "the old tail stays";
  ExpectWellFormed(*file);
}

TEST_F(RetentionTest, AgeLimitKeepsEverythingBehindAYoungOldestSegment) {
  auto file = OpenFile(std::nullopt, /*retain_seconds=*/3600);
  ASSERT_TRUE(file);
  AppendPattern(*file, 3 * kSegment + 10);
  Age(0, 10);
  Age(kSegment, 7200);
  Age(2 * kSegment, 7200);
  EXPECT_EQ(file->ApplyRetention(Now()).segments, 0u);
  EXPECT_EQ(file->Head(), 0u);
}

TEST_F(RetentionTest, EitherLimitIsEnoughToDropASegment) {
  auto file = OpenFile();
  ASSERT_TRUE(file);
  AppendPattern(*file, 4 * kSegment + 10);
  ASSERT_OK(file->UpdateMeta([](Meta& meta) {
    meta.retain_bytes = 300;  // lets [0,100) go
    meta.retain_seconds = 3600;
  }));
  Age(kSegment, 7200);  // lets [100,200) go once [0,100) has
  Age(2 * kSegment, 10);
  EXPECT_EQ(file->ApplyRetention(Now()).new_head, 2 * kSegment);
}

TEST_F(RetentionTest, NoLimitsDropNothing) {
  auto file = OpenFile();
  ASSERT_TRUE(file);
  AppendPattern(*file, 5 * kSegment);
  for (uint64_t base = 0; base < 5 * kSegment; base += kSegment) Age(base, 1000000);
  const RetentionResult result = file->ApplyRetention(Now());
  EXPECT_FALSE(result.pruned());
  EXPECT_FALSE(result.error);
  EXPECT_EQ(file->Head(), 0u);
  EXPECT_TRUE(reports_.empty());
}

TEST_F(RetentionTest, HeadMovedByRetentionSurvivesAReopen) {
  {
    auto file = OpenFile(/*retain_bytes=*/kSegment);
    ASSERT_TRUE(file);
    AppendPattern(*file, 5 * kSegment);
    ASSERT_OK(file->UpdateMeta([](Meta& meta) { meta.retain_bytes = 10; }));
    (void)file->ApplyRetention(Now());
    ASSERT_EQ(file->Head(), 4 * kSegment);
    ASSERT_OK(file->Sync());
  }
  auto file = OpenFile();
  ASSERT_TRUE(file);
  EXPECT_EQ(file->Head(), 4 * kSegment);
  EXPECT_TRUE(file->RecoveryLog().empty());
  ExpectWellFormed(*file);
}

TEST_F(RetentionTest, ReadsBelowTheNewHeadFailWithEnodata) {
  auto file = OpenFile();
  ASSERT_TRUE(file);
  AppendPattern(*file, 3 * kSegment);
  ASSERT_OK(file->UpdateMeta([](Meta& meta) { meta.retain_bytes = kSegment; }));
  (void)file->ApplyRetention(Now());
  ASSERT_EQ(file->Head(), 2 * kSegment);
  EXPECT_ERRNO(ReadRange(*file, 2 * kSegment - 1, 1), ENODATA);
  ASSERT_OK_AND_ASSIGN(auto bytes, ReadRange(*file, 2 * kSegment, kSegment));
  EXPECT_EQ(bytes, PatternBytes(2 * kSegment, kSegment));
}

TEST_F(RetentionTest, DamagedFileReportsEioAndKeepsEverything) {
  {
    auto file = OpenFile(/*retain_bytes=*/1);
    ASSERT_TRUE(file);
    AppendPattern(*file, kSegment);
  }
  // Segments far beyond the end: a gap no crash leaves.
  testing::WriteFileText(SegPath(5 * kSegment), std::string(kSegment, 'x'));
  testing::WriteFileText(SegPath(6 * kSegment), "y");
  auto file = OpenFile();
  ASSERT_TRUE(file);
  ASSERT_TRUE(file->Damage());
  const RetentionResult result = file->ApplyRetention(Now());
  EXPECT_EQ(result.error.value(), EIO);
  EXPECT_FALSE(result.pruned());
  EXPECT_TRUE(FileExists(SegPath(0)));
}

}  // namespace
}  // namespace hpfile
