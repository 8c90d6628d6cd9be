// SPDX-License-Identifier: Apache-2.0
#include "core/io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using ::testing::UnorderedElementsAre;
using testing::ForwardingIo;
using testing::TempDir;
using testing::ToBytes;

std::string Text(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

bool FdIsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// Moves at most `limit` bytes per call, as a pipe or a signal-interrupted
// transfer might; Pwrite returns `zero_writes` zero counts first when asked.
class ShortIo : public ForwardingIo {
 public:
  explicit ShortIo(size_t limit) : limit_(limit) {}
  size_t zero_writes = 0;
  int reads = 0;
  int writes = 0;

  Result<size_t> Pread(int fd, std::span<std::byte> buf, uint64_t offset) override {
    ++reads;
    return ForwardingIo::Pread(fd, buf.first(std::min(buf.size(), limit_)), offset);
  }
  Result<size_t> Pwrite(int fd, std::span<const std::byte> buf, uint64_t offset) override {
    ++writes;
    if (zero_writes > 0) {
      --zero_writes;
      return size_t{0};
    }
    return ForwardingIo::Pwrite(fd, buf.first(std::min(buf.size(), limit_)), offset);
  }

 private:
  size_t limit_;
};

TEST(PosixIoTest, OpenSetsCloseOnExec) {
  TempDir dir;
  auto fd = Fd::Open(PosixIo::Default(), dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value()) << fd.error().message();
  int flags = ::fcntl(fd->get(), F_GETFD);
  ASSERT_NE(flags, -1);
  EXPECT_TRUE(flags & FD_CLOEXEC);
}

TEST(PosixIoTest, OpenOfMissingFileFailsWithEnoent) {
  TempDir dir;
  auto fd = PosixIo::Default().Open(dir / "missing", O_RDONLY, 0);
  ASSERT_FALSE(fd.has_value());
  EXPECT_EQ(fd.error().value(), ENOENT);
  EXPECT_EQ(fd.error(), std::errc::no_such_file_or_directory);
}

TEST(PosixIoTest, OpenWithExclusiveCreateOfExistingFileFailsWithEexist) {
  TempDir dir;
  auto first = Fd::Open(PosixIo::Default(), dir / "f", O_RDWR | O_CREAT | O_EXCL, 0644);
  ASSERT_TRUE(first.has_value());
  auto second = PosixIo::Default().Open(dir / "f", O_RDWR | O_CREAT | O_EXCL, 0644);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().value(), EEXIST);
}

TEST(PosixIoTest, PreadAtEndOfFileReturnsZero) {
  TempDir dir;
  Io& io = PosixIo::Default();
  auto fd = Fd::Open(io, dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value());
  auto data = ToBytes("abc");
  ASSERT_TRUE(WriteFull(io, fd->get(), data, 0).has_value());
  std::vector<std::byte> buf(8);
  auto at_end = io.Pread(fd->get(), buf, 3);
  ASSERT_TRUE(at_end.has_value());
  EXPECT_EQ(*at_end, 0u);
  auto past_end = io.Pread(fd->get(), buf, 100);
  ASSERT_TRUE(past_end.has_value());
  EXPECT_EQ(*past_end, 0u);
}

TEST(PosixIoTest, PreadOnWriteOnlyDescriptorFailsWithEbadf) {
  TempDir dir;
  Io& io = PosixIo::Default();
  auto fd = Fd::Open(io, dir / "f", O_WRONLY | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value());
  std::vector<std::byte> buf(4);
  auto n = io.Pread(fd->get(), buf, 0);
  ASSERT_FALSE(n.has_value());
  EXPECT_EQ(n.error().value(), EBADF);
}

TEST(PosixIoTest, ReadFullReturnsShortCountAtEndOfFile) {
  TempDir dir;
  Io& io = PosixIo::Default();
  auto fd = Fd::Open(io, dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value());
  ASSERT_TRUE(WriteFull(io, fd->get(), ToBytes("hello world"), 0).has_value());
  std::vector<std::byte> buf(100);
  auto n = ReadFull(io, fd->get(), buf, 6);
  ASSERT_TRUE(n.has_value());
  ASSERT_EQ(*n, 5u);
  EXPECT_EQ(Text(std::span(buf).first(*n)), "world");
}

TEST(PosixIoTest, ReadFullLoopsOverShortReads) {
  TempDir dir;
  ShortIo io(3);
  auto fd = Fd::Open(io, dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value());
  ASSERT_TRUE(WriteFull(io, fd->get(), ToBytes("0123456789"), 0).has_value());
  std::vector<std::byte> buf(8);
  io.reads = 0;
  auto n = ReadFull(io, fd->get(), buf, 1);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 8u);
  EXPECT_EQ(Text(buf), "12345678");
  EXPECT_GE(io.reads, 3);
}

TEST(PosixIoTest, ReadFullOfEmptyBufferReadsNothing) {
  TempDir dir;
  ShortIo io(3);
  auto fd = Fd::Open(io, dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value());
  auto n = ReadFull(io, fd->get(), {}, 0);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 0u);
}

