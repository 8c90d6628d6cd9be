// SPDX-License-Identifier: Apache-2.0
#include "core/fault_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using testing::ListDirSorted;
using testing::TempDir;
using testing::WriteFileText;

constexpr IoOpMask Mask(IoOp op) { return static_cast<IoOpMask>(op); }

std::span<const std::byte> Bytes(std::string_view text) { return std::as_bytes(std::span(text)); }

// Reads a file without going through the Io under test. nullopt if missing.
std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

class FaultIoTest : public ::testing::Test {
 protected:
  // Opens through the Io under test, failing the test if that fails.
  Fd OpenOrDie(const std::string& path, int flags, mode_t mode = 0644) {
    auto fd = Fd::Open(io_, path, flags, mode);
    EXPECT_TRUE(fd.has_value()) << path << ": " << (fd ? "" : fd.error().message());
    return fd ? std::move(*fd) : Fd();
  }
  void Write(const Fd& fd, std::string_view text, uint64_t offset) {
    auto written = WriteFull(io_, fd.get(), Bytes(text), offset);
    ASSERT_TRUE(written.has_value()) << written.error().message();
  }
  // Writes `content` to `path` through the Io and fsyncs it; the directory
  // entry is left unsynced.
  void WriteAndFsync(const std::string& path, std::string_view content, int flags = O_RDWR | O_CREAT) {
    Fd fd = OpenOrDie(path, flags);
    Write(fd, content, 0);
    ASSERT_TRUE(io_.Fsync(fd.get()).has_value());
  }
  // Creates `name` holding `content` through the Io; syncs data and entry.
  void CreateDurable(const std::string& name, std::string_view content) {
    Fd fd = OpenOrDie(dir_ / name, O_RDWR | O_CREAT | O_TRUNC);
    Write(fd, content, 0);
    ASSERT_TRUE(io_.Fdatasync(fd.get()).has_value());
    ASSERT_TRUE(SyncDir(io_, dir_.path()).has_value());
  }
  void PowerLoss() {
    auto dropped = io_.DropUnsyncedData();
    ASSERT_TRUE(dropped.has_value()) << dropped.error().message();
  }

  TempDir dir_;
  FaultIo io_;
};

// ---- Fault injection ----

TEST_F(FaultIoTest, NthMatchingCallFailsOnceWithGivenErrno) {
  Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
  io_.FailNthCall(3, EIO, Mask(IoOp::kPwrite));
  EXPECT_TRUE(io_.Pwrite(fd.get(), Bytes("a"), 0).has_value());
  EXPECT_TRUE(io_.Pwrite(fd.get(), Bytes("b"), 1).has_value());
  EXPECT_FALSE(io_.Fired());
  auto third = io_.Pwrite(fd.get(), Bytes("c"), 2);
  ASSERT_FALSE(third.has_value());
  EXPECT_EQ(third.error().value(), EIO);
  EXPECT_TRUE(io_.Fired());
  EXPECT_TRUE(io_.Pwrite(fd.get(), Bytes("d"), 2).has_value());
  EXPECT_TRUE(io_.Pwrite(fd.get(), Bytes("e"), 3).has_value());
  EXPECT_EQ(ReadFile(dir_ / "f"), "abde");
}

TEST_F(FaultIoTest, CallsOutsideTheMaskNeitherCountNorFail) {
  Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
  io_.FailNthCall(1, ENOSPC, Mask(IoOp::kFsync));
  std::byte buf[4];
  EXPECT_TRUE(io_.Pwrite(fd.get(), Bytes("abc"), 0).has_value());
  EXPECT_TRUE(io_.Pread(fd.get(), buf, 0).has_value());
  EXPECT_TRUE(io_.Fdatasync(fd.get()).has_value());
  EXPECT_TRUE(io_.Fstat(fd.get()).has_value());
  EXPECT_TRUE(io_.ListDir(dir_.path()).has_value());
  EXPECT_FALSE(io_.Fired());
  auto synced = io_.Fsync(fd.get());
  ASSERT_FALSE(synced.has_value());
  EXPECT_EQ(synced.error().value(), ENOSPC);
  EXPECT_TRUE(io_.Fired());
}

