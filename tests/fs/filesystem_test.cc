// SPDX-License-Identifier: Apache-2.0
#include "fs/filesystem.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <tuple>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/format.h"
#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

using testing::Bytes;
using testing::ListBacking;
using testing::Materialize;
using testing::TempDir;

constexpr uint64_t kSegment = 4096;

class FilesystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.segment_size = kSegment;
    Remount();
  }

  // Opens the backing directory as the daemon does, with the deleter
  // running unless told otherwise.
  void Remount(bool start_deleter = true) {
    fs_.reset();
    auto fs = Filesystem::Open(dir_.path(), config_);
    ASSERT_TRUE(fs) << fs.error().message();
    fs_ = std::move(*fs);
    if (start_deleter) fs_->StartDeleter();
  }

  // The trash entries once the deleter has done what it was given.
  std::vector<std::string> SettledTrash() {
    fs_->WaitForDeletions();
    return ListBacking(Trash());
  }

  std::string Backing(const std::string& rel = "") const { return dir_.path() + "/" + rel; }
  std::string Trash() const { return Backing(std::string(hpfile::format::kTrashName)); }

  // Creates `name` holding `content` and closes it; returns its inode id.
  InodeId MakeFile(const std::string& name, const std::string& content = "", InodeId parent = kRootInode) {
    auto created = fs_->Create(parent, name, 0640, O_WRONLY | O_CREAT, caller_);
    EXPECT_TRUE(created) << created.error().message();
    if (!created) return 0;
    if (!content.empty()) {
      auto written = fs_->Write(*created->second, 0, Bytes(content), false);
      EXPECT_TRUE(written) << written.error().message();
    }
    fs_->Release(std::move(created->second));
    return created->first.id;
  }

  std::unique_ptr<FileHandle> OpenOk(InodeId id, int flags) {
    auto handle = fs_->OpenFile(id, flags);
    EXPECT_TRUE(handle) << handle.error().message();
    return handle ? std::move(*handle) : nullptr;
  }

  std::string ReadAll(FileHandle& handle, uint64_t offset = 0, size_t size = 1 << 20) {
    auto plan = fs_->Read(handle, offset, size);
    EXPECT_TRUE(plan) << plan.error().message();
    return plan ? Materialize(*plan) : std::string();
  }

  struct stat Attr(InodeId id) {
    auto st = fs_->GetAttr(id);
    EXPECT_TRUE(st) << st.error().message();
    struct stat empty {};
    return st ? *st : empty;
  }

  static int Err(const std::error_code& ec) { return ec.value(); }

  TempDir dir_;
  Config config_;
  Caller caller_{::geteuid(), ::getegid()};
  std::unique_ptr<Filesystem> fs_;
};

// --- lookups and inode numbers ---

TEST_F(FilesystemTest, LookupOfMissingNameIsEnoent) {
  auto entry = fs_->Lookup(kRootInode, "nothing");
  ASSERT_FALSE(entry);
  EXPECT_EQ(Err(entry.error()), ENOENT);
}

TEST_F(FilesystemTest, EachLookupCountsAndForgetDropsTheInodeAtZero) {
  const InodeId id = MakeFile("a", "x");
  EXPECT_EQ(fs_->inodes().Lookups(id), 1u);  // from Create
  auto again = fs_->Lookup(kRootInode, "a");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->id, id);
  EXPECT_EQ(fs_->inodes().Lookups(id), 2u);
  fs_->Forget(id, 1);
  EXPECT_NE(fs_->inodes().Get(id), nullptr);
  fs_->Forget(id, 1);
  EXPECT_EQ(fs_->inodes().Get(id), nullptr);
  // Looked up afresh, the file gets a new id but keeps its st_ino.
  auto fresh = fs_->Lookup(kRootInode, "a");
  ASSERT_TRUE(fresh);
  EXPECT_NE(fresh->id, id);
  EXPECT_EQ(fresh->attr.st_size, 1);
}

TEST_F(FilesystemTest, ForgetOfOpenFileKeepsItUsable) {
  const InodeId id = MakeFile("a", "data");
  auto handle = OpenOk(id, O_RDONLY);
  fs_->Forget(id, 1);
  EXPECT_EQ(ReadAll(*handle), "data");
  fs_->Release(std::move(handle));
}

// The retention pass holds a file's HPFile while it enforces limits, and the
// kernel may forget the inode meanwhile: the next lookup must share that
// HPFile (an HPFile owns its directory; opening a second one fails).
TEST_F(FilesystemTest, LookupAfterForgetSharesTheHPFileAnotherHolderKeeps) {
  const InodeId id = MakeFile("a", "data");
  const std::shared_ptr<hpfile::HPFile> held = fs_->inodes().Get(id)->File();
  ASSERT_NE(held, nullptr);
  fs_->Forget(id, 1);
  ASSERT_EQ(fs_->inodes().Get(id), nullptr);

  auto again = fs_->Lookup(kRootInode, "a");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(fs_->inodes().Get(again->id)->File(), held);
  auto handle = OpenOk(again->id, O_WRONLY | O_APPEND);
  ASSERT_NE(handle, nullptr);
  ASSERT_TRUE(fs_->Write(*handle, 4, Bytes("more"), true));
  fs_->Release(std::move(handle));
  EXPECT_EQ(held->Size(), 8u);
}

// Once the last holder lets go, a lookup opens the directory afresh.
TEST_F(FilesystemTest, LookupAfterTheLastHolderClosedOpensTheFileAgain) {
  const InodeId id = MakeFile("a", "data");
  std::weak_ptr<hpfile::HPFile> was = fs_->inodes().Get(id)->File();
  fs_->Forget(id, 1);
  EXPECT_TRUE(was.expired());
  auto again = fs_->Lookup(kRootInode, "a");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->attr.st_size, 4);
}

TEST_F(FilesystemTest, StInoIsStableAcrossRemount) {
  const InodeId file = MakeFile("a", "x");
  auto dir = fs_->Mkdir(kRootInode, "d", 0755, caller_);
  ASSERT_TRUE(dir);
  const ino_t file_ino = Attr(file).st_ino;
  const ino_t dir_ino = dir->attr.st_ino;
  Remount();
  auto file_again = fs_->Lookup(kRootInode, "a");
  auto dir_again = fs_->Lookup(kRootInode, "d");
  ASSERT_TRUE(file_again && dir_again);
  EXPECT_EQ(file_again->attr.st_ino, file_ino);
  EXPECT_EQ(dir_again->attr.st_ino, dir_ino);
}

TEST_F(FilesystemTest, LookupInAFileIsEnotdir) {
  const InodeId id = MakeFile("a");
  auto entry = fs_->Lookup(id, "x");
  ASSERT_FALSE(entry);
  EXPECT_EQ(Err(entry.error()), ENOTDIR);
}

TEST_F(FilesystemTest, UnknownInodeIsEstale) {
  auto st = fs_->GetAttr(987654);
  ASSERT_FALSE(st);
  EXPECT_EQ(Err(st.error()), ESTALE);
}

// --- reserved names ---

TEST_F(FilesystemTest, ReservedNamesAreHiddenFromLookupAndListing) {
  for (const char* name : {".hpfs.lock", ".hpfs-trash"}) {
    auto entry = fs_->Lookup(kRootInode, name);
    ASSERT_FALSE(entry) << name;
    EXPECT_EQ(Err(entry.error()), ENOENT) << name;
  }
  MakeFile("visible");
  auto dir = fs_->OpenDir(kRootInode);
  ASSERT_TRUE(dir);
  std::vector<std::string> names;
  for (const auto& e : (*dir)->entries) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", "visible"}));
}

TEST_F(FilesystemTest, ReservedAndFormatNamesCannotBeCreated) {
  for (const char* name : {".hpfs.lock", ".hpfs-trash", "hpfile.meta", "hpfile.meta.tmp"}) {
    auto created = fs_->Create(kRootInode, name, 0644, O_WRONLY | O_CREAT, caller_);
    ASSERT_FALSE(created) << name;
    EXPECT_EQ(Err(created.error()), EPERM) << name;
    auto dir = fs_->Mkdir(kRootInode, name, 0755, caller_);
    ASSERT_FALSE(dir) << name;
    EXPECT_EQ(Err(dir.error()), EPERM) << name;
  }
  // Below the top only the format's own names are reserved.
  auto sub = fs_->Mkdir(kRootInode, "sub", 0755, caller_);
  ASSERT_TRUE(sub);
  EXPECT_NE(MakeFile(".hpfs.lock", "", sub->id), 0u);
  auto meta = fs_->Create(sub->id, "hpfile.meta", 0644, O_WRONLY | O_CREAT, caller_);
  ASSERT_FALSE(meta);
  EXPECT_EQ(Err(meta.error()), EPERM);
}

TEST_F(FilesystemTest, RenameOntoReservedNameIsRefused) {
  MakeFile("a");
  auto r = fs_->Rename(kRootInode, "a", kRootInode, ".hpfs-trash", 0);
  ASSERT_FALSE(r);
  EXPECT_EQ(Err(r.error()), EPERM);
}

// --- create, write, read ---