TEST(PosixIoTest, WriteFullLoopsOverShortWrites) {
  TempDir dir;
  ShortIo io(2);
  auto fd = Fd::Open(io, dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value());
  ASSERT_TRUE(WriteFull(io, fd->get(), ToBytes("abcdefg"), 4).has_value());
  EXPECT_EQ(io.writes, 4);
  std::vector<std::byte> buf(20);
  auto n = ReadFull(PosixIo::Default(), fd->get(), buf, 0);
  ASSERT_TRUE(n.has_value());
  ASSERT_EQ(*n, 11u);
  EXPECT_EQ(Text(std::span(buf).first(4)), std::string(4, '\0'));
  EXPECT_EQ(Text(std::span(buf).subspan(4, 7)), "abcdefg");
}

TEST(PosixIoTest, WriteFullTreatsZeroCountWriteAsNoSpace) {
  TempDir dir;
  ShortIo io(100);
  io.zero_writes = 1;
  auto fd = Fd::Open(io, dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value());
  auto written = WriteFull(io, fd->get(), ToBytes("abc"), 0);
  ASSERT_FALSE(written.has_value());
  EXPECT_EQ(written.error().value(), ENOSPC);
}

TEST(PosixIoTest, WriteFullOnReadOnlyDescriptorFailsWithEbadf) {
  TempDir dir;
  Io& io = PosixIo::Default();
  { ASSERT_TRUE(Fd::Open(io, dir / "f", O_RDWR | O_CREAT, 0644).has_value()); }
  auto fd = Fd::Open(io, dir / "f", O_RDONLY);
  ASSERT_TRUE(fd.has_value());
  auto written = WriteFull(io, fd->get(), ToBytes("abc"), 0);
  ASSERT_FALSE(written.has_value());
  EXPECT_EQ(written.error().value(), EBADF);
}

TEST(PosixIoTest, FtruncateAndFstatAgreeOnSize) {
  TempDir dir;
  Io& io = PosixIo::Default();
  auto fd = Fd::Open(io, dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value());
  ASSERT_TRUE(WriteFull(io, fd->get(), ToBytes("abcdefgh"), 0).has_value());
  ASSERT_TRUE(io.Ftruncate(fd->get(), 3).has_value());
  auto st = io.Fstat(fd->get());
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->st_size, 3);
  auto by_path = io.Stat(dir / "f");
  ASSERT_TRUE(by_path.has_value());
  EXPECT_EQ(by_path->st_ino, st->st_ino);
  EXPECT_EQ(by_path->st_size, 3);
}

TEST(PosixIoTest, StatOfMissingPathFailsWithEnoent) {
  TempDir dir;
  auto st = PosixIo::Default().Stat(dir / "missing");
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().value(), ENOENT);
}

TEST(PosixIoTest, DirectoryCallsReportErrnoValues) {
  TempDir dir;
  Io& io = PosixIo::Default();
  ASSERT_TRUE(io.Mkdir(dir / "d", 0755).has_value());
  auto again = io.Mkdir(dir / "d", 0755);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().value(), EEXIST);

  { ASSERT_TRUE(Fd::Open(io, dir / "d/f", O_RDWR | O_CREAT, 0644).has_value()); }
  auto not_empty = io.Rmdir(dir / "d");
  ASSERT_FALSE(not_empty.has_value());
  EXPECT_TRUE(not_empty.error().value() == ENOTEMPTY || not_empty.error().value() == EEXIST);

  auto missing_unlink = io.Unlink(dir / "d/nothing");
  ASSERT_FALSE(missing_unlink.has_value());
  EXPECT_EQ(missing_unlink.error().value(), ENOENT);

  auto missing_rename = io.Rename(dir / "nothing", dir / "other");
  ASSERT_FALSE(missing_rename.has_value());
  EXPECT_EQ(missing_rename.error().value(), ENOENT);

  auto missing_list = io.ListDir(dir / "nothing");
  ASSERT_FALSE(missing_list.has_value());
  EXPECT_EQ(missing_list.error().value(), ENOENT);
}

TEST(PosixIoTest, ListDirOmitsDotEntries) {
  TempDir dir;
  Io& io = PosixIo::Default();
  auto empty = io.ListDir(dir.path());
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
  ASSERT_TRUE(io.Mkdir(dir / "sub", 0755).has_value());
  { ASSERT_TRUE(Fd::Open(io, dir / "a", O_RDWR | O_CREAT, 0644).has_value()); }
  { ASSERT_TRUE(Fd::Open(io, dir / ".hidden", O_RDWR | O_CREAT, 0644).has_value()); }
  auto names = io.ListDir(dir.path());
  ASSERT_TRUE(names.has_value());
  EXPECT_THAT(*names, UnorderedElementsAre("a", ".hidden", "sub"));
}