TEST_F(FaultIoTest, EachKindOfCallCanBeFailed) {
  Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
  Write(fd, "abc", 0);
  ASSERT_TRUE(io_.Mkdir(dir_ / "d", 0755).has_value());
  std::byte buf[4];
  const int raw = fd.get();
  const std::vector<std::pair<IoOp, std::function<bool()>>> calls = {
      {IoOp::kOpen, [&] { return io_.Open(dir_ / "f", O_RDONLY, 0).has_value(); }},
      {IoOp::kPread, [&] { return io_.Pread(raw, buf, 0).has_value(); }},
      {IoOp::kPwrite, [&] { return io_.Pwrite(raw, Bytes("x"), 0).has_value(); }},
      {IoOp::kFdatasync, [&] { return io_.Fdatasync(raw).has_value(); }},
      {IoOp::kFsync, [&] { return io_.Fsync(raw).has_value(); }},
      {IoOp::kFtruncate, [&] { return io_.Ftruncate(raw, 1).has_value(); }},
      {IoOp::kFallocate, [&] { return io_.Fallocate(raw, 0, 0, 1).has_value(); }},
      {IoOp::kFstat, [&] { return io_.Fstat(raw).has_value(); }},
      {IoOp::kStat, [&] { return io_.Stat(dir_ / "f").has_value(); }},
      {IoOp::kUnlink, [&] { return io_.Unlink(dir_ / "f").has_value(); }},
      {IoOp::kRename, [&] { return io_.Rename(dir_ / "f", dir_ / "g").has_value(); }},
      {IoOp::kMkdir, [&] { return io_.Mkdir(dir_ / "e", 0755).has_value(); }},
      {IoOp::kRmdir, [&] { return io_.Rmdir(dir_ / "d").has_value(); }},
      {IoOp::kListDir, [&] { return io_.ListDir(dir_.path()).has_value(); }},
      {IoOp::kSyncfs, [&] { return io_.Syncfs(raw).has_value(); }},
  };
  for (const auto& [op, call] : calls) {
    SCOPED_TRACE(static_cast<uint32_t>(op));
    const uint64_t before = io_.Calls(Mask(op));
    io_.FailNthCall(1, EROFS, Mask(op));
    EXPECT_FALSE(call());
    EXPECT_TRUE(io_.Fired());
    EXPECT_EQ(io_.Calls(Mask(op)), before + 1);
  }
  io_.Heal();
  // Nothing failed above touched the disk.
  EXPECT_EQ(ReadFile(dir_ / "f"), "abc");
  EXPECT_THAT(ListDirSorted(dir_.path()), UnorderedElementsAre("f", "d"));
  EXPECT_EQ(io_.OpenDescriptors(), 1u);
}

TEST_F(FaultIoTest, FailNthCallZeroDisarms) {
  Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
  io_.FailNthCall(2, EIO);
  io_.FailNthCall(0, EIO);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(io_.Fsync(fd.get()).has_value());
  EXPECT_FALSE(io_.Fired());
}

TEST_F(FaultIoTest, FailAlwaysFailsEveryMatchingCallUntilHealed) {
  Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
  io_.FailAlways(ENOSPC, Mask(IoOp::kPwrite) | Mask(IoOp::kFtruncate));
  for (int i = 0; i < 3; ++i) {
    auto written = io_.Pwrite(fd.get(), Bytes("x"), 0);
    ASSERT_FALSE(written.has_value());
    EXPECT_EQ(written.error().value(), ENOSPC);
  }
  auto truncated = io_.Ftruncate(fd.get(), 10);
  ASSERT_FALSE(truncated.has_value());
  EXPECT_EQ(truncated.error().value(), ENOSPC);
  EXPECT_TRUE(io_.Fsync(fd.get()).has_value());
  EXPECT_TRUE(io_.Fired());
  io_.Heal();
  EXPECT_TRUE(io_.Pwrite(fd.get(), Bytes("x"), 0).has_value());
  EXPECT_TRUE(io_.Ftruncate(fd.get(), 10).has_value());
  // Fired still tells what happened before the heal.
  EXPECT_TRUE(io_.Fired());
}

