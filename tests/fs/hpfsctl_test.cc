// SPDX-License-Identifier: Apache-2.0
// hpfsctl's parsing and printing, and `check` on backing directories built by
// hand (no mount needed: check works on unmounted directories).
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/format.h"
#include "core/hpfile.h"
#include "core/segment_name.h"
#include "fs/backing_lock.h"
#include "fs/ctl/check.h"
#include "fs/ctl/ctl.h"
#include "tests/fs/fs_test_util.h"

namespace hpfs::ctl {
namespace {

std::expected<hpfs_set, std::string> Parse(std::vector<std::string_view> args) { return ParseAssignments(args); }

TEST(ParseAssignmentsTest, SizesAndDurationsTakeTheirSuffixes) {
  auto r = Parse({"segment_size=16M", "retain_bytes=2g", "retain_seconds=7d"});
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->mask, HPFS_SET_SEGMENT_SIZE | HPFS_SET_RETAIN_BYTES | HPFS_SET_RETAIN_SECONDS);
  EXPECT_EQ(r->segment_size, 16ull << 20);
  EXPECT_EQ(r->retain_bytes, 2ull << 30);
  EXPECT_EQ(r->retain_seconds, 7ull * 86400);
}

TEST(ParseAssignmentsTest, OnlyNamedKeysAreInTheMask) {
  auto r = Parse({"retain_seconds=90m"});
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->mask, static_cast<uint32_t>(HPFS_SET_RETAIN_SECONDS));
  EXPECT_EQ(r->retain_seconds, 5400u);
}

TEST(ParseAssignmentsTest, NoneAndZeroBothRemoveARetentionLimit) {
  auto r = Parse({"retain_bytes=none", "retain_seconds=0"});
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->mask, HPFS_SET_RETAIN_BYTES | HPFS_SET_RETAIN_SECONDS);
  EXPECT_EQ(r->retain_bytes, 0u);
  EXPECT_EQ(r->retain_seconds, 0u);
}

TEST(ParseAssignmentsTest, SegmentSizeOutsideFourKibibytesToOneTebibyteIsRefused) {
  EXPECT_FALSE(Parse({"segment_size=0"}));
  EXPECT_FALSE(Parse({"segment_size=1"}));
  EXPECT_FALSE(Parse({"segment_size=4095"}));
  EXPECT_FALSE(Parse({"segment_size=none"}));
  EXPECT_FALSE(Parse({"segment_size=2T"}));
  EXPECT_TRUE(Parse({"segment_size=1T"}));
  EXPECT_TRUE(Parse({"segment_size=4K"}));
  auto tiny = Parse({"segment_size=1"});
  ASSERT_FALSE(tiny);
  EXPECT_NE(tiny.error().find("4K to 1T"), std::string::npos) << tiny.error();
}

TEST(FormatSettingsTextTest, ShowsWhatSetChangesAsStatDoes) {
  hpfs_stat st{};
  st.segment_size = 1048576;
  st.retain_bytes = 2097152;
  st.retain_seconds = 3600;
  EXPECT_EQ(FormatSettingsText(st), "segment_size=1048576\nretain_bytes=2097152\nretain_seconds=3600\n");
  EXPECT_NE(FormatStatText(st, std::nullopt).find(FormatSettingsText(st)), std::string::npos);
}

TEST(ParseAssignmentsTest, ErrorsNameTheOffendingArgument) {
  struct Case {
    std::vector<std::string_view> args;
    std::string_view named;
  };
  const std::vector<Case> cases = {
      {{"retain_bytes=1G", "colour=blue"}, "colour"},
      {{"retain_bytes=12X"}, "retain_bytes=12X"},
      {{"retain_seconds=5w"}, "retain_seconds=5w"},
      {{"retain_bytes="}, "retain_bytes="},
      {{"retain_bytes=-1"}, "retain_bytes=-1"},
      {{"retain_bytes=99999999999999999999"}, "retain_bytes=99999999999999999999"},
      {{"retain_bytes"}, "retain_bytes"},
      {{"retain_bytes=1", "retain_bytes=2"}, "retain_bytes"},
  };
  for (const Case& c : cases) {
    auto r = Parse(c.args);
    ASSERT_FALSE(r) << c.named;
    EXPECT_NE(r.error().find(c.named), std::string::npos) << r.error();
  }
}

TEST(ParseAssignmentsTest, NothingToSetIsAnError) { EXPECT_FALSE(Parse({})); }

hpfs_stat SampleStat() {
  hpfs_stat st{};
  st.head = 1048576;
  st.size = 2500000;
  st.durable_size = 2400000;
  st.segments = 2;
  st.segment_size = 1048576;
  st.retain_bytes = 0;
  st.retain_seconds = 3600;
  return st;
}