TEST_F(FilesystemTest, CreateAppearsAtomicallyWithItsMeta) {
  MakeFile("a");
  EXPECT_TRUE(std::filesystem::exists(Backing("a/hpfile.meta")));
  EXPECT_TRUE(ListBacking(Trash()).empty());
}

TEST_F(FilesystemTest, ACreateIsDurableWithTheFilesFsyncOrItsDirectorysNotBefore) {
  auto created = fs_->Create(kRootInode, "a", 0644, O_WRONLY | O_CREAT, caller_);
  ASSERT_TRUE(created) << created.error().message();
  MakeFile("b", "bee");
  EXPECT_EQ(fs_->UnsyncedCreates(), 2u);
  // One fsync makes every create so far durable (one syncfs for all).
  ASSERT_TRUE(fs_->Fsync(*created->second));
  EXPECT_EQ(fs_->UnsyncedCreates(), 0u);
  fs_->Release(std::move(created->second));
  auto sub = fs_->Mkdir(kRootInode, "sub", 0755, caller_);
  ASSERT_TRUE(sub);
  MakeFile("c", "", sub->id);
  EXPECT_EQ(fs_->UnsyncedCreates(), 1u);
  ASSERT_TRUE(fs_->FsyncDir(kRootInode));  // the create may have been renamed here
  EXPECT_EQ(fs_->UnsyncedCreates(), 0u);
  ASSERT_TRUE(fs_->FsyncDir(sub->id));
}

TEST_F(FilesystemTest, CreateOfExistingNameWithExclIsEexist) {
  MakeFile("a");
  auto again = fs_->Create(kRootInode, "a", 0644, O_WRONLY | O_CREAT | O_EXCL, caller_);
  ASSERT_FALSE(again);
  EXPECT_EQ(Err(again.error()), EEXIST);
  EXPECT_TRUE(ListBacking(Trash()).empty());
}

TEST_F(FilesystemTest, NewFileBelongsToCallerWithRequestedMode) {
  auto created = fs_->Create(kRootInode, "a", 0604, O_WRONLY | O_CREAT, Caller{1234, 5678});
  ASSERT_TRUE(created);
  EXPECT_EQ(created->first.attr.st_mode, S_IFREG | 0604);
  EXPECT_EQ(created->first.attr.st_uid, 1234u);
  EXPECT_EQ(created->first.attr.st_gid, 5678u);
  fs_->Release(std::move(created->second));
}

TEST_F(FilesystemTest, WriteAtEndOfFileAppends) {
  auto created = fs_->Create(kRootInode, "a", 0644, O_WRONLY | O_CREAT, caller_);
  ASSERT_TRUE(created);
  auto& handle = *created->second;
  ASSERT_TRUE(fs_->Write(handle, 0, Bytes("hello "), false));
  auto written = fs_->Write(handle, 6, Bytes("world"), false);
  ASSERT_TRUE(written);
  EXPECT_EQ(*written, 5u);
  EXPECT_EQ(ReadAll(handle), "hello world");
  EXPECT_EQ(Attr(created->first.id).st_size, 11);
  fs_->Release(std::move(created->second));
}

TEST_F(FilesystemTest, WriteBelowTheEndIsEpermAndWritesNothing) {
  const InodeId id = MakeFile("a", "0123456789");
  auto handle = OpenOk(id, O_WRONLY);
  for (uint64_t offset : {0ull, 5ull, 9ull}) {
    auto written = fs_->Write(*handle, offset, Bytes("X"), false);
    ASSERT_FALSE(written) << offset;
    EXPECT_EQ(Err(written.error()), EPERM) << offset;
  }
  EXPECT_EQ(ReadAll(*handle), "0123456789");
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, WritePastTheEndFillsTheGapWithZeros) {
  const InodeId id = MakeFile("a", "0123456789");
  auto handle = OpenOk(id, O_WRONLY);
  auto written = fs_->Write(*handle, 14, Bytes("XY"), false);
  ASSERT_TRUE(written);
  EXPECT_EQ(*written, 2u);
  EXPECT_EQ(ReadAll(*handle), std::string("0123456789") + std::string(4, '\0') + "XY");
  EXPECT_EQ(Attr(id).st_size, 16);
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, AppendHandleWritesAtTrueEndWhateverTheOffset) {
  const InodeId id = MakeFile("a", "abc");
  auto appender = OpenOk(id, O_WRONLY | O_APPEND);
  auto other = OpenOk(id, O_WRONLY);
  ASSERT_TRUE(fs_->Write(*other, 3, Bytes("def"), false));
  // The appender's idea of the end is stale (3); it still lands at 6.
  ASSERT_TRUE(fs_->Write(*appender, 3, Bytes("ghi"), true));
  ASSERT_TRUE(fs_->Write(*appender, 0, Bytes("jkl"), true));
  EXPECT_EQ(ReadAll(*other), "abcdefghijkl");
  fs_->Release(std::move(appender));
  fs_->Release(std::move(other));
}

TEST_F(FilesystemTest, ConcurrentAppendsAllLandWhole) {
  const InodeId id = MakeFile("log");
  constexpr int kThreads = 4;
  constexpr int kLines = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto handle = OpenOk(id, O_WRONLY | O_APPEND);
      for (int i = 0; i < kLines; ++i) {
        const std::string line = "writer" + std::to_string(t) + " line " + std::to_string(i) + "\n";
        ASSERT_TRUE(fs_->Write(*handle, 0, Bytes(line), true));
      }
      fs_->Release(std::move(handle));
    });
  }
  for (auto& t : threads) t.join();
  auto reader = OpenOk(id, O_RDONLY);
  const std::string all = ReadAll(*reader, 0, 1 << 20);
  fs_->Release(std::move(reader));
  std::map<int, int> next_line;
  size_t lines = 0;
  size_t pos = 0;
  while (pos < all.size()) {
    const size_t nl = all.find('\n', pos);
    ASSERT_NE(nl, std::string::npos);
    const std::string line = all.substr(pos, nl - pos);
    int writer = -1, number = -1;
    ASSERT_EQ(std::sscanf(line.c_str(), "writer%d line %d", &writer, &number), 2) << line;
    EXPECT_EQ(number, next_line[writer]++) << "lines of one writer keep their order";
    ++lines;
    pos = nl + 1;
  }
  EXPECT_EQ(lines, static_cast<size_t>(kThreads * kLines));
}

TEST_F(FilesystemTest, ReadPastEndOfFileIsEmptyAndShortAtEnd) {
  const InodeId id = MakeFile("a", "0123456789");
  auto handle = OpenOk(id, O_RDONLY);
  EXPECT_EQ(ReadAll(*handle, 10, 100), "");
  EXPECT_EQ(ReadAll(*handle, 1000, 100), "");
  EXPECT_EQ(ReadAll(*handle, 7, 100), "789");
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, ReadAcrossSegmentsUsesSeveralExtents) {
  std::string content;
  for (int i = 0; i < 3 * static_cast<int>(kSegment) + 100; ++i) content.push_back(static_cast<char>('a' + i % 26));
  const InodeId id = MakeFile("a", content);
  auto handle = OpenOk(id, O_RDONLY);
  auto plan = fs_->Read(*handle, kSegment - 10, kSegment + 20);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->extents.size(), 3u);
  EXPECT_EQ(Materialize(*plan), content.substr(kSegment - 10, kSegment + 20));
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, BytesBelowHeadReadAsZeros) {
  const std::string content(3 * kSegment, 'd');
  const InodeId id = MakeFile("a", content);
  auto handle = OpenOk(id, O_RDWR);
  ASSERT_TRUE(fs_->Fallocate(*handle, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kSegment + 100));
  const std::string got = ReadAll(*handle, kSegment + 90, 20);
  EXPECT_EQ(got, std::string(10, '\0') + std::string(10, 'd'));
  auto plan = fs_->Read(*handle, 0, 10);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->zeros, 10u);
  EXPECT_TRUE(plan->extents.empty());
  fs_->Release(std::move(handle));
}

// Reads from the head while head punches drop one segment after another,
// with a descriptor cache too small to hold the segments a read needs: each
// read gets one consistent plan (zeros below some head, the bytes above it),
// never an error such as EAGAIN.
TEST_F(FilesystemTest, ReadRacingHeadPrunesAlwaysGetsAPlan) {
  config_.max_open_segments = 1;
  Remount();
  constexpr int kSegments = 400;
  std::string content;
  for (int i = 0; i < kSegments * static_cast<int>(kSegment); ++i) content.push_back(static_cast<char>('a' + i % 26));
  const InodeId id = MakeFile("a", content);
  auto pruner_handle = OpenOk(id, O_RDWR);
  auto reader = OpenOk(id, O_RDONLY);
  std::atomic<bool> done{false};
  std::thread pruner([&] {
    for (uint64_t head = kSegment; head < (kSegments - 4) * kSegment; head += kSegment) {
      EXPECT_TRUE(fs_->Fallocate(*pruner_handle, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, head));
    }
    done = true;
  });
  int reads = 0;
  while (!done.load() || reads == 0) {
    auto head = fs_->Lseek(*reader, 0, SEEK_DATA);
    ASSERT_TRUE(head) << head.error().message();
    // From a little below the head, which may move on before the read.
    const uint64_t offset = *head >= 100 ? *head - 100 : 0;
    auto plan = fs_->Read(*reader, offset, 4 * kSegment);
    ASSERT_TRUE(plan) << "read at " << offset << ": " << plan.error().message();
    const std::string got = Materialize(*plan);
    ASSERT_EQ(got.size(), 4 * kSegment);
    ASSERT_EQ(got.substr(0, plan->zeros), std::string(plan->zeros, '\0'));
    ASSERT_EQ(got.substr(plan->zeros), content.substr(offset + plan->zeros, got.size() - plan->zeros))
        << "read at " << offset;
    ++reads;
  }
  pruner.join();
  fs_->Release(std::move(pruner_handle));
  fs_->Release(std::move(reader));
}

