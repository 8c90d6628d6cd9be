// SPDX-License-Identifier: Apache-2.0
// The small-file and directory helpers: number and key=value parsing, whole
// reads, atomic replacement (under injected faults and power loss), listings
// whose readdir fails, and tree deletion.
#include "core/text_file.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "core/fault_io.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::FileExists;
using testing::ReadFileText;
using testing::TempDir;
using testing::WriteFileText;

TEST(ParseUnsignedTest, AcceptsDigitsUpToTheLimit) {
  EXPECT_EQ(ParseUnsigned("0"), 0u);
  EXPECT_EQ(ParseUnsigned("42"), 42u);
  EXPECT_EQ(ParseUnsigned("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(ParseUnsigned("0755", 8), 0755u);
  EXPECT_EQ(ParseUnsigned32("4294967295"), UINT32_MAX);
}

TEST(ParseUnsignedTest, RejectsOverflowJunkSignsAndEmptyText) {
  for (const char* text : {"", "18446744073709551616", "99999999999999999999999", "12a", "a12", "-1", "+1", " 1",
                           "1 ", "1.5", "0x10"}) {
    EXPECT_FALSE(ParseUnsigned(text).has_value()) << '"' << text << '"';
  }
  EXPECT_FALSE(ParseUnsigned32("4294967296").has_value());
  EXPECT_FALSE(ParseUnsigned("8", 8).has_value());
}

TEST(KeyValueLinesTest, SplitsAtTheFirstEqualsAndCountsEmptyLines) {
  auto lines = SplitKeyValueLines("a=1\n\nb=x=y\nnot a pair\nc=");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].number, 1u);
  EXPECT_EQ(lines[0].key, "a");
  EXPECT_EQ(lines[0].value, "1");
  EXPECT_EQ(lines[1].number, 3u);
  EXPECT_EQ(lines[1].key, "b");
  EXPECT_EQ(lines[1].value, "x=y");
  EXPECT_EQ(lines[2].number, 4u);
  EXPECT_FALSE(lines[2].well_formed());
  EXPECT_EQ(lines[2].text, "not a pair");
  EXPECT_EQ(lines[3].key, "c");
  EXPECT_EQ(lines[3].value, "");
  EXPECT_TRUE(lines[3].well_formed());
}

TEST(KeyValueLinesTest, ParseReportsTheFirstBadLine) {
  auto missing_equals = ParseKeyValueLines("a=1\nb=2\noops\n=4\n");
  ASSERT_FALSE(missing_equals.has_value());
  EXPECT_EQ(missing_equals.error().number, 3u);
  EXPECT_EQ(missing_equals.error().text, "oops");

  auto empty_key = ParseKeyValueLines("a=1\n=4\n");
  ASSERT_FALSE(empty_key.has_value());
  EXPECT_EQ(empty_key.error().number, 2u);
  EXPECT_EQ(empty_key.error().text, "=4");

  auto good = ParseKeyValueLines("a=1\nb=2");
  ASSERT_TRUE(good.has_value());
  EXPECT_EQ(good->size(), 2u);
}

TEST(KeyValueLinesTest, AppendedLinesParseBack) {
  std::string text;
  AppendKeyValue(text, "key", "value=with=equals");
  AppendKeyValue(text, "n", "7");
  EXPECT_EQ(text, "key=value=with=equals\nn=7\n");
  auto lines = ParseKeyValueLines(text);
  ASSERT_TRUE(lines.has_value());
  EXPECT_EQ((*lines)[0].value, "value=with=equals");
  EXPECT_EQ((*lines)[1].value, "7");
}

TEST(KeyValueTest, SplitsOneArgumentAtItsFirstEquals) {
  auto pair = SplitKeyValue("retain_bytes=1=2");
  ASSERT_TRUE(pair.has_value());
  EXPECT_EQ(pair->key, "retain_bytes");
  EXPECT_EQ(pair->value, "1=2");
  auto empty_value = SplitKeyValue("xattr=");
  ASSERT_TRUE(empty_value.has_value());
  EXPECT_EQ(empty_value->value, "");
  EXPECT_FALSE(SplitKeyValue("xattr").has_value());
}

TEST(ReadSmallFileTest, ReadsAFileLargerThanOneChunkWhole) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "line " + std::to_string(i) + "\n";
  WriteFileText(dir / "f", text);
  auto read = ReadSmallFile(PosixIo::Default(), dir / "f");
  ASSERT_OK(read);
  EXPECT_EQ(*read, text);
}

TEST(ReadSmallFileTest, MissingIsEnoentAndTooLargeIsEfbig) {
  TempDir dir;
  EXPECT_ERRNO(ReadSmallFile(PosixIo::Default(), dir / "none"), ENOENT);
  WriteFileText(dir / "f", std::string(100, 'x'));
  EXPECT_ERRNO(ReadSmallFile(PosixIo::Default(), dir / "f", 99), EFBIG);
  EXPECT_OK(ReadSmallFile(PosixIo::Default(), dir / "f", 100));
}