TEST_F(FaultIoTest, ArmingResetsFired) {
  Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
  io_.FailNthCall(1, EIO, Mask(IoOp::kFsync));
  EXPECT_FALSE(io_.Fsync(fd.get()).has_value());
  EXPECT_TRUE(io_.Fired());
  io_.FailNthCall(5, EIO, Mask(IoOp::kFsync));
  EXPECT_FALSE(io_.Fired());
}

TEST_F(FaultIoTest, FailingPwriteWritesHalfItsBytesFirst) {
  Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
  io_.FailNthCall(1, ENOSPC, Mask(IoOp::kPwrite));
  auto written = io_.Pwrite(fd.get(), Bytes("123456789"), 3);
  ASSERT_FALSE(written.has_value());
  EXPECT_EQ(written.error().value(), ENOSPC);
  EXPECT_EQ(ReadFile(dir_ / "f"), std::string(3, '\0') + "1234");
}

TEST_F(FaultIoTest, FailingOneBytePwriteWritesNothing) {
  Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
  io_.FailNthCall(1, EIO, Mask(IoOp::kPwrite));
  EXPECT_FALSE(io_.Pwrite(fd.get(), Bytes("z"), 0).has_value());
  EXPECT_EQ(ReadFile(dir_ / "f"), "");
}

TEST_F(FaultIoTest, FailedCreatingOpenCreatesNothing) {
  io_.FailNthCall(1, ENOSPC, Mask(IoOp::kOpen));
  auto fd = io_.Open(dir_ / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_FALSE(fd.has_value());
  EXPECT_EQ(fd.error().value(), ENOSPC);
  EXPECT_EQ(io_.OpenDescriptors(), 0u);
  EXPECT_THAT(ListDirSorted(dir_.path()), IsEmpty());
}

TEST_F(FaultIoTest, CountsCallsPerOperation) {
  Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
  Write(fd, "abc", 0);
  Write(fd, "def", 3);
  ASSERT_TRUE(io_.Fsync(fd.get()).has_value());
  EXPECT_EQ(io_.Calls(Mask(IoOp::kOpen)), 1u);
  EXPECT_EQ(io_.Calls(Mask(IoOp::kPwrite)), 2u);
  EXPECT_EQ(io_.Calls(Mask(IoOp::kPwrite) | Mask(IoOp::kFsync)), 3u);
  EXPECT_EQ(io_.Calls(), 4u);
  EXPECT_EQ(io_.Calls(Mask(IoOp::kRename)), 0u);
  io_.ResetCounts();
  EXPECT_EQ(io_.Calls(), 0u);
  io_.FailNthCall(1, EIO, Mask(IoOp::kFstat));
  EXPECT_FALSE(io_.Fstat(fd.get()).has_value());
  // A failed call still counts.
  EXPECT_EQ(io_.Calls(Mask(IoOp::kFstat)), 1u);
}

TEST_F(FaultIoTest, TracksOpenDescriptorsAndPeak) {
  EXPECT_EQ(io_.OpenDescriptors(), 0u);
  {
    Fd a = OpenOrDie(dir_ / "a", O_RDWR | O_CREAT);
    Fd b = OpenOrDie(dir_ / "b", O_RDWR | O_CREAT);
    {
      Fd c = OpenOrDie(dir_ / "c", O_RDWR | O_CREAT);
      EXPECT_EQ(io_.OpenDescriptors(), 3u);
    }
    EXPECT_EQ(io_.OpenDescriptors(), 2u);
  }
  EXPECT_EQ(io_.OpenDescriptors(), 0u);
  EXPECT_EQ(io_.PeakOpenDescriptors(), 3u);
}

TEST_F(FaultIoTest, CloseIsNeverFailed) {
  int raw;
  {
    Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
    raw = fd.get();
    io_.FailAlways(EIO, kAllIoOps);
  }
  io_.Heal();
  EXPECT_EQ(io_.OpenDescriptors(), 0u);
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);
}