TEST_F(FilesystemTest, OpenWithTruncEmptiesAFileButReadOnlyOpenDoesNot) {
  const InodeId id = MakeFile("a", "content");
  auto reader = OpenOk(id, O_RDONLY | O_TRUNC);
  EXPECT_EQ(Attr(id).st_size, 7);
  auto writer = OpenOk(id, O_WRONLY | O_TRUNC);
  EXPECT_EQ(Attr(id).st_size, 0);
  ASSERT_TRUE(fs_->Write(*writer, 0, Bytes("new"), false));
  EXPECT_EQ(ReadAll(*reader), "new");
  fs_->Release(std::move(reader));
  fs_->Release(std::move(writer));
}

TEST_F(FilesystemTest, OpenOfDirectoryIsEisdir) {
  auto dir = fs_->Mkdir(kRootInode, "d", 0755, caller_);
  ASSERT_TRUE(dir);
  auto handle = fs_->OpenFile(dir->id, O_RDONLY);
  ASSERT_FALSE(handle);
  EXPECT_EQ(Err(handle.error()), EISDIR);
}

// --- truncate and fallocate ---

TEST_F(FilesystemTest, SetAttrSizeDropsTailOrAppendsZeros) {
  const InodeId id = MakeFile("a", "0123456789");
  AttrChange shrink;
  shrink.size = 4;
  auto st = fs_->SetAttr(id, shrink, nullptr);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->st_size, 4);
  AttrChange grow;
  grow.size = 8;
  ASSERT_TRUE(fs_->SetAttr(id, grow, nullptr));
  auto handle = OpenOk(id, O_RDONLY);
  EXPECT_EQ(ReadAll(*handle), std::string("0123") + std::string(4, '\0'));
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, SizeChangeOfDirectoryIsEisdir) {
  auto dir = fs_->Mkdir(kRootInode, "d", 0755, caller_);
  ASSERT_TRUE(dir);
  AttrChange change;
  change.size = 0;
  auto st = fs_->SetAttr(dir->id, change, nullptr);
  ASSERT_FALSE(st);
  EXPECT_EQ(Err(st.error()), EISDIR);
}

TEST_F(FilesystemTest, HeadPunchPrunesAndDeletesWholeSegments) {
  const InodeId id = MakeFile("a", std::string(4 * kSegment, 'x'));
  auto handle = OpenOk(id, O_RDWR);
  ASSERT_EQ(ListBacking(Backing("a")).size(), 5u);  // 4 segments + meta
  const blkcnt_t before = Attr(id).st_blocks;
  ASSERT_TRUE(fs_->Fallocate(*handle, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * kSegment));
  // The request only moved the head; the deleter frees the segments (stat
  // and st_blocks count what still waits).
  auto stat = fs_->IoctlStat(*handle);
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->head, 2 * kSegment);
  EXPECT_EQ(stat->size, 4 * kSegment);
  EXPECT_LE(stat->pruned_segments, 2u);
  EXPECT_EQ(stat->pruned_bytes, stat->pruned_segments * kSegment);
  fs_->WaitForDeletions();
  EXPECT_EQ(ListBacking(Backing("a")).size(), 3u);
  stat = fs_->IoctlStat(*handle);
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->pruned_segments, 0u);
  EXPECT_LT(Attr(id).st_blocks, before);
  // Punching from at or below the new head keeps pruning; past the size it stops at the size.
  ASSERT_TRUE(fs_->Fallocate(*handle, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kSegment, 100 * kSegment));
  stat = fs_->IoctlStat(*handle);
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->head, 4 * kSegment);
  EXPECT_EQ(stat->size, 4 * kSegment);
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, PunchAboveHeadAndOtherModesAreEopnotsuppAndChangeNothing) {
  const std::string content(2 * kSegment, 'x');
  const InodeId id = MakeFile("a", content);
  auto handle = OpenOk(id, O_RDWR);
  const std::vector<std::pair<int, uint64_t>> refused = {
      {FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 10},
      {FALLOC_FL_ZERO_RANGE, 0},
      {FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0},
      {FALLOC_FL_COLLAPSE_RANGE, 0},
      {FALLOC_FL_INSERT_RANGE, 0},
      {FALLOC_FL_PUNCH_HOLE, 0},
  };
  for (const auto& [mode, offset] : refused) {
    auto r = fs_->Fallocate(*handle, mode, offset, kSegment);
    ASSERT_FALSE(r) << mode;
    EXPECT_EQ(Err(r.error()), EOPNOTSUPP) << mode;
  }
  EXPECT_EQ(ReadAll(*handle), content);
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, FallocateModeZeroGrowsOnlyPastTheEnd) {
  const InodeId id = MakeFile("a", "abc");
  auto handle = OpenOk(id, O_RDWR);
  ASSERT_TRUE(fs_->Fallocate(*handle, 0, 0, 2));
  EXPECT_EQ(Attr(id).st_size, 3);
  ASSERT_TRUE(fs_->Fallocate(*handle, 0, 2, 8));
  EXPECT_EQ(Attr(id).st_size, 10);
  EXPECT_EQ(ReadAll(*handle), std::string("abc") + std::string(7, '\0'));
  ASSERT_TRUE(fs_->Fallocate(*handle, FALLOC_FL_KEEP_SIZE, 0, 1000));
  EXPECT_EQ(Attr(id).st_size, 10);
  fs_->Release(std::move(handle));
}

// A growing fallocate checks the end, then grows to its own end: a write
// landing in between must not be cut off by that grow.
TEST_F(FilesystemTest, GrowingFallocateRacingAppendsNeverCutsThem) {
  const InodeId id = MakeFile("a");
  auto appender = OpenOk(id, O_WRONLY | O_APPEND);
  auto grower = OpenOk(id, O_RDWR);
  constexpr int kWrites = 2000;
  std::atomic<bool> done{false};
  std::thread grow([&] {
    while (!done.load()) {
      auto stat = fs_->IoctlStat(*grower);
      ASSERT_TRUE(stat);
      EXPECT_TRUE(fs_->Fallocate(*grower, 0, 0, stat->size + 1));
    }
  });
  for (int i = 0; i < kWrites; ++i) ASSERT_TRUE(fs_->Write(*appender, 0, Bytes("xyz"), true));
  done = true;
  grow.join();
  const std::string all = ReadAll(*appender, 0, 1 << 24);
  EXPECT_EQ(std::count(all.begin(), all.end(), 'x'), kWrites);
  EXPECT_EQ(std::count(all.begin(), all.end(), 'z'), kWrites);
  fs_->Release(std::move(appender));
  fs_->Release(std::move(grower));
}