TEST(ReplaceFileAtomicallyTest, ReplacesAndLeavesNoTempFile) {
  TempDir dir;
  WriteFileText(dir / "name", "old\n");
  bool renamed = false;
  ASSERT_OK(ReplaceFileAtomically(PosixIo::Default(), dir.path(), "name", "name.tmp", "new\n", &renamed));
  EXPECT_TRUE(renamed);
  EXPECT_EQ(ReadFileText(dir / "name"), "new\n");
  EXPECT_FALSE(FileExists(dir / "name.tmp"));
}

TEST(ReplaceFileAtomicallyTest, AFailedRenameRemovesTheTempFileAndKeepsTheOld) {
  TempDir dir;
  // A directory of that name cannot be renamed over by a file.
  ASSERT_EQ(::mkdir((dir / "name").c_str(), 0755), 0);
  bool renamed = true;
  EXPECT_ERRNO(ReplaceFileAtomically(PosixIo::Default(), dir.path(), "name", "name.tmp", "new\n", &renamed), EISDIR);
  EXPECT_FALSE(renamed);
  EXPECT_FALSE(FileExists(dir / "name.tmp"));
}

// Every call of a replace fails in turn; after a power loss the file is the
// old one or the new one, whole, and the new one whenever the call succeeded.
TEST(ReplaceFileAtomicallyTest, PowerLossAfterAnyFailedStepLeavesOldOrNew) {
  const std::string old_text = "format=1\nvalue=old\n";
  const std::string new_text = "format=1\nvalue=new, and longer than the old\n";
  for (uint64_t n = 1;; ++n) {
    SCOPED_TRACE("call " + std::to_string(n) + " fails");
    TempDir dir;
    WriteFileText(dir / "name", old_text);
    FaultIo io;
    io.TrackDurability(dir.path());
    io.FailNthCall(n, EIO);
    bool renamed = false;
    const Result<void> replaced = ReplaceFileAtomically(io, dir.path(), "name", "name.tmp", new_text, &renamed);
    const bool fired = io.Fired();
    io.Heal();
    EXPECT_EQ(replaced.has_value(), !fired);
    EXPECT_EQ(io.OpenDescriptors(), 0u);
    if (!replaced && !renamed) {
      EXPECT_EQ(ReadFileText(dir / "name"), old_text) << "the old file must stay";
    }
    ASSERT_OK(io.DropUnsyncedData());
    const std::string after = ReadFileText(dir / "name");
    if (replaced) {
      EXPECT_EQ(after, new_text);
    } else {
      EXPECT_TRUE(after == old_text || after == new_text) << "after a power loss: \"" << after << '"';
    }
    if (!fired) break;
    ASSERT_LT(n, 50u) << "the replace never completes";
  }
}

TEST(EnsureDirectoryTest, CreatesOnlyWhenAllowedAndRefusesAFile) {
  TempDir dir;
  EXPECT_ERRNO(EnsureDirectory(PosixIo::Default(), dir / "d", /*create=*/false), ENOENT);
  EXPECT_FALSE(FileExists(dir / "d"));
  auto made = EnsureDirectory(PosixIo::Default(), dir / "d", /*create=*/true);
  ASSERT_OK(made);
  EXPECT_TRUE(*made);
  auto again = EnsureDirectory(PosixIo::Default(), dir / "d", /*create=*/true);
  ASSERT_OK(again);
  EXPECT_FALSE(*again);
  WriteFileText(dir / "f", "x");
  EXPECT_ERRNO(EnsureDirectory(PosixIo::Default(), dir / "f", /*create=*/true), ENOTDIR);
}

// A stand-in for readdir that yields the listed names, then fails or ends.
struct FakeDir {
  static inline std::vector<std::string> names;
  static inline size_t next = 0;
  static inline int fail_with = 0;  // errno at the end, 0 for a clean end
  static inline dirent entry{};

  static void Reset(std::vector<std::string> list, int err) {
    names = std::move(list);
    next = 0;
    fail_with = err;
  }
  static dirent* Read(DIR*) {
    if (next == names.size()) {
      if (fail_with != 0) errno = fail_with;
      return nullptr;
    }
    entry = {};
    entry.d_ino = next + 1;
    entry.d_type = DT_REG;
    std::strncpy(entry.d_name, names[next].c_str(), sizeof(entry.d_name) - 1);
    ++next;
    return &entry;
  }
};

TEST(ReadDirEntriesTest, AFailingReaddirFailsTheListing) {
  FakeDir::Reset({".", "a", "b"}, EIO);
  EXPECT_ERRNO(ReadDirEntries(nullptr, &FakeDir::Read), EIO);
}

TEST(ReadDirEntriesTest, ACleanEndListsEverythingButDotEntries) {
  FakeDir::Reset({".", "a", "..", "b"}, 0);
  // A stale errno from before the listing is not a failure.
  errno = EINVAL;
  auto entries = ReadDirEntries(nullptr, &FakeDir::Read);
  ASSERT_OK(entries);
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].name, "a");
  EXPECT_EQ((*entries)[0].ino, 2u);
  EXPECT_EQ((*entries)[0].type, DT_REG);
  EXPECT_EQ((*entries)[1].name, "b");
}