TEST(FormatStatTest, TextHasOneLinePerKeyInOrder) {
  EXPECT_EQ(FormatStatText(SampleStat(), std::nullopt),
            "head=1048576\nsize=2500000\ndurable_size=2400000\nsegments=2\nsegment_size=1048576\n"
            "retain_bytes=0\nretain_seconds=3600\nmode=writethrough\nheld_bytes=0\npruned_segments=0\npruned_bytes=0\ndamaged=none\n");
}

TEST(FormatStatTest, WritebackModeAndHeldBytesAreShown) {
  hpfs_stat st = SampleStat();
  st.flags = HPFS_STAT_WRITEBACK;
  st.held_bytes = 8192;
  EXPECT_NE(FormatStatText(st, std::nullopt).find("\nmode=writeback\nheld_bytes=8192\n"), std::string::npos);
  EXPECT_NE(FormatStatJson(st, "a").find(", \"mode\": \"writeback\", \"held_bytes\": 8192, "), std::string::npos);
  st.spooled_bytes = 4096;
  st.spool_overflows = 3;
  EXPECT_NE(FormatStatText(st, std::nullopt).find("\nspooled_bytes=4096\nspool_overflows=3\n"), std::string::npos);
  EXPECT_NE(FormatStatJson(st, "a").find("\"spooled_bytes\": 4096, \"spool_overflows\": 3"), std::string::npos);
  EXPECT_EQ(FormatStatText(SampleStat(), std::nullopt).find("spooled_bytes"), std::string::npos)
      << "write-through mode has no spool";
}

TEST(FormatStatTest, TextNamesTheFileAndKeepsTheDamageOnOneLine) {
  hpfs_stat st = SampleStat();
  st.flags = HPFS_STAT_DAMAGED;
  std::strcpy(st.damage, "bytes [1, 2) are missing\nsecond");
  const std::string text = FormatStatText(st, std::string("a.log"));
  EXPECT_TRUE(text.starts_with("file=a.log\nhead=")) << text;
  EXPECT_TRUE(text.ends_with("damaged=bytes [1, 2) are missing second\n")) << text;
}

TEST(FormatStatTest, DamageFieldWithoutTerminatorIsCutAtItsEnd) {
  hpfs_stat st = SampleStat();
  st.flags = HPFS_STAT_DAMAGED;
  std::memset(st.damage, 'x', sizeof st.damage);
  const std::string text = FormatStatText(st, std::nullopt);
  EXPECT_TRUE(text.ends_with("damaged=" + std::string(HPFS_DAMAGE_MAX, 'x') + "\n"));
}

TEST(FormatStatTest, JsonHasEveryFieldAndNullForNoDamage) {
  EXPECT_EQ(FormatStatJson(SampleStat(), "a.log"),
            "{\"file\": \"a.log\", \"head\": 1048576, \"size\": 2500000, \"durable_size\": 2400000, "
            "\"segments\": 2, \"segment_size\": 1048576, \"retain_bytes\": 0, \"retain_seconds\": 3600, "
            "\"mode\": \"writethrough\", \"held_bytes\": 0, \"pruned_segments\": 0, \"pruned_bytes\": 0, \"damaged\": null}");
  hpfs_stat st = SampleStat();
  st.flags = HPFS_STAT_DAMAGED;
  std::strcpy(st.damage, "gap");
  EXPECT_TRUE(FormatStatJson(st, "a").ends_with("\"damaged\": \"gap\"}"));
}

TEST(FormatStatTest, JsonQuoteEscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(JsonQuote("a\"b\\c\nd\x01"), "\"a\\\"b\\\\c\\nd\\u0001\"");
}

// --- check ---

class CheckTest : public ::testing::Test {
 protected:
  std::string Backing() const { return tmp_.path(); }
  std::string FileDir(const std::string& name) const { return Backing() + "/" + name; }

  void MakeFile(const std::string& name, uint64_t segment_size, uint64_t head) {
    std::filesystem::create_directories(FileDir(name));
    WriteText(FileDir(name) + "/hpfile.meta", "format=1\nsegment_size=" + std::to_string(segment_size) +
                                                  "\nhead=" + std::to_string(head) + "\nmode=0644\nuid=0\ngid=0\n");
  }
  void MakeSegment(const std::string& name, uint64_t base, uint64_t capacity, size_t length) {
    WriteText(FileDir(name) + "/" + hpfile::FormatSegmentName({base, capacity}), std::string(length, 'a'));
  }
  static void WriteText(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  }

  struct Run {
    int status;
    std::string out;
    std::string err;
  };
  Run Check(bool repair, bool truncate_at_gap = false) {
    std::ostringstream out, err;
    const int status =
        CheckBacking(Backing(), CheckOptions{.repair = repair, .truncate_at_gap = truncate_at_gap}, out, err);
    return {status, out.str(), err.str()};
  }