TEST(PosixIoTest, RenameReplacesTargetAndUnlinkRemoves) {
  TempDir dir;
  Io& io = PosixIo::Default();
  {
    auto a = Fd::Open(io, dir / "a", O_RDWR | O_CREAT, 0644);
    ASSERT_TRUE(a.has_value());
    ASSERT_TRUE(WriteFull(io, a->get(), ToBytes("new"), 0).has_value());
    auto b = Fd::Open(io, dir / "b", O_RDWR | O_CREAT, 0644);
    ASSERT_TRUE(b.has_value());
    ASSERT_TRUE(WriteFull(io, b->get(), ToBytes("old!"), 0).has_value());
  }
  ASSERT_TRUE(io.Rename(dir / "a", dir / "b").has_value());
  auto st = io.Stat(dir / "b");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->st_size, 3);
  EXPECT_FALSE(io.Stat(dir / "a").has_value());
  ASSERT_TRUE(io.Unlink(dir / "b").has_value());
  auto names = io.ListDir(dir.path());
  ASSERT_TRUE(names.has_value());
  EXPECT_TRUE(names->empty());
}

TEST(PosixIoTest, SyncAndDataSyncSucceedOnWritableFile) {
  TempDir dir;
  Io& io = PosixIo::Default();
  auto fd = Fd::Open(io, dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value());
  ASSERT_TRUE(WriteFull(io, fd->get(), ToBytes("x"), 0).has_value());
  EXPECT_TRUE(io.Fdatasync(fd->get()).has_value());
  EXPECT_TRUE(io.Fsync(fd->get()).has_value());
}

TEST(PosixIoTest, CallsOnClosedDescriptorFailWithEbadf) {
  TempDir dir;
  Io& io = PosixIo::Default();
  auto fd = io.Open(dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd.has_value());
  io.Close(*fd);
  auto synced = io.Fsync(*fd);
  ASSERT_FALSE(synced.has_value());
  EXPECT_EQ(synced.error().value(), EBADF);
  auto st = io.Fstat(*fd);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().value(), EBADF);
}

TEST(FdTest, DefaultIsEmpty) {
  Fd fd;
  EXPECT_FALSE(fd.valid());
  EXPECT_EQ(fd.get(), -1);
  fd.Reset();
  EXPECT_FALSE(fd.valid());
}

TEST(FdTest, DestructorClosesDescriptor) {
  TempDir dir;
  int raw = -1;
  {
    auto fd = Fd::Open(PosixIo::Default(), dir / "f", O_RDWR | O_CREAT, 0644);
    ASSERT_TRUE(fd.has_value());
    raw = fd->get();
    ASSERT_TRUE(FdIsOpen(raw));
  }
  EXPECT_FALSE(FdIsOpen(raw));
}

TEST(FdTest, MoveConstructionTransfersOwnership) {
  TempDir dir;
  auto opened = Fd::Open(PosixIo::Default(), dir / "f", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(opened.has_value());
  const int raw = opened->get();
  {
    Fd moved(std::move(*opened));
    EXPECT_FALSE(opened->valid());
    EXPECT_EQ(moved.get(), raw);
    opened->Reset();  // must not close what `moved` owns
    EXPECT_TRUE(FdIsOpen(raw));
  }
  EXPECT_FALSE(FdIsOpen(raw));
}

TEST(FdTest, MoveAssignmentClosesPreviousDescriptor) {
  TempDir dir;
  auto a = Fd::Open(PosixIo::Default(), dir / "a", O_RDWR | O_CREAT, 0644);
  auto b = Fd::Open(PosixIo::Default(), dir / "b", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  const int raw_a = a->get();
  const int raw_b = b->get();
  *a = std::move(*b);
  EXPECT_FALSE(FdIsOpen(raw_a));
  EXPECT_TRUE(FdIsOpen(raw_b));
  EXPECT_EQ(a->get(), raw_b);
  EXPECT_FALSE(b->valid());
  a->Reset();
  EXPECT_FALSE(FdIsOpen(raw_b));
  EXPECT_FALSE(a->valid());
}

TEST(FdTest, SelfMoveAssignmentKeepsDescriptor) {
  TempDir dir;
  auto a = Fd::Open(PosixIo::Default(), dir / "a", O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(a.has_value());
  const int raw = a->get();
  Fd& same = *a;
  *a = std::move(same);
  EXPECT_EQ(a->get(), raw);
  EXPECT_TRUE(FdIsOpen(raw));
}

TEST(SyncDirTest, SucceedsOnDirectory) {
  TempDir dir;
  EXPECT_TRUE(SyncDir(PosixIo::Default(), dir.path()).has_value());
}

TEST(SyncDirTest, MissingDirectoryFailsWithEnoent) {
  TempDir dir;
  auto synced = SyncDir(PosixIo::Default(), dir / "missing");
  ASSERT_FALSE(synced.has_value());
  EXPECT_EQ(synced.error().value(), ENOENT);
}

TEST(SyncDirTest, RegularFileFailsWithEnotdir) {
  TempDir dir;
  { ASSERT_TRUE(Fd::Open(PosixIo::Default(), dir / "f", O_RDWR | O_CREAT, 0644).has_value()); }
  auto synced = SyncDir(PosixIo::Default(), dir / "f");
  ASSERT_FALSE(synced.has_value());
  EXPECT_EQ(synced.error().value(), ENOTDIR);
}

}  // namespace
}  // namespace hpfile