TEST_F(FilesystemTest, FallocateOnReadOnlyHandleIsEbadf) {
  const InodeId id = MakeFile("a", "abc");
  auto handle = OpenOk(id, O_RDONLY);
  auto r = fs_->Fallocate(*handle, 0, 0, 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(Err(r.error()), EBADF);
  fs_->Release(std::move(handle));
}

// --- lseek ---

TEST_F(FilesystemTest, SeekDataAndHoleSeeDataFromHeadToSize) {
  const InodeId id = MakeFile("a", std::string(3 * kSegment, 'x'));
  auto handle = OpenOk(id, O_RDWR);
  ASSERT_TRUE(fs_->Fallocate(*handle, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kSegment));
  EXPECT_EQ(fs_->Lseek(*handle, 0, SEEK_DATA).value(), kSegment);
  EXPECT_EQ(fs_->Lseek(*handle, kSegment + 5, SEEK_DATA).value(), kSegment + 5);
  EXPECT_EQ(fs_->Lseek(*handle, 0, SEEK_HOLE).value(), 0u);
  EXPECT_EQ(fs_->Lseek(*handle, kSegment, SEEK_HOLE).value(), 3 * kSegment);
  for (int whence : {SEEK_DATA, SEEK_HOLE}) {
    auto past = fs_->Lseek(*handle, 3 * kSegment, whence);
    ASSERT_FALSE(past);
    EXPECT_EQ(Err(past.error()), ENXIO);
  }
  fs_->Release(std::move(handle));
}

// The kernel keeps the inodes of files it has seen; an idle one must not keep
// segment descriptors, or a daemon that served many files runs out of them.
TEST_F(FilesystemTest, LastReleaseClosesTheSegmentDescriptorsOfAFileTheKernelStillKnows) {
  const InodeId id = MakeFile("a", std::string(3 * kSegment, 'x'));
  const size_t idle = hpfile::testing::CountOpenFds();
  auto handle = OpenOk(id, O_RDONLY);
  EXPECT_EQ(ReadAll(*handle, 0, 3 * kSegment).size(), 3 * kSegment);
  EXPECT_GT(hpfile::testing::CountOpenFds(), idle);
  fs_->Release(std::move(handle));
  EXPECT_EQ(hpfile::testing::CountOpenFds(), idle);
  auto again = OpenOk(id, O_RDWR | O_APPEND);
  ASSERT_TRUE(fs_->Write(*again, 3 * kSegment, Bytes("more"), true));
  EXPECT_EQ(ReadAll(*again, 3 * kSegment - 2), "xxmore");
  fs_->Release(std::move(again));
  EXPECT_EQ(hpfile::testing::CountOpenFds(), idle);
}

// --- unlink, rmdir, rename ---

TEST_F(FilesystemTest, UnlinkOfClosedFileFreesItsStorageOnceTheKernelForgetsIt) {
  const InodeId id = MakeFile("a", "data");
  ASSERT_TRUE(fs_->Unlink(kRootInode, "a"));
  EXPECT_FALSE(std::filesystem::exists(Backing("a")));
  EXPECT_EQ(SettledTrash().size(), 1u) << "the kernel may still open it";
  fs_->Forget(id, 1);
  EXPECT_TRUE(SettledTrash().empty());
  auto entry = fs_->Lookup(kRootInode, "a");
  ASSERT_FALSE(entry);
  EXPECT_EQ(Err(entry.error()), ENOENT);
}

TEST_F(FilesystemTest, UnlinkedOpenFileStaysReadableAndWritableUntilLastRelease) {
  const InodeId id = MakeFile("a", "data");
  auto first = OpenOk(id, O_RDWR);
  auto second = OpenOk(id, O_RDONLY);
  ASSERT_TRUE(fs_->Unlink(kRootInode, "a"));
  EXPECT_FALSE(fs_->Lookup(kRootInode, "a"));
  EXPECT_EQ(ListBacking(Trash()).size(), 1u);
  EXPECT_EQ(Attr(id).st_nlink, 0u);
  ASSERT_TRUE(fs_->Write(*first, 4, Bytes("more"), false));
  EXPECT_EQ(ReadAll(*second), "datamore");
  fs_->Release(std::move(first));
  fs_->Forget(id, 1);
  EXPECT_EQ(SettledTrash().size(), 1u);
  fs_->Release(std::move(second));
  EXPECT_TRUE(SettledTrash().empty());
}

// The request that lets a file go only moves it into the trash; a file of
// many segments must not hold up `rm` or the last close while it is deleted.
TEST_F(FilesystemTest, UnlinkLeavesTheDeletionToTheDeleter) {
  Remount(/*start_deleter=*/false);
  const InodeId id = MakeFile("big", std::string(64 * kSegment, 'x'));
  ASSERT_TRUE(fs_->Unlink(kRootInode, "big"));
  EXPECT_FALSE(fs_->Lookup(kRootInode, "big"));
  fs_->Forget(id, 1);
  const auto trash = ListBacking(Trash());
  ASSERT_EQ(trash.size(), 1u);
  EXPECT_EQ(ListBacking(Trash() + "/" + trash[0]).size(), 64u + 1) << "segments and meta still there";
  EXPECT_EQ(fs_->PendingDeletions(), 1u);
  fs_->StartDeleter();
  EXPECT_TRUE(SettledTrash().empty());
  EXPECT_EQ(fs_->PendingDeletions(), 0u);
}

TEST_F(FilesystemTest, LastReleaseOfAnUnlinkedFileLeavesTheDeletionToTheDeleter) {
  Remount(/*start_deleter=*/false);
  const InodeId id = MakeFile("big", std::string(8 * kSegment, 'x'));
  auto handle = OpenOk(id, O_RDONLY);
  ASSERT_TRUE(fs_->Unlink(kRootInode, "big"));
  fs_->Forget(id, 1);
  EXPECT_EQ(fs_->PendingDeletions(), 0u) << "still open";
  fs_->Release(std::move(handle));
  EXPECT_EQ(ListBacking(Trash()).size(), 1u);
  EXPECT_EQ(fs_->PendingDeletions(), 1u);
  fs_->StartDeleter();
  EXPECT_TRUE(SettledTrash().empty());
}

TEST_F(FilesystemTest, ShutdownFinishesQueuedDeletions) {
  for (int i = 0; i < 20; ++i) MakeFile("f" + std::to_string(i), std::string(4 * kSegment, 'x'));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(fs_->Unlink(kRootInode, "f" + std::to_string(i)));
  fs_.reset();
  EXPECT_TRUE(ListBacking(Trash()).empty());
}

TEST_F(FilesystemTest, DeletionsQueuedBeforeTheDeleterStartsWaitForTheNextMount) {
  Remount(/*start_deleter=*/false);
  MakeFile("a", "data");
  ASSERT_TRUE(fs_->Unlink(kRootInode, "a"));
  fs_.reset();  // a daemon that never got to mount
  EXPECT_EQ(ListBacking(Trash()).size(), 1u);
  Remount();
  EXPECT_TRUE(SettledTrash().empty());
}

TEST_F(FilesystemTest, NewFileWithNameOfUnlinkedOpenFileIsSeparate) {
  const InodeId old_id = MakeFile("a", "old");
  auto old_handle = OpenOk(old_id, O_RDONLY);
  ASSERT_TRUE(fs_->Unlink(kRootInode, "a"));
  const InodeId new_id = MakeFile("a", "new!");
  EXPECT_NE(new_id, old_id);
  EXPECT_EQ(ReadAll(*old_handle), "old");
  fs_->Release(std::move(old_handle));
  auto new_handle = OpenOk(new_id, O_RDONLY);
  EXPECT_EQ(ReadAll(*new_handle), "new!");
  fs_->Release(std::move(new_handle));
}

TEST_F(FilesystemTest, TrashLeftByLastMountIsDeletedInTheBackground) {
  std::filesystem::create_directories(Trash() + "/leftover");
  std::filesystem::create_directories(Trash() + "/other/x");
  // A write-back spool file a crash left with its name (between its
  // creation and its unlink).
  std::ofstream(Trash() + "/spool") << "held bytes";
  Remount(/*start_deleter=*/false);
  EXPECT_EQ(fs_->PendingDeletions(), 3u);
  EXPECT_EQ(ListBacking(Trash()).size(), 3u) << "Open itself deletes nothing";
  fs_->StartDeleter();
  EXPECT_TRUE(SettledTrash().empty());
}

TEST_F(FilesystemTest, UnlinkOfDirectoryIsEisdirAndRmdirOfFileIsEnotdir) {
  MakeFile("f");
  ASSERT_TRUE(fs_->Mkdir(kRootInode, "d", 0755, caller_));
  auto u = fs_->Unlink(kRootInode, "d");
  ASSERT_FALSE(u);
  EXPECT_EQ(Err(u.error()), EISDIR);
  auto r = fs_->Rmdir(kRootInode, "f");
  ASSERT_FALSE(r);
  EXPECT_EQ(Err(r.error()), ENOTDIR);
}

TEST_F(FilesystemTest, RmdirOfNonEmptyDirectoryIsEnotempty) {
  auto dir = fs_->Mkdir(kRootInode, "d", 0755, caller_);
  ASSERT_TRUE(dir);
  MakeFile("f", "", dir->id);
  auto r = fs_->Rmdir(kRootInode, "d");
  ASSERT_FALSE(r);
  EXPECT_EQ(Err(r.error()), ENOTEMPTY);
  ASSERT_TRUE(fs_->Unlink(dir->id, "f"));
  EXPECT_TRUE(fs_->Rmdir(kRootInode, "d"));
  EXPECT_FALSE(std::filesystem::exists(Backing("d")));
}

TEST_F(FilesystemTest, RenameMovesAFileAndItsOpenHandlesFollow) {
  const InodeId id = MakeFile("a", "data");
  auto handle = OpenOk(id, O_WRONLY | O_APPEND);
  auto dir = fs_->Mkdir(kRootInode, "d", 0755, caller_);
  ASSERT_TRUE(dir);
  ASSERT_TRUE(fs_->Rename(kRootInode, "a", dir->id, "b", 0));
  ASSERT_TRUE(fs_->Write(*handle, 0, Bytes("+more"), true));
  fs_->Release(std::move(handle));
  EXPECT_FALSE(fs_->Lookup(kRootInode, "a"));
  auto moved = fs_->Lookup(dir->id, "b");
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->id, id);
  auto reader = OpenOk(moved->id, O_RDONLY);
  EXPECT_EQ(ReadAll(*reader), "data+more");
  fs_->Release(std::move(reader));
}