TEST_F(FaultIoTest, SyncDirGoesThroughOpenAndFsync) {
  ASSERT_TRUE(SyncDir(io_, dir_.path()).has_value());
  EXPECT_EQ(io_.Calls(Mask(IoOp::kOpen)), 1u);
  EXPECT_EQ(io_.Calls(Mask(IoOp::kFsync)), 1u);
  EXPECT_EQ(io_.OpenDescriptors(), 0u);
  io_.FailNthCall(1, EIO, Mask(IoOp::kFsync));
  auto synced = SyncDir(io_, dir_.path());
  ASSERT_FALSE(synced.has_value());
  EXPECT_EQ(synced.error().value(), EIO);
}

TEST_F(FaultIoTest, CallsFromManyThreadsAreCountedExactly) {
  io_.TrackDurability(dir_.path());
  constexpr int kThreads = 8;
  constexpr int kRounds = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      const std::string path = dir_ / ("f" + std::to_string(t));
      auto fd = Fd::Open(io_, path, O_RDWR | O_CREAT, 0644);
      ASSERT_TRUE(fd.has_value());
      for (int i = 0; i < kRounds; ++i) {
        EXPECT_TRUE(io_.Pwrite(fd->get(), Bytes("x"), i).has_value());
        EXPECT_TRUE(io_.Fdatasync(fd->get()).has_value());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(SyncDir(io_, dir_.path()).has_value());
  EXPECT_EQ(io_.Calls(Mask(IoOp::kPwrite)), uint64_t{kThreads} * kRounds);
  EXPECT_EQ(io_.Calls(Mask(IoOp::kFdatasync)), uint64_t{kThreads} * kRounds);
  EXPECT_EQ(io_.Calls(Mask(IoOp::kOpen)), uint64_t{kThreads} + 1);
  EXPECT_EQ(io_.OpenDescriptors(), 0u);
  EXPECT_GE(io_.PeakOpenDescriptors(), 1u);
  EXPECT_LE(io_.PeakOpenDescriptors(), size_t{kThreads});
  PowerLoss();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(ReadFile(dir_ / ("f" + std::to_string(t))), std::string(kRounds, 'x'));
}

// ---- Power loss ----

TEST_F(FaultIoTest, PowerLossDropsUnsyncedAppendsButKeepsDataSyncedBytes) {
  WriteFileText(dir_ / "f", "base");
  io_.TrackDurability(dir_.path());
  {
    Fd fd = OpenOrDie(dir_ / "f", O_RDWR);
    Write(fd, "AAAA", 4);
    ASSERT_TRUE(io_.Fdatasync(fd.get()).has_value());
    Write(fd, "BBBB", 8);
    EXPECT_EQ(ReadFile(dir_ / "f"), "baseAAAABBBB");
  }
  PowerLoss();
  EXPECT_EQ(ReadFile(dir_ / "f"), "baseAAAA");
}

TEST_F(FaultIoTest, PowerLossKeepsEverythingPresentWhenTrackingStarted) {
  ASSERT_TRUE(std::filesystem::create_directories(dir_ / "a/b"));
  WriteFileText(dir_ / "a/b/deep", "deep");
  WriteFileText(dir_ / "top", "top");
  ASSERT_TRUE(std::filesystem::create_directory(dir_ / "empty"));
  io_.TrackDurability(dir_.path());
  PowerLoss();
  EXPECT_THAT(ListDirSorted(dir_.path()), UnorderedElementsAre("a", "top", "empty"));
  EXPECT_EQ(ReadFile(dir_ / "a/b/deep"), "deep");
  EXPECT_EQ(ReadFile(dir_ / "top"), "top");
  EXPECT_THAT(ListDirSorted(dir_ / "empty"), IsEmpty());
}

TEST_F(FaultIoTest, PowerLossKeepsDataSyncedThroughWriteOnlyDescriptor) {
  io_.TrackDurability(dir_.path());
  WriteAndFsync(dir_ / "f", "written", O_WRONLY | O_CREAT);
  ASSERT_TRUE(SyncDir(io_, dir_.path()).has_value());
  PowerLoss();
  EXPECT_EQ(ReadFile(dir_ / "f"), "written");
}

TEST_F(FaultIoTest, FileCreatedWithoutDirectorySyncVanishes) {
  io_.TrackDurability(dir_.path());
  WriteAndFsync(dir_ / "f", "data");
  PowerLoss();
  EXPECT_THAT(ListDirSorted(dir_.path()), IsEmpty());
}

TEST_F(FaultIoTest, FileWhoseDataWasNeverSyncedComesBackEmpty) {
  io_.TrackDurability(dir_.path());
  {
    Fd fd = OpenOrDie(dir_ / "f", O_RDWR | O_CREAT);
    Write(fd, "data", 0);
  }
  ASSERT_TRUE(SyncDir(io_, dir_.path()).has_value());
  PowerLoss();
  EXPECT_EQ(ReadFile(dir_ / "f"), "");
}

TEST_F(FaultIoTest, FileCreatedWithDataAndDirectorySyncSurvives) {
  io_.TrackDurability(dir_.path());
  CreateDurable("f", "data");
  PowerLoss();
  EXPECT_EQ(ReadFile(dir_ / "f"), "data");
}

// Unlink, rename and replacing rename, each followed by a power loss with or
// without a sync of the directory in between: only the sync makes the change
// last.
class FaultIoDirectorySyncTest : public FaultIoTest, public ::testing::WithParamInterface<bool> {
 protected:
  bool DirectorySynced() const { return GetParam(); }
  void SyncDirectoryIfAskedThenLosePower() {
    if (DirectorySynced()) {
      ASSERT_TRUE(SyncDir(io_, dir_.path()).has_value());
    }
    PowerLoss();
  }
};

INSTANTIATE_TEST_SUITE_P(PowerLoss, FaultIoDirectorySyncTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "WithDirectorySync" : "WithoutDirectorySync";
                         });