  // Every path under the backing directory with its size, the lock file
  // (which a repairing run creates to hold the lock) left out.
  std::vector<std::pair<std::string, uint64_t>> Snapshot() const {
    std::vector<std::pair<std::string, uint64_t>> entries;
    for (const auto& e : std::filesystem::recursive_directory_iterator(Backing())) {
      if (e.path().filename() == ".hpfs.lock") continue;
      entries.emplace_back(e.path().string(), e.is_regular_file() ? e.file_size() : 0);
    }
    std::sort(entries.begin(), entries.end());
    return entries;
  }

  hpfs::testing::TempDir tmp_;
};

TEST_F(CheckTest, CleanStoreIsOkAndExitsZero) {
  MakeFile("a.log", 16, 0);
  MakeSegment("a.log", 0, 16, 16);
  MakeSegment("a.log", 16, 16, 3);
  std::filesystem::create_directories(Backing() + "/sub");
  MakeFile("sub/b.log", 16, 0);
  auto r = Check(false);
  EXPECT_EQ(r.status, kCheckClean) << r.out << r.err;
  EXPECT_NE(r.out.find("a.log: ok"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sub/b.log: ok"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checked 2 HPFiles: 2 ok"), std::string::npos) << r.out;
}

// A grow spans its gap with one sparse segment wider than any segment_size.
TEST_F(CheckTest, FileGrownPastATebibyteIsOk) {
  {
    auto file = hpfile::HPFile::Open(FileDir("grown.log"));
    ASSERT_TRUE(file.has_value()) << file.error().message();
    ASSERT_TRUE((*file)->Append(std::as_bytes(std::span("abc", 3))).has_value());
    ASSERT_TRUE((*file)->Truncate(999999999999999).has_value());
  }
  auto r = Check(false);
  EXPECT_EQ(r.status, kCheckClean) << r.out << r.err;
  EXPECT_NE(r.out.find("grown.log: ok"), std::string::npos) << r.out;
}

TEST_F(CheckTest, ShortSealedSegmentIsReportedRepairedOnceThenClean) {
  MakeFile("a.log", 16, 0);
  MakeSegment("a.log", 0, 16, 10);
  MakeSegment("a.log", 16, 16, 4);
  const auto before = Snapshot();
  auto dry = Check(false);
  EXPECT_EQ(dry.status, kCheckUncorrected) << dry.out;
  EXPECT_NE(dry.out.find("a.log: needs recovery"), std::string::npos) << dry.out;
  EXPECT_EQ(Snapshot(), before);

  auto fix = Check(true);
  EXPECT_EQ(fix.status, kCheckCorrected) << fix.out << fix.err;
  EXPECT_NE(fix.out.find("a.log: repaired"), std::string::npos) << fix.out;
  EXPECT_FALSE(std::filesystem::exists(FileDir("a.log") + "/" + hpfile::FormatSegmentName({16, 16})));

  auto again = Check(false);
  EXPECT_EQ(again.status, kCheckClean) << again.out;
}