TEST_F(FilesystemTest, RenameOverFileReplacesItAndOldTargetLivesWhileOpen) {
  MakeFile("new", "new content");
  const InodeId target = MakeFile("log", "old content");
  auto old_handle = OpenOk(target, O_RDONLY);
  ASSERT_TRUE(fs_->Rename(kRootInode, "new", kRootInode, "log", 0));
  EXPECT_FALSE(fs_->Lookup(kRootInode, "new"));
  auto now = fs_->Lookup(kRootInode, "log");
  ASSERT_TRUE(now);
  EXPECT_NE(now->id, target);
  EXPECT_EQ(now->attr.st_size, 11);
  EXPECT_EQ(ReadAll(*old_handle), "old content");
  fs_->Forget(target, 1);
  EXPECT_EQ(SettledTrash().size(), 1u);
  fs_->Release(std::move(old_handle));
  EXPECT_TRUE(SettledTrash().empty());
  EXPECT_FALSE(std::filesystem::exists(Backing("new")));
  EXPECT_TRUE(std::filesystem::exists(Backing("log/hpfile.meta")));
}

TEST_F(FilesystemTest, RenameOverClosedFileDeletesTheOldTargetOnceTheKernelForgetsIt) {
  MakeFile("new", "1");
  const InodeId old_target = MakeFile("log", "2");
  ASSERT_TRUE(fs_->Rename(kRootInode, "new", kRootInode, "log", 0));
  EXPECT_EQ(SettledTrash().size(), 1u);
  fs_->Forget(old_target, 1);
  EXPECT_TRUE(SettledTrash().empty());
  EXPECT_FALSE(std::filesystem::exists(Backing("new")));
}

// The kernel can resolve a name just before a rename replaces its file and
// open the inode it found afterwards: it gets the old file, as on any local
// filesystem, not an error.
TEST_F(FilesystemTest, ReplacedFileTheKernelStillKnowsOpensWithItsOldContent) {
  MakeFile("next", "new");
  const InodeId old_target = MakeFile("current", "old");
  ASSERT_TRUE(fs_->Rename(kRootInode, "next", kRootInode, "current", 0));
  auto handle = OpenOk(old_target, O_RDONLY);
  EXPECT_EQ(ReadAll(*handle), "old");
  fs_->Release(std::move(handle));
  fs_->Forget(old_target, 1);
  EXPECT_TRUE(SettledTrash().empty());
}

TEST_F(FilesystemTest, ShutdownDeletesUnlinkedFilesTheKernelNeverForgot) {
  MakeFile("a", "data");
  ASSERT_TRUE(fs_->Unlink(kRootInode, "a"));
  fs_.reset();
  EXPECT_TRUE(ListBacking(Trash()).empty());
}

TEST_F(FilesystemTest, RenameNoreplaceOntoExistingNameIsEexist) {
  MakeFile("a", "1");
  MakeFile("b", "2");
  auto r = fs_->Rename(kRootInode, "a", kRootInode, "b", RENAME_NOREPLACE);
  ASSERT_FALSE(r);
  EXPECT_EQ(Err(r.error()), EEXIST);
  EXPECT_TRUE(fs_->Rename(kRootInode, "a", kRootInode, "c", RENAME_NOREPLACE));
}

TEST_F(FilesystemTest, RenameExchangeSwapsTwoEntries) {
  const InodeId a = MakeFile("a", "1");
  auto dir = fs_->Mkdir(kRootInode, "d", 0755, caller_);
  ASSERT_TRUE(dir);
  ASSERT_TRUE(fs_->Rename(kRootInode, "a", kRootInode, "d", RENAME_EXCHANGE));
  auto now_a = fs_->Lookup(kRootInode, "a");
  auto now_d = fs_->Lookup(kRootInode, "d");
  ASSERT_TRUE(now_a && now_d);
  EXPECT_EQ(now_a->id, dir->id);
  EXPECT_EQ(now_d->id, a);
  auto missing = fs_->Rename(kRootInode, "a", kRootInode, "zzz", RENAME_EXCHANGE);
  ASSERT_FALSE(missing);
  EXPECT_EQ(Err(missing.error()), ENOENT);
}

TEST_F(FilesystemTest, RenameKindMismatchesFailLikeLocalFilesystem) {
  MakeFile("f");
  ASSERT_TRUE(fs_->Mkdir(kRootInode, "d", 0755, caller_));
  auto e = fs_->Mkdir(kRootInode, "full", 0755, caller_);
  ASSERT_TRUE(e);
  MakeFile("inner", "", e->id);
  auto file_over_dir = fs_->Rename(kRootInode, "f", kRootInode, "d", 0);
  ASSERT_FALSE(file_over_dir);
  EXPECT_EQ(Err(file_over_dir.error()), EISDIR);
  auto dir_over_file = fs_->Rename(kRootInode, "d", kRootInode, "f", 0);
  ASSERT_FALSE(dir_over_file);
  EXPECT_EQ(Err(dir_over_file.error()), ENOTDIR);
  auto over_full = fs_->Rename(kRootInode, "d", kRootInode, "full", 0);
  ASSERT_FALSE(over_full);
  EXPECT_EQ(Err(over_full.error()), ENOTEMPTY);
  auto bad_flags = fs_->Rename(kRootInode, "f", kRootInode, "g", RENAME_WHITEOUT);
  ASSERT_FALSE(bad_flags);
  EXPECT_EQ(Err(bad_flags.error()), EINVAL);
}

TEST_F(FilesystemTest, RenameOntoItselfIsANoOp) {
  const InodeId id = MakeFile("a", "x");
  ASSERT_TRUE(fs_->Rename(kRootInode, "a", kRootInode, "a", 0));
  auto entry = fs_->Lookup(kRootInode, "a");
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->id, id);
}

// --- symlinks, links, nodes ---

TEST_F(FilesystemTest, SymlinkReadsBackItsTarget) {
  auto link = fs_->Symlink("some/target", kRootInode, "l", caller_);
  ASSERT_TRUE(link);
  EXPECT_TRUE(S_ISLNK(link->attr.st_mode));
  EXPECT_EQ(fs_->ReadLink(link->id).value(), "some/target");
  ASSERT_TRUE(fs_->Unlink(kRootInode, "l"));
  EXPECT_FALSE(fs_->Lookup(kRootInode, "l"));
}

TEST_F(FilesystemTest, HardLinksAndDeviceNodesAreEperm) {
  const InodeId id = MakeFile("a");
  auto link = fs_->Link(id, kRootInode, "b");
  ASSERT_FALSE(link);
  EXPECT_EQ(Err(link.error()), EPERM);
  for (mode_t type : {S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK}) {
    auto node = fs_->Mknod(kRootInode, "p", type | 0644, 0, caller_);
    ASSERT_FALSE(node) << type;
    EXPECT_EQ(Err(node.error()), EPERM) << type;
  }
  EXPECT_FALSE(fs_->Lookup(kRootInode, "p"));
}

TEST_F(FilesystemTest, MknodOfARegularFileCreatesAnEmptyFile) {
  auto made = fs_->Mknod(kRootInode, "r", S_IFREG | 0604, 0, caller_);
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_TRUE(S_ISREG(made->attr.st_mode));
  EXPECT_EQ(made->attr.st_mode & 07777, 0604u);
  EXPECT_EQ(made->attr.st_size, 0);
  EXPECT_TRUE(std::filesystem::exists(Backing("r/hpfile.meta")));
  auto handle = OpenOk(made->id, O_WRONLY);
  ASSERT_TRUE(fs_->Write(*handle, 0, Bytes("x"), false));
  fs_->Release(std::move(handle));
  auto again = fs_->Mknod(kRootInode, "r", S_IFREG | 0644, 0, caller_);
  ASSERT_FALSE(again);
  EXPECT_EQ(Err(again.error()), EEXIST);
  EXPECT_EQ(Attr(made->id).st_size, 1);
}

// --- attributes ---

TEST_F(FilesystemTest, ChmodChownAndTimesOfAFilePersistAcrossRemount) {
  const InodeId id = MakeFile("a", "content");
  AttrChange change;
  change.mode = 0600;
  change.uid = 4321;
  change.gid = 8765;
  change.mtime = timespec{1000000000, 0};
  change.atime = timespec{1000000001, 0};
  ASSERT_TRUE(fs_->SetAttr(id, change, nullptr));
  Remount();
  auto entry = fs_->Lookup(kRootInode, "a");
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->attr.st_mode, S_IFREG | 0600);
  EXPECT_EQ(entry->attr.st_uid, 4321u);
  EXPECT_EQ(entry->attr.st_gid, 8765u);
  EXPECT_EQ(entry->attr.st_mtim.tv_sec, 1000000000);
  EXPECT_EQ(entry->attr.st_atim.tv_sec, 1000000001);
}

TEST_F(FilesystemTest, ChmodDoesNotChangeMtimeButAWriteDoes) {
  const InodeId id = MakeFile("a", "x");
  AttrChange old_time;
  old_time.mtime = timespec{1000000000, 0};
  ASSERT_TRUE(fs_->SetAttr(id, old_time, nullptr));
  AttrChange chmod;
  chmod.mode = 0600;
  ASSERT_TRUE(fs_->SetAttr(id, chmod, nullptr));
  EXPECT_EQ(Attr(id).st_mtim.tv_sec, 1000000000);
  auto handle = OpenOk(id, O_WRONLY | O_APPEND);
  ASSERT_TRUE(fs_->Write(*handle, 0, Bytes("y"), true));
  fs_->Release(std::move(handle));
  EXPECT_GT(Attr(id).st_mtim.tv_sec, 1000000000);
}