TEST_P(FaultIoDirectorySyncTest, UnlinkPersistsOnlyWithDirectorySync) {
  WriteFileText(dir_ / "f", "content");
  io_.TrackDurability(dir_.path());
  ASSERT_TRUE(io_.Unlink(dir_ / "f").has_value());
  SyncDirectoryIfAskedThenLosePower();
  if (DirectorySynced()) {
    EXPECT_THAT(ListDirSorted(dir_.path()), IsEmpty());
  } else {
    EXPECT_EQ(ReadFile(dir_ / "f"), "content");
  }
}

TEST_P(FaultIoDirectorySyncTest, RenamePersistsOnlyWithDirectorySync) {
  WriteFileText(dir_ / "a", "content");
  io_.TrackDurability(dir_.path());
  ASSERT_TRUE(io_.Rename(dir_ / "a", dir_ / "b").has_value());
  SyncDirectoryIfAskedThenLosePower();
  const std::string survivor = DirectorySynced() ? "b" : "a";
  EXPECT_THAT(ListDirSorted(dir_.path()), ElementsAre(survivor));
  EXPECT_EQ(ReadFile(dir_ / survivor), "content");
}

TEST_P(FaultIoDirectorySyncTest, ReplacingRenameShowsNewFileOnlyWithDirectorySync) {
  WriteFileText(dir_ / "meta", "old");
  io_.TrackDurability(dir_.path());
  WriteAndFsync(dir_ / "meta.tmp", "new", O_RDWR | O_CREAT | O_TRUNC);
  ASSERT_TRUE(io_.Rename(dir_ / "meta.tmp", dir_ / "meta").has_value());
  SyncDirectoryIfAskedThenLosePower();
  EXPECT_THAT(ListDirSorted(dir_.path()), ElementsAre("meta"));
  EXPECT_EQ(ReadFile(dir_ / "meta"), DirectorySynced() ? "new" : "old");
}