TEST(ReadDirEntriesTest, AVisitThatStopsReadsNoFurther) {
  FakeDir::Reset({"a", "b", "c"}, EIO);
  std::vector<std::string> seen;
  ASSERT_OK(VisitDirEntries(
      nullptr,
      [&](const DirEntry& entry) {
        seen.push_back(entry.name);
        return entry.name != "b";
      },
      &FakeDir::Read));
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(FakeDir::next, 2u);
}

TEST(ListDirectoryTest, VisitingStopsWhenAsked) {
  TempDir dir;
  for (const char* name : {"a", "b", "c"}) WriteFileText(dir / name, "x");
  ASSERT_OK_AND_ASSIGN(Fd fd, Fd::Open(PosixIo::Default(), dir.path(), O_RDONLY | O_DIRECTORY));
  int visits = 0;
  ASSERT_OK(VisitDirectory(fd.get(), [&](const DirEntry&) { return ++visits < 2; }));
  EXPECT_EQ(visits, 2);
}

TEST(ListDirectoryTest, ListsNamesWithTypes) {
  TempDir dir;
  WriteFileText(dir / "file", "x");
  ASSERT_EQ(::mkdir((dir / "sub").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("file", (dir / "link").c_str()), 0);
  ASSERT_OK_AND_ASSIGN(Fd fd, Fd::Open(PosixIo::Default(), dir.path(), O_RDONLY | O_DIRECTORY));
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> entries, ListDirectory(fd.get()));
  std::sort(entries.begin(), entries.end(), [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].name, "file");
  EXPECT_EQ(entries[1].name, "link");
  EXPECT_EQ(entries[2].name, "sub");
  // The backing filesystem may not fill d_type in; when it does, it is right.
  if (entries[0].type != DT_UNKNOWN) {
    EXPECT_EQ(entries[0].type, DT_REG);
    EXPECT_EQ(entries[1].type, DT_LNK);
    EXPECT_EQ(entries[2].type, DT_DIR);
  }
  // The caller's descriptor is not moved: listing again gives everything.
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> again, ListDirectory(fd.get()));
  EXPECT_EQ(again.size(), 3u);
}

TEST(ListDirectoryTest, ABadDescriptorIsAnError) { EXPECT_ERRNO(ListDirectory(-1), EBADF); }

// dir/tree: a file, a nested directory, and a symlink to a file outside it.
void BuildTree(const TempDir& dir) {
  ASSERT_EQ(::mkdir((dir / "tree").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "tree/sub").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "tree/sub/deeper").c_str(), 0755), 0);
  WriteFileText(dir / "tree/a", "a");
  WriteFileText(dir / "tree/sub/deeper/b", "b");
  WriteFileText(dir / "outside", "keep");
  ASSERT_EQ(::symlink((dir / "outside").c_str(), (dir / "tree/sub/link").c_str()), 0);
  ASSERT_EQ(::symlink(dir.path().c_str(), (dir / "tree/dirlink").c_str()), 0);
}

TEST(RemoveTreeAtTest, RemovesATreeWithoutFollowingLinks) {
  TempDir dir;
  BuildTree(dir);
  ASSERT_OK_AND_ASSIGN(Fd fd, Fd::Open(PosixIo::Default(), dir.path(), O_RDONLY | O_DIRECTORY));
  ASSERT_OK(RemoveTreeAt(fd.get(), "tree"));
  EXPECT_FALSE(FileExists(dir / "tree"));
  EXPECT_EQ(ReadFileText(dir / "outside"), "keep");
}

TEST(RemoveTreeAtTest, RemovesAPlainFileAndToleratesAMissingName) {
  TempDir dir;
  WriteFileText(dir / "file", "x");
  ASSERT_OK_AND_ASSIGN(Fd fd, Fd::Open(PosixIo::Default(), dir.path(), O_RDONLY | O_DIRECTORY));
  ASSERT_OK(RemoveTreeAt(fd.get(), "file"));
  EXPECT_FALSE(FileExists(dir / "file"));
  EXPECT_OK(RemoveTreeAt(fd.get(), "file"));
}

TEST(RemoveTreeTest, RemovesATreeThroughTheIoAndToleratesAMissingPath) {
  TempDir dir;
  BuildTree(dir);
  ASSERT_OK(RemoveTree(PosixIo::Default(), dir / "tree"));
  EXPECT_FALSE(FileExists(dir / "tree"));
  EXPECT_EQ(ReadFileText(dir / "outside"), "keep");
  EXPECT_OK(RemoveTree(PosixIo::Default(), dir / "tree"));
}

TEST(RemoveTreeTest, AFailingCallIsReported) {
  TempDir dir;
  BuildTree(dir);
  FaultIo io;
  io.FailNthCall(1, EIO, static_cast<IoOpMask>(IoOp::kUnlink));
  EXPECT_ERRNO(RemoveTree(io, dir / "tree"), EIO);
  io.Heal();
  EXPECT_OK(RemoveTree(io, dir / "tree"));
  EXPECT_FALSE(FileExists(dir / "tree"));
}

}  // namespace
}  // namespace hpfile