TEST_F(FilesystemTest, DirectoryAttributesLiveOnTheBackingDirectory) {
  auto dir = fs_->Mkdir(kRootInode, "d", 0750, Caller{1111, 2222});
  ASSERT_TRUE(dir);
  EXPECT_EQ(dir->attr.st_mode, S_IFDIR | 0750);
  struct stat st;
  ASSERT_EQ(::stat(Backing("d").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, S_IFDIR | 0750);
  if (::geteuid() == 0) {
    EXPECT_EQ(st.st_uid, 1111u);
    EXPECT_EQ(st.st_gid, 2222u);
  }
  AttrChange change;
  change.mode = 0700;
  auto after = fs_->SetAttr(dir->id, change, nullptr);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->st_mode, S_IFDIR | 0700);
}

TEST_F(FilesystemTest, StBlocksCountTheSegmentsOnDisk) {
  const InodeId id = MakeFile("a", std::string(3 * kSegment, 'x'));
  const struct stat st = Attr(id);
  EXPECT_EQ(st.st_size, static_cast<off_t>(3 * kSegment));
  EXPECT_GE(st.st_blocks, static_cast<blkcnt_t>(3 * kSegment / 512));
}

TEST_F(FilesystemTest, StatFsReportsTheBackingFilesystem) {
  auto st = fs_->StatFs();
  ASSERT_TRUE(st);
  struct statvfs expected;
  ASSERT_EQ(::statvfs(dir_.path().c_str(), &expected), 0);
  EXPECT_EQ(st->f_bsize, expected.f_bsize);
  EXPECT_EQ(st->f_blocks, expected.f_blocks);
}

// --- directories ---

TEST_F(FilesystemTest, ListingShowsFilesDirectoriesAndSymlinksWithTheirTypes) {
  MakeFile("file");
  ASSERT_TRUE(fs_->Mkdir(kRootInode, "dir", 0755, caller_));
  ASSERT_TRUE(fs_->Symlink("file", kRootInode, "link", caller_));
  // A stray plain file in the backing dir is not part of the format.
  { std::ofstream(Backing("stray")) << "x"; }
  auto dir = fs_->OpenDir(kRootInode);
  ASSERT_TRUE(dir);
  std::map<std::string, unsigned char> types;
  for (const auto& e : (*dir)->entries) types[e.name] = e.type;
  EXPECT_EQ(types, (std::map<std::string, unsigned char>{
                       {".", DT_DIR}, {"..", DT_DIR}, {"dir", DT_DIR}, {"file", DT_REG}, {"link", DT_LNK}}));
  auto stray = fs_->Lookup(kRootInode, "stray");
  ASSERT_FALSE(stray);
  EXPECT_EQ(Err(stray.error()), ENOENT);
}

TEST_F(FilesystemTest, RefreshDirSeesNewEntries) {
  auto dir = fs_->OpenDir(kRootInode);
  ASSERT_TRUE(dir);
  EXPECT_EQ((*dir)->entries.size(), 2u);
  MakeFile("new");
  ASSERT_TRUE(fs_->RefreshDir(**dir));
  EXPECT_EQ((*dir)->entries.size(), 3u);
}

// --- ioctl and xattrs ---

TEST_F(FilesystemTest, IoctlStatReportsTheFile) {
  const InodeId id = MakeFile("a", std::string(2 * kSegment + 1, 'x'));
  auto handle = OpenOk(id, O_RDONLY);
  auto st = fs_->IoctlStat(*handle);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->head, 0u);
  EXPECT_EQ(st->size, 2 * kSegment + 1);
  EXPECT_EQ(st->segments, 3u);
  EXPECT_EQ(st->segment_size, kSegment);
  EXPECT_EQ(st->flags & HPFS_STAT_DAMAGED, 0u);
  EXPECT_STREQ(st->damage, "");
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, IoctlSetChangesOnlyWhatTheMaskNames) {
  const InodeId id = MakeFile("a");
  auto handle = OpenOk(id, O_WRONLY);
  hpfs_set set{};
  set.mask = HPFS_SET_RETAIN_BYTES | HPFS_SET_SEGMENT_SIZE;
  set.retain_bytes = 1 << 20;
  set.segment_size = 8192;
  set.retain_seconds = 77;  // not in the mask
  ASSERT_TRUE(fs_->IoctlSet(*handle, set));
  auto st = fs_->IoctlStat(*handle);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->retain_bytes, 1u << 20);
  EXPECT_EQ(st->segment_size, 8192u);
  EXPECT_EQ(st->retain_seconds, 0u);
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, IoctlSetRefusesBadValuesAndReadOnlyHandles) {
  const InodeId id = MakeFile("a");
  auto reader = OpenOk(id, O_RDONLY);
  hpfs_set set{};
  set.mask = HPFS_SET_RETAIN_BYTES;
  set.retain_bytes = 100;
  auto r = fs_->IoctlSet(*reader, set);
  ASSERT_FALSE(r);
  EXPECT_EQ(Err(r.error()), EBADF);
  auto writer = OpenOk(id, O_WRONLY);
  set.mask = HPFS_SET_RETAIN_BYTES | HPFS_SET_SEGMENT_SIZE;
  set.segment_size = 0;
  r = fs_->IoctlSet(*writer, set);
  ASSERT_FALSE(r);
  EXPECT_EQ(Err(r.error()), EINVAL);
  set.segment_size = kMinSegmentSize - 1;  // the library would take it; users may not
  r = fs_->IoctlSet(*writer, set);
  ASSERT_FALSE(r);
  EXPECT_EQ(Err(r.error()), EINVAL);
  set.mask = 1u << 31;
  r = fs_->IoctlSet(*writer, set);
  ASSERT_FALSE(r);
  EXPECT_EQ(Err(r.error()), EINVAL);
  auto st = fs_->IoctlStat(*writer);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->retain_bytes, 0u) << "a refused set changes nothing";
  EXPECT_EQ(st->segment_size, kSegment);
  fs_->Release(std::move(reader));
  fs_->Release(std::move(writer));
}

TEST_F(FilesystemTest, XattrsExposeHpfsKeys) {
  const InodeId id = MakeFile("a", "12345");
  EXPECT_EQ(fs_->GetXattr(id, "user.hpfs.size").value(), "5");
  EXPECT_EQ(fs_->GetXattr(id, "user.hpfs.head").value(), "0");
  ASSERT_TRUE(fs_->SetXattr(id, "user.hpfs.retain_bytes", "64K"));
  EXPECT_EQ(fs_->GetXattr(id, "user.hpfs.retain_bytes").value(), "65536");
  ASSERT_TRUE(fs_->RemoveXattr(id, "user.hpfs.retain_bytes"));
  EXPECT_EQ(fs_->GetXattr(id, "user.hpfs.retain_bytes").value(), "0");
  auto names = fs_->ListXattr(id);
  ASSERT_TRUE(names);
  EXPECT_NE(std::find(names->begin(), names->end(), "user.hpfs.segment_size"), names->end());
  EXPECT_EQ(std::find(names->begin(), names->end(), "user.hpfs.damage"), names->end());
}

TEST_F(FilesystemTest, XattrErrorsFollowTheContract) {
  const InodeId id = MakeFile("a", "x");
  auto ro = fs_->SetXattr(id, "user.hpfs.head", "0");
  ASSERT_FALSE(ro);
  EXPECT_EQ(Err(ro.error()), EPERM);
  auto bad = fs_->SetXattr(id, "user.hpfs.segment_size", "lots");
  ASSERT_FALSE(bad);
  EXPECT_EQ(Err(bad.error()), EINVAL);
  auto zero = fs_->SetXattr(id, "user.hpfs.segment_size", "0");
  ASSERT_FALSE(zero);
  EXPECT_EQ(Err(zero.error()), EINVAL);
  auto other_set = fs_->SetXattr(id, "user.other", "v");
  ASSERT_FALSE(other_set);
  EXPECT_EQ(Err(other_set.error()), ENOTSUP);
  auto other_get = fs_->GetXattr(id, "user.other");
  ASSERT_FALSE(other_get);
  EXPECT_EQ(Err(other_get.error()), ENODATA);
  auto not_damaged = fs_->GetXattr(id, "user.hpfs.damage");
  ASSERT_FALSE(not_damaged);
  EXPECT_EQ(Err(not_damaged.error()), ENODATA);
}

// --- damaged files ---