// The backing filesystem may hand the unlinked file's inode number to the new
// one; the old name must still come back with the old bytes.
TEST_F(FaultIoTest, UndoneUnlinkKeepsOldContentWhenANewFileIsSynced) {
  WriteFileText(dir_ / "old", "old content");
  io_.TrackDurability(dir_.path());
  ASSERT_TRUE(io_.Unlink(dir_ / "old").has_value());
  {
    Fd fd = OpenOrDie(dir_ / "new", O_RDWR | O_CREAT | O_EXCL);
    Write(fd, "new", 0);
    ASSERT_TRUE(io_.Fdatasync(fd.get()).has_value());
  }
  PowerLoss();
  EXPECT_THAT(ListDirSorted(dir_.path()), ElementsAre("old"));
  EXPECT_EQ(ReadFile(dir_ / "old"), "old content");
}

TEST_F(FaultIoTest, RenamedFileKeepsContentSyncedUnderItsOldName) {
  io_.TrackDurability(dir_.path());
  Fd fd = OpenOrDie(dir_ / "a", O_RDWR | O_CREAT);
  Write(fd, "synced", 0);
  ASSERT_TRUE(io_.Fdatasync(fd.get()).has_value());
  ASSERT_TRUE(io_.Rename(dir_ / "a", dir_ / "b").has_value());
  ASSERT_TRUE(SyncDir(io_, dir_.path()).has_value());
  Write(fd, " and not", 6);
  fd.Reset();
  PowerLoss();
  EXPECT_THAT(ListDirSorted(dir_.path()), ElementsAre("b"));
  EXPECT_EQ(ReadFile(dir_ / "b"), "synced");
}

TEST_F(FaultIoTest, TruncateWithoutSyncIsUndone) {
  WriteFileText(dir_ / "f", "abcdef");
  io_.TrackDurability(dir_.path());
  {
    Fd fd = OpenOrDie(dir_ / "f", O_RDWR);
    ASSERT_TRUE(io_.Ftruncate(fd.get(), 2).has_value());
  }
  PowerLoss();
  EXPECT_EQ(ReadFile(dir_ / "f"), "abcdef");
  {
    Fd fd = OpenOrDie(dir_ / "f", O_RDWR);
    ASSERT_TRUE(io_.Ftruncate(fd.get(), 2).has_value());
    ASSERT_TRUE(io_.Fdatasync(fd.get()).has_value());
  }
  PowerLoss();
  EXPECT_EQ(ReadFile(dir_ / "f"), "ab");
}

TEST_F(FaultIoTest, DirectoryCreatedWithoutParentSyncVanishesWithItsFiles) {
  io_.TrackDurability(dir_.path());
  ASSERT_TRUE(io_.Mkdir(dir_ / "d", 0755).has_value());
  WriteAndFsync(dir_ / "d/f", "data");
  ASSERT_TRUE(SyncDir(io_, dir_ / "d").has_value());
  PowerLoss();
  EXPECT_THAT(ListDirSorted(dir_.path()), IsEmpty());
}

TEST_F(FaultIoTest, DirectoryWhoseEntriesWereNeverSyncedComesBackEmpty) {
  io_.TrackDurability(dir_.path());
  ASSERT_TRUE(io_.Mkdir(dir_ / "d", 0755).has_value());
  WriteAndFsync(dir_ / "d/f", "data");
  ASSERT_TRUE(SyncDir(io_, dir_.path()).has_value());
  PowerLoss();
  EXPECT_THAT(ListDirSorted(dir_.path()), ElementsAre("d"));
  EXPECT_THAT(ListDirSorted(dir_ / "d"), IsEmpty());
}