TEST_F(CheckTest, GapIsDamageThatRepairLeavesAloneUnlessAskedToTruncate) {
  MakeFile("a.log", 16, 0);
  MakeSegment("a.log", 0, 16, 16);
  MakeSegment("a.log", 32, 16, 5);
  const auto before = Snapshot();
  for (bool repair : {false, true}) {
    auto r = Check(repair);
    EXPECT_EQ(r.status, kCheckUncorrected) << r.out << r.err;
    EXPECT_NE(r.out.find("a.log: damaged: bytes [16, 32) are missing"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--truncate-at-gap deletes them"), std::string::npos) << r.out;
    EXPECT_EQ(Snapshot(), before) << "repair=" << repair;
  }
  auto preview = Check(false, /*truncate_at_gap=*/true);
  EXPECT_EQ(preview.status, kCheckUncorrected);
  EXPECT_NE(preview.out.find("--repair --truncate-at-gap would:"), std::string::npos) << preview.out;
  EXPECT_EQ(Snapshot(), before) << "a preview changes nothing";

  auto r = Check(true, /*truncate_at_gap=*/true);
  EXPECT_EQ(r.status, kCheckCorrected) << r.out << r.err;
  EXPECT_NE(r.out.find("a.log: repaired (was damaged: bytes [16, 32) are missing"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("5 bytes in 1 segments follow the gap: deleted them"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(FileDir("a.log") + "/" + hpfile::FormatSegmentName({32, 16})));
  EXPECT_EQ(Check(false).status, kCheckClean);
}

TEST_F(CheckTest, DirectoryWithSegmentsButNoMetaIsDamaged) {
  std::filesystem::create_directories(FileDir("lost"));
  MakeSegment("lost", 0, 16, 3);
  auto r = Check(false);
  EXPECT_EQ(r.status, kCheckUncorrected);
  EXPECT_NE(r.out.find("lost: damaged: hpfile.meta is missing"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--repair would:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rebuilt from the segments"), std::string::npos) << r.out;
}

TEST_F(CheckTest, RepairRebuildsALostMetaAndExplainsIt) {
  std::filesystem::create_directories(FileDir("lost"));
  MakeSegment("lost", 32, 16, 16);
  MakeSegment("lost", 48, 16, 3);
  MakeFile("garbled", 16, 0);
  WriteText(FileDir("garbled") + "/hpfile.meta", "format=1\nsegment_size=banana\n");
  MakeSegment("garbled", 0, 16, 2);
  auto r = Check(true);
  EXPECT_EQ(r.status, kCheckCorrected) << r.out << r.err;
  EXPECT_NE(r.out.find("lost: repaired (was damaged: hpfile.meta is missing"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("head=32 (the first segment's base)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("garbled: repaired"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checked 2 HPFiles: 0 ok, 2 repaired"), std::string::npos) << r.out;
  auto again = Check(false);
  EXPECT_EQ(again.status, kCheckClean) << again.out;
}

TEST_F(CheckTest, RepairLeavesFilesItCannotFullyRepairUntouched) {
  std::filesystem::create_directories(FileDir("odd"));
  MakeSegment("odd", 0, 16, 20);  // longer than its slot
  const auto before = Snapshot();
  auto r = Check(true, true);
  EXPECT_EQ(r.status, kCheckUncorrected) << r.out;
  EXPECT_NE(r.out.find("not repairable (nothing was changed):"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("more than its capacity"), std::string::npos) << r.out;
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(CheckTest, UserDirectoriesNamedLikeSegmentsStayPlainDirectories) {
  // Through the mount, a file or directory may be called anything, "x.seg" too;
  // in the backing tree both are directories.
  std::filesystem::create_directories(FileDir("logs/00000000000000000000-16.seg"));
  MakeFile("logs/old.seg", 16, 0);
  auto r = Check(false);
  EXPECT_EQ(r.status, kCheckClean) << r.out;
  EXPECT_NE(r.out.find("logs/old.seg: ok"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checked 1 HPFiles: 1 ok"), std::string::npos) << r.out;
}

TEST_F(CheckTest, TrashIsReportedWithoutErrorAndEmptiedByRepair) {
  MakeFile("a.log", 16, 0);
  std::filesystem::create_directories(Backing() + "/.hpfs-trash/old");
  WriteText(Backing() + "/.hpfs-trash/old/x.seg", "12345");
  auto r = Check(false);
  EXPECT_EQ(r.status, kCheckClean) << r.out;
  EXPECT_NE(r.out.find(".hpfs-trash: 1 entries, 5 bytes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n  old\n"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(Backing() + "/.hpfs-trash/old"));
  auto fix = Check(true);
  EXPECT_EQ(fix.status, kCheckClean) << fix.out;
  EXPECT_TRUE(std::filesystem::is_empty(Backing() + "/.hpfs-trash"));
}

TEST_F(CheckTest, StrayFileOutsideHPFilesIsAWarningOnly) {
  WriteText(Backing() + "/notes.txt", "hi");
  auto r = Check(false);
  EXPECT_EQ(r.status, kCheckClean);
  EXPECT_NE(r.out.find("notes.txt: warning: stray file"), std::string::npos) << r.out;
}

TEST_F(CheckTest, HeldBackingLockIsAnOperationalError) {
  MakeFile("a.log", 16, 0);
  auto lock = BackingLock::Acquire(Backing());
  ASSERT_TRUE(lock);
  for (bool repair : {false, true}) {
    auto r = Check(repair);
    EXPECT_EQ(r.status, kCheckOperational);
    EXPECT_NE(r.err.find("in use"), std::string::npos) << r.err;
  }
}

TEST_F(CheckTest, CheckWithoutRepairCreatesNoLockFile) {
  MakeFile("a.log", 16, 0);
  EXPECT_EQ(Check(false).status, kCheckClean);
  EXPECT_FALSE(std::filesystem::exists(Backing() + "/.hpfs.lock"));
}

TEST_F(CheckTest, MissingBackingIsAnOperationalError) {
  std::ostringstream out, err;
  EXPECT_EQ(CheckBacking(Backing() + "/nope", {}, out, err), kCheckOperational);
  EXPECT_NE(err.str().find("nope"), std::string::npos);
}

}  // namespace
}  // namespace hpfs::ctl