TEST_F(FilesystemTest, DamagedFileFailsWithEioInTheGapOnly) {
  MakeFile("bad", std::string(3 * kSegment, 'b'));
  MakeFile("good", "fine");
  Remount();
  // A missing middle segment is no crash signature: the file opens damaged.
  std::filesystem::remove(Backing("bad/00000000000000004096-4096.seg"));
  auto bad = fs_->Lookup(kRootInode, "bad");
  ASSERT_TRUE(bad) << bad.error().message();
  auto handle = OpenOk(bad->id, O_RDWR);
  EXPECT_EQ(ReadAll(*handle, 0, 10), std::string(10, 'b'));
  auto gap = fs_->Read(*handle, kSegment + 10, 10);
  ASSERT_FALSE(gap);
  EXPECT_EQ(Err(gap.error()), EIO);
  auto write = fs_->Write(*handle, 3 * kSegment, Bytes("x"), false);
  ASSERT_FALSE(write);
  EXPECT_EQ(Err(write.error()), EIO);
  auto st = fs_->IoctlStat(*handle);
  ASSERT_TRUE(st);
  EXPECT_NE(st->flags & HPFS_STAT_DAMAGED, 0u);
  EXPECT_STRNE(st->damage, "");
  fs_->Release(std::move(handle));

  auto good = fs_->Lookup(kRootInode, "good");
  ASSERT_TRUE(good);
  auto good_handle = OpenOk(good->id, O_RDONLY);
  EXPECT_EQ(ReadAll(*good_handle), "fine");
  fs_->Release(std::move(good_handle));
}

// --- retention ---

// Sets the mtime of every segment of backing file `rel` to `seconds_ago`.
void AgeSegments(const std::string& dir, int64_t seconds_ago) {
  const timespec when{::time(nullptr) - seconds_ago, 0};
  const timespec times[2] = {when, when};
  for (const auto& name : ListBacking(dir)) {
    if (name.ends_with(".seg")) {
      ASSERT_EQ(::utimensat(AT_FDCWD, (dir + "/" + name).c_str(), times, 0), 0) << name;
    }
  }
}

size_t SegmentCount(const std::string& dir) {
  const auto names = ListBacking(dir);
  return std::count_if(names.begin(), names.end(), [](const std::string& n) { return n.ends_with(".seg"); });
}

TEST_F(FilesystemTest, RetainBytesPrunesWholeSegmentsAndInvalidatesThem) {
  const InodeId id = MakeFile("log", std::string(5 * kSegment + 10, 'x'));
  std::vector<std::tuple<InodeId, uint64_t, uint64_t>> invalidated;
  fs_->SetInvalidator([&](InodeId i, uint64_t off, uint64_t len) { invalidated.emplace_back(i, off, len); });
  ASSERT_TRUE(fs_->SetXattr(id, "user.hpfs.retain_bytes", std::to_string(2 * kSegment)));
  const RetentionPass pass = fs_->EnforceRetention(::time(nullptr), 100);
  EXPECT_EQ(pass.files_checked, 1u);
  EXPECT_EQ(pass.files_pruned, 1u);
  // At least retain_bytes stay readable; only whole segments went.
  EXPECT_EQ(fs_->GetXattr(id, "user.hpfs.head").value(), std::to_string(3 * kSegment));
  ASSERT_EQ(invalidated.size(), 1u);
  EXPECT_EQ(invalidated[0], std::make_tuple(id, uint64_t{0}, 3 * kSegment));
  EXPECT_EQ(fs_->EnforceRetention(::time(nullptr), 100).files_pruned, 0u) << "nothing more to do";
}

TEST_F(FilesystemTest, RetainSecondsPrunesSegmentsOlderThanTheLimit) {
  const InodeId id = MakeFile("log", std::string(3 * kSegment + 10, 'x'));
  ASSERT_TRUE(fs_->SetXattr(id, "user.hpfs.retain_seconds", "1h"));
  EXPECT_EQ(fs_->EnforceRetention(::time(nullptr), 100).files_pruned, 0u);
  // Two hours later every sealed segment is too old; the tail always stays.
  EXPECT_EQ(fs_->EnforceRetention(::time(nullptr) + 7200, 100).files_pruned, 1u);
  EXPECT_EQ(fs_->GetXattr(id, "user.hpfs.head").value(), std::to_string(3 * kSegment));
}

TEST_F(FilesystemTest, SegmentRollInAWriteEnforcesRetentionAndInvalidatesOutsideTheRequest) {
  config_.retain_bytes = kSegment + 1;  // the mount-wide default for new files
  Remount();
  auto created = fs_->Create(kRootInode, "log", 0644, O_WRONLY | O_CREAT, caller_);
  ASSERT_TRUE(created) << created.error().message();
  auto& [entry, handle] = *created;
  // Pages, from the retention pass; attributes alone (offset -1), from the
  // deleter's thread once it freed the dropped segment's file.
  std::mutex mu;
  std::vector<std::tuple<InodeId, uint64_t, uint64_t>> invalidated;
  std::vector<InodeId> attributes_invalidated;
  fs_->SetInvalidator([&](InodeId i, uint64_t off, uint64_t len) {
    std::lock_guard lock(mu);
    if (off == static_cast<uint64_t>(-1)) {
      attributes_invalidated.push_back(i);
    } else {
      invalidated.emplace_back(i, off, len);
    }
  });
  const std::string block(kSegment, 'y');
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(fs_->Write(*handle, i * kSegment, Bytes(block), false));
  // The third write rolled to [2*seg, 3*seg): [0, seg) went inside it.
  auto st = fs_->IoctlStat(*handle);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->head, kSegment);
  fs_->WaitForDeletions();
  EXPECT_EQ(SegmentCount(Backing("log")), 2u);
  {
    std::lock_guard lock(mu);
    EXPECT_TRUE(invalidated.empty()) << "never from inside the write request";
  }
  fs_->EnforceRetention(::time(nullptr), 100);
  std::lock_guard lock(mu);
  ASSERT_EQ(invalidated.size(), 1u);
  EXPECT_EQ(invalidated[0], std::make_tuple(entry.id, uint64_t{0}, kSegment));
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, RetentionReachesFilesTheKernelNeverLookedUp) {
  MakeFile("log", std::string(6 * kSegment, 'x'));
  auto dir = fs_->Mkdir(kRootInode, "nested", 0755, caller_);
  ASSERT_TRUE(dir);
  MakeFile("deep", std::string(6 * kSegment, 'z'), dir->id);
  MakeFile("unlimited", std::string(6 * kSegment, 'u'));
  for (const char* rel : {"log", "nested/deep"}) {
    std::ofstream(Backing(std::string(rel) + "/hpfile.meta"), std::ios::app) << "retain_bytes=" << 2 * kSegment << "\n";
  }
  Remount();
  ASSERT_EQ(fs_->inodes().size(), 1u) << "only the root is known";
  std::vector<InodeId> invalidated;
  fs_->SetInvalidator([&](InodeId i, uint64_t, uint64_t) { invalidated.push_back(i); });

  RetentionPass pass = fs_->EnforceRetention(::time(nullptr), 100);
  EXPECT_TRUE(pass.round_complete);
  EXPECT_EQ(pass.files_checked, 2u) << "the file without a limit is not opened";
  EXPECT_EQ(pass.files_pruned, 2u);
  EXPECT_EQ(SegmentCount(Backing("log")), 2u);
  EXPECT_EQ(SegmentCount(Backing("nested/deep")), 2u);
  EXPECT_EQ(SegmentCount(Backing("unlimited")), 6u);
  EXPECT_EQ(fs_->inodes().size(), 1u) << "opened for the enforcement only";
  EXPECT_TRUE(invalidated.empty()) << "the kernel caches nothing of them";

  // The head is on disk: a lookup now sees it, and the data above it.
  auto log = fs_->Lookup(kRootInode, "log");
  ASSERT_TRUE(log);
  EXPECT_EQ(fs_->GetXattr(log->id, "user.hpfs.head").value(), std::to_string(4 * kSegment));
  auto handle = OpenOk(log->id, O_RDONLY);
  EXPECT_EQ(ReadAll(*handle, 4 * kSegment), std::string(2 * kSegment, 'x'));
  fs_->Release(std::move(handle));
}

TEST_F(FilesystemTest, RetentionWalkDoesBoundedWorkPerPassAndResumes) {
  for (const char* name : {"a", "b", "c", "d"}) {
    MakeFile(name, std::string(4 * kSegment, 'x'));
    std::ofstream(Backing(std::string(name) + "/hpfile.meta"), std::ios::app) << "retain_bytes=1\n";
  }
  Remount();
  size_t pruned = 0;
  int passes = 0;
  for (bool complete = false; !complete && passes < 20; ++passes) {
    const RetentionPass pass = fs_->EnforceRetention(::time(nullptr), 2);
    EXPECT_LE(pass.entries_walked, 2u);
    pruned += pass.files_pruned;
    complete = pass.round_complete;
  }
  // The root listing, then two files per pass.
  EXPECT_EQ(passes, 3);
  EXPECT_EQ(pruned, 4u);
  for (const char* name : {"a", "b", "c", "d"}) EXPECT_EQ(SegmentCount(Backing(name)), 1u) << name;
  // The next round starts over and finds nothing more to do.
  EXPECT_EQ(fs_->EnforceRetention(::time(nullptr), 100).files_pruned, 0u);
}