TEST_F(FaultIoTest, DirectoryRemovedWithoutParentSyncComesBackWithItsFiles) {
  ASSERT_TRUE(std::filesystem::create_directory(dir_ / "d"));
  WriteFileText(dir_ / "d/f", "inside");
  io_.TrackDurability(dir_.path());
  ASSERT_TRUE(io_.Unlink(dir_ / "d/f").has_value());
  ASSERT_TRUE(SyncDir(io_, dir_ / "d").has_value());
  ASSERT_TRUE(io_.Rmdir(dir_ / "d").has_value());
  PowerLoss();
  // The directory's own sync made the unlink durable; only the rmdir is undone.
  EXPECT_THAT(ListDirSorted(dir_.path()), ElementsAre("d"));
  EXPECT_THAT(ListDirSorted(dir_ / "d"), IsEmpty());
}

TEST_F(FaultIoTest, PowerLossWithOpenDescriptorFailsWithEbusy) {
  WriteFileText(dir_ / "f", "abc");
  io_.TrackDurability(dir_.path());
  Fd fd = OpenOrDie(dir_ / "f", O_RDWR);
  Write(fd, "def", 3);
  auto dropped = io_.DropUnsyncedData();
  ASSERT_FALSE(dropped.has_value());
  EXPECT_EQ(dropped.error().value(), EBUSY);
  EXPECT_EQ(ReadFile(dir_ / "f"), "abcdef");
  fd.Reset();
  PowerLoss();
  EXPECT_EQ(ReadFile(dir_ / "f"), "abc");
}

TEST_F(FaultIoTest, StateAfterPowerLossCountsAsDurable) {
  WriteFileText(dir_ / "f", "abc");
  io_.TrackDurability(dir_.path());
  CreateDurable("g", "ghi");
  {
    Fd fd = OpenOrDie(dir_ / "f", O_RDWR);
    Write(fd, "lost", 3);
  }
  PowerLoss();
  PowerLoss();
  EXPECT_THAT(ListDirSorted(dir_.path()), UnorderedElementsAre("f", "g"));
  EXPECT_EQ(ReadFile(dir_ / "f"), "abc");
  EXPECT_EQ(ReadFile(dir_ / "g"), "ghi");
  // Changes after the first power loss are judged from the rebuilt state.
  ASSERT_TRUE(io_.Unlink(dir_ / "g").has_value());
  PowerLoss();
  EXPECT_EQ(ReadFile(dir_ / "g"), "ghi");
}

TEST_F(FaultIoTest, FailedSyncMakesNothingDurable) {
  io_.TrackDurability(dir_.path());
  WriteFileText(dir_ / "f", "");
  ASSERT_TRUE(SyncDir(io_, dir_.path()).has_value());
  {
    Fd fd = OpenOrDie(dir_ / "f", O_RDWR);
    Write(fd, "data", 0);
    io_.FailNthCall(1, EIO, Mask(IoOp::kFdatasync));
    EXPECT_FALSE(io_.Fdatasync(fd.get()).has_value());
    io_.Heal();
  }
  PowerLoss();
  EXPECT_EQ(ReadFile(dir_ / "f"), "");
}

TEST_F(FaultIoTest, FilesOutsideTheTrackedTreeAreLeftAlone) {
  ASSERT_TRUE(std::filesystem::create_directory(dir_ / "tracked"));
  io_.TrackDurability(dir_ / "tracked");
  {
    Fd fd = OpenOrDie(dir_ / "outside", O_RDWR | O_CREAT);
    Write(fd, "outside", 0);
  }
  PowerLoss();
  EXPECT_EQ(ReadFile(dir_ / "outside"), "outside");
}

}  // namespace
}  // namespace hpfile