TEST_F(FilesystemTest, RetentionWalkSkipsDamagedFilesAndKeepsGoing) {
  MakeFile("bad", std::string(4 * kSegment, 'b'));
  MakeFile("good", std::string(4 * kSegment, 'g'));
  for (const char* name : {"bad", "good"}) {
    std::ofstream(Backing(std::string(name) + "/hpfile.meta"), std::ios::app) << "retain_bytes=1\n";
  }
  std::filesystem::remove(Backing("bad/00000000000000004096-4096.seg"));
  Remount();
  const RetentionPass pass = fs_->EnforceRetention(::time(nullptr), 100);
  EXPECT_EQ(pass.files_pruned, 1u);
  EXPECT_EQ(SegmentCount(Backing("bad")), 3u) << "a damaged file is never changed";
  EXPECT_EQ(SegmentCount(Backing("good")), 1u);
}

TEST_F(FilesystemTest, AgeLimitReachesFilesTheKernelNeverLookedUp) {
  MakeFile("old", std::string(3 * kSegment + 10, 'o'));
  std::ofstream(Backing("old/hpfile.meta"), std::ios::app) << "retain_seconds=3600\n";
  AgeSegments(Backing("old"), 7200);
  Remount();
  EXPECT_EQ(fs_->EnforceRetention(::time(nullptr), 100).files_pruned, 1u);
  EXPECT_EQ(SegmentCount(Backing("old")), 1u) << "the tail stays, however old";
}

TEST_F(FilesystemTest, StatAfterRetentionCountsOnlyTheSegmentsLeft) {
  const InodeId id = MakeFile("log", std::string(6 * kSegment, 'x'));
  const blkcnt_t before = Attr(id).st_blocks;  // caches the sealed segments' blocks
  ASSERT_TRUE(fs_->SetXattr(id, "user.hpfs.retain_bytes", std::to_string(kSegment)));
  fs_->EnforceRetention(::time(nullptr), 100);
  fs_->WaitForDeletions();
  const blkcnt_t after = Attr(id).st_blocks;
  EXPECT_LT(after, before);
  EXPECT_LE(after, before / 3);
}

TEST_F(FilesystemTest, RetentionThreadEnforcesLimitsInTheBackground) {
  const InodeId id = MakeFile("log", std::string(5 * kSegment, 'x'));
  fs_->StartRetention(std::chrono::milliseconds(10), 100);
  ASSERT_TRUE(fs_->SetXattr(id, "user.hpfs.retain_bytes", std::to_string(kSegment)));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (fs_->GetXattr(id, "user.hpfs.head").value() != std::to_string(4 * kSegment) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(fs_->GetXattr(id, "user.hpfs.head").value(), std::to_string(4 * kSegment));
  fs_->StopRetention();
}

// --- lookups that do not open the file ---

TEST_F(FilesystemTest, LookupOfAClosedFileAnswersWithoutOpeningIt) {
  MakeFile("a", "data");
  Remount();
  auto entry = fs_->Lookup(kRootInode, "a");
  ASSERT_TRUE(entry) << entry.error().message();
  EXPECT_EQ(entry->attr.st_size, 4);
  EXPECT_EQ(fs_->inodes().Get(entry->id)->File(), nullptr);
  EXPECT_EQ(fs_->IdleFiles(), 0u);
  auto handle = OpenOk(entry->id, O_RDONLY);
  ASSERT_NE(handle, nullptr);
  EXPECT_EQ(ReadAll(*handle), "data");
  EXPECT_NE(fs_->inodes().Get(entry->id)->File(), nullptr);
  fs_->Release(std::move(handle));
}

// The stat a lookup makes from the backing directory alone is the one the
// open file gives, after every kind of change.
TEST_F(FilesystemTest, StatOfAClosedFileIsTheOpenFilesStat) {
  InodeId id = MakeFile("a");
  auto change = [&](const std::function<void(FileHandle&)>& apply) {
    auto handle = OpenOk(id, O_WRONLY | O_APPEND);
    ASSERT_NE(handle, nullptr);
    apply(*handle);
    fs_->Release(std::move(handle));
  };
  auto check = [&](const std::string& after) {
    SCOPED_TRACE(after);
    fs_->WaitForDeletions();
    ASSERT_NE(fs_->inodes().Get(id)->File(), nullptr);
    const struct stat open = Attr(id);
    fs_->Forget(id, 1);
    ASSERT_EQ(fs_->inodes().Get(id), nullptr);
    auto entry = fs_->Lookup(kRootInode, "a");
    ASSERT_TRUE(entry) << entry.error().message();
    id = entry->id;
    EXPECT_EQ(fs_->inodes().Get(id)->File(), nullptr) << "the lookup opened the file";
    const struct stat& closed = entry->attr;
    EXPECT_EQ(closed.st_dev, open.st_dev);
    EXPECT_EQ(closed.st_ino, open.st_ino);
    EXPECT_EQ(closed.st_mode, open.st_mode);
    EXPECT_EQ(closed.st_nlink, open.st_nlink);
    EXPECT_EQ(closed.st_uid, open.st_uid);
    EXPECT_EQ(closed.st_gid, open.st_gid);
    EXPECT_EQ(closed.st_size, open.st_size);
    EXPECT_EQ(closed.st_blocks, open.st_blocks);
    EXPECT_EQ(closed.st_blksize, open.st_blksize);
    EXPECT_EQ(closed.st_atim.tv_nsec, open.st_atim.tv_nsec);
    EXPECT_EQ(closed.st_mtim.tv_sec, open.st_mtim.tv_sec);
    EXPECT_EQ(closed.st_mtim.tv_nsec, open.st_mtim.tv_nsec);
    EXPECT_EQ(closed.st_ctim.tv_sec, open.st_ctim.tv_sec);
    EXPECT_EQ(closed.st_ctim.tv_nsec, open.st_ctim.tv_nsec);
    // Opened for the next change, the file agrees with both.
    EXPECT_EQ(Attr(id).st_size, open.st_size);
  };
  check("created empty");
  change([&](FileHandle& h) { ASSERT_TRUE(fs_->Write(h, 0, Bytes(std::string(kSegment / 2, 'a')), true)); });
  check("one short segment");
  change([&](FileHandle& h) { ASSERT_TRUE(fs_->Write(h, 0, Bytes(std::string(3 * kSegment, 'b')), true)); });
  check("appends across segments");
  change([&](FileHandle& h) {
    ASSERT_TRUE(fs_->Fallocate(h, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * kSegment + 100));
  });
  check("a head punch");
  {
    AttrChange shrink;
    shrink.size = 3 * kSegment + 10;
    ASSERT_TRUE(fs_->SetAttr(id, shrink, nullptr));
  }
  check("a truncate into the tail's predecessor");
  {
    AttrChange grow;
    grow.size = 9 * kSegment + 1;
    ASSERT_TRUE(fs_->SetAttr(id, grow, nullptr));
  }
  check("a grow with a gap segment");
  {
    AttrChange attrs;
    attrs.mode = 0600;
    ASSERT_TRUE(fs_->SetAttr(id, attrs, nullptr));
  }
  check("a chmod");
  {
    AttrChange below_head;
    below_head.size = kSegment;
    ASSERT_TRUE(fs_->SetAttr(id, below_head, nullptr));
  }
  check("a truncate below the head");
}

// Files an open would change or report on are opened by the lookup, as
// before: the stat is then the open file's.
TEST_F(FilesystemTest, LookupOpensAFileThatNeedsRecovery) {
  MakeFile("a", "data");
  Remount();
  // A meta write interrupted before its rename.
  { std::ofstream(Backing("a/") + std::string(hpfile::format::kMetaTempName)) << "format=1\n"; }
  auto entry = fs_->Lookup(kRootInode, "a");
  ASSERT_TRUE(entry) << entry.error().message();
  EXPECT_NE(fs_->inodes().Get(entry->id)->File(), nullptr);
  EXPECT_EQ(entry->attr.st_size, 4);
  EXPECT_FALSE(std::filesystem::exists(Backing("a/") + std::string(hpfile::format::kMetaTempName)));
}

TEST_F(FilesystemTest, LookupOfAFileOfManySegmentsOpensIt) {
  MakeFile("a", std::string((kClosedStatMaxEntries + 1) * kSegment, 'x'));
  Remount();
  auto entry = fs_->Lookup(kRootInode, "a");
  ASSERT_TRUE(entry) << entry.error().message();
  EXPECT_NE(fs_->inodes().Get(entry->id)->File(), nullptr);
  EXPECT_EQ(entry->attr.st_size, static_cast<off_t>((kClosedStatMaxEntries + 1) * kSegment));
}

TEST_F(FilesystemTest, UnlinkOfAFileNeverOpenedSaysNoLinks) {
  MakeFile("a", "data");
  Remount();
  auto entry = fs_->Lookup(kRootInode, "a");
  ASSERT_TRUE(entry) << entry.error().message();
  ASSERT_TRUE(fs_->Unlink(kRootInode, "a"));
  EXPECT_EQ(Attr(entry->id).st_nlink, 0u);
  auto handle = OpenOk(entry->id, O_RDONLY);
  ASSERT_NE(handle, nullptr);
  EXPECT_EQ(ReadAll(*handle), "data");
  fs_->Release(std::move(handle));
  fs_->Forget(entry->id, 1);
  EXPECT_TRUE(SettledTrash().empty());
}

}  // namespace
}  // namespace hpfs
