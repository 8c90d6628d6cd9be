// SPDX-License-Identifier: Apache-2.0
// The bounds on what idle inodes hold (fs/descriptor_cache.h): the LRU
// itself, and a Filesystem with max_open_files far below the files the
// kernel remembers.
#include "fs/descriptor_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fs/filesystem.h"
#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

using testing::Bytes;
using testing::Materialize;
using testing::TempDir;

TEST(BoundedLruTest, EvictsTheLeastRecentlyUsedPastItsCapacity) {
  BoundedLru<int> lru(3);
  EXPECT_TRUE(lru.Insert(1, 10).empty());
  EXPECT_TRUE(lru.Insert(2, 20).empty());
  EXPECT_TRUE(lru.Insert(3, 30).empty());
  EXPECT_EQ(lru.Touch(1), 10);  // 2 is now the oldest
  EXPECT_EQ(lru.Insert(4, 40), std::vector<int>{20});
  EXPECT_EQ(lru.Touch(2), std::nullopt);
  EXPECT_EQ(lru.Insert(5, 50), std::vector<int>{30});
  EXPECT_EQ(lru.size(), 3u);
  EXPECT_EQ(lru.Erase(1), 10);
  EXPECT_EQ(lru.Erase(1), std::nullopt);
  EXPECT_EQ(lru.size(), 2u);
}

TEST(BoundedLruTest, InsertOfAKnownKeyReplacesItsValueAndEvictsNothingElse) {
  BoundedLru<int> lru(2);
  EXPECT_TRUE(lru.Insert(1, 10).empty());
  EXPECT_TRUE(lru.Insert(2, 20).empty());
  EXPECT_EQ(lru.Insert(1, 11), std::vector<int>{10});
  EXPECT_EQ(lru.Insert(3, 30), std::vector<int>{20});  // 1 was used last
  EXPECT_EQ(lru.Touch(1), 11);
}

TEST(DescriptorCacheTest, AnEvictedDescriptorStaysOpenWhileARequestHoldsIt) {
  DescriptorCache cache(1);
  auto first = std::make_shared<const hpfile::Fd>(hpfile::PosixIo::Default(), ::open("/", O_RDONLY | O_CLOEXEC));
  const int first_fd = first->get();
  cache.Insert(1, first);
  cache.Insert(2, std::make_shared<const hpfile::Fd>(hpfile::PosixIo::Default(), ::open("/", O_RDONLY | O_CLOEXEC)));
  EXPECT_EQ(cache.Find(1), nullptr);
  EXPECT_EQ(::fcntl(first_fd, F_GETFD), FD_CLOEXEC);  // still ours
  first.reset();
  EXPECT_EQ(::fcntl(first_fd, F_GETFD), -1);  // closed with its last holder
}

TEST(DescriptorCacheTest, DefaultIsAQuarterOfTheDescriptorLimitWithinItsRange) {
  const size_t n = DefaultMaxOpenFiles();
  EXPECT_GE(n, kMinOpenFiles);
  EXPECT_LE(n, 4096u);
}

size_t OpenDescriptors() {
  size_t n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  while (::readdir(dir) != nullptr) ++n;
  ::closedir(dir);
  return n;
}

class BoundedFilesystemTest : public ::testing::Test {
 protected:
  static constexpr size_t kBound = 16;
  static constexpr int kFiles = 200;

  void SetUp() override {
    config_.segment_size = 4096;
    config_.max_open_files = kBound;
    auto fs = Filesystem::Open(dir_.path(), config_);
    ASSERT_TRUE(fs) << fs.error().message();
    fs_ = std::move(*fs);
    fs_->StartDeleter();
    auto sub = fs_->Mkdir(kRootInode, "d", 0755, {});
    ASSERT_TRUE(sub) << sub.error().message();
    sub_ = sub->id;
  }

  std::string Content(int i) { return "file " + std::to_string(i) + std::string(static_cast<size_t>(i), 'x'); }
  std::string Name(int i) { return "f" + std::to_string(i); }

  std::string ReadAll(InodeId id) {
    auto handle = fs_->OpenFile(id, O_RDONLY);
    EXPECT_TRUE(handle) << handle.error().message();
    if (!handle) return "";
    auto plan = fs_->Read(**handle, 0, 1 << 20);
    EXPECT_TRUE(plan) << plan.error().message();
    std::string out = plan ? Materialize(*plan) : "";
    fs_->Release(std::move(*handle));
    return out;
  }

  TempDir dir_;
  Config config_;
  std::unique_ptr<Filesystem> fs_;
  InodeId sub_ = 0;
};

TEST_F(BoundedFilesystemTest, IdleInodesHoldNoMoreThanTheBoundAndStayUsable) {
  const size_t before = OpenDescriptors();
  std::vector<InodeId> ids;
  for (int i = 0; i < kFiles; ++i) {
    auto created = fs_->Create(sub_, Name(i), 0644, O_WRONLY | O_CREAT, {});
    ASSERT_TRUE(created) << created.error().message();
    ASSERT_TRUE(fs_->Write(*created->second, 0, Bytes(Content(i)), false));
    fs_->Release(std::move(created->second));
    ids.push_back(created->first.id);  // the kernel keeps its lookup
  }
  EXPECT_EQ(fs_->inodes().size(), static_cast<size_t>(kFiles) + 2);
  EXPECT_LE(fs_->CachedDescriptors(), kBound / 2);
  EXPECT_LE(fs_->IdleFiles(), kBound / 4);
  EXPECT_LE(OpenDescriptors(), before + kBound);

  // The parent directory moves: evicted files are found through it anyway.
  ASSERT_TRUE(fs_->Rename(kRootInode, "d", kRootInode, "moved", 0));
  for (int i = 0; i < kFiles; ++i) {
    EXPECT_EQ(ReadAll(ids[static_cast<size_t>(i)]), Content(i)) << Name(i);
    auto st = fs_->GetAttr(ids[static_cast<size_t>(i)]);
    ASSERT_TRUE(st) << st.error().message();
    EXPECT_EQ(st->st_size, static_cast<off_t>(Content(i).size()));
    EXPECT_EQ(st->st_mode & 07777, 0644u);
  }
  EXPECT_LE(OpenDescriptors(), before + kBound);

  // An append to an evicted file lands after what it held.
  auto handle = fs_->OpenFile(ids[0], O_WRONLY | O_APPEND);
  ASSERT_TRUE(handle) << handle.error().message();
  ASSERT_TRUE(fs_->Write(**handle, 0, Bytes("+more"), true));
  fs_->Release(std::move(*handle));
  for (int i = 1; i < kFiles; ++i) (void)fs_->GetAttr(ids[static_cast<size_t>(i)]);  // evicts it again
  EXPECT_EQ(ReadAll(ids[0]), Content(0) + "+more");
  for (InodeId id : ids) fs_->Forget(id, 1);
}

TEST_F(BoundedFilesystemTest, OpenAndOpenUnlinkedFilesStayPinnedAndReadable) {
  std::vector<std::unique_ptr<FileHandle>> open;
  std::vector<InodeId> ids;
  for (int i = 0; i < kFiles; ++i) {
    auto created = fs_->Create(sub_, Name(i), 0644, O_RDWR | O_CREAT, {});
    ASSERT_TRUE(created) << created.error().message();
    ASSERT_TRUE(fs_->Write(*created->second, 0, Bytes(Content(i)), false));
    ids.push_back(created->first.id);
    if (i % 40 == 0) {
      open.push_back(std::move(created->second));
      ASSERT_TRUE(fs_->Unlink(sub_, Name(i)));
    } else {
      fs_->Release(std::move(created->second));
    }
  }
  for (size_t k = 0; k < open.size(); ++k) {
    auto plan = fs_->Read(*open[k], 0, 1 << 20);
    ASSERT_TRUE(plan) << plan.error().message();
    EXPECT_EQ(Materialize(*plan), Content(static_cast<int>(k * 40)));
    // A second open of the unlinked file, as a path walk that resolved the
    // name before the unlink makes.
    EXPECT_EQ(ReadAll(open[k]->inode->id), Content(static_cast<int>(k * 40)));
  }
  for (auto& handle : open) fs_->Release(std::move(handle));
  for (InodeId id : ids) fs_->Forget(id, 1);
  fs_->WaitForDeletions();
  EXPECT_TRUE(testing::ListBacking(dir_.path() + "/" + std::string(hpfile::format::kTrashName)).empty());
}

TEST_F(BoundedFilesystemTest, AnEvictedFileIsReopenedFromTheTrashAfterAnUnlink) {
  auto created = fs_->Create(sub_, "victim", 0644, O_WRONLY | O_CREAT, {});
  ASSERT_TRUE(created) << created.error().message();
  ASSERT_TRUE(fs_->Write(*created->second, 0, Bytes("still here"), false));
  fs_->Release(std::move(created->second));
  const InodeId victim = created->first.id;
  for (int i = 0; i < 20; ++i) {
    auto other = fs_->Create(sub_, Name(i), 0644, O_WRONLY | O_CREAT, {});
    ASSERT_TRUE(other);
    fs_->Release(std::move(other->second));
  }
  ASSERT_TRUE(fs_->Unlink(sub_, "victim"));
  // The kernel still knows the inode, so it may open it once more.
  EXPECT_EQ(ReadAll(victim), "still here");
  fs_->Forget(victim, 1);
}

TEST_F(BoundedFilesystemTest, AStatOfAnEvictedFileOpensNothingAndSeesEveryChange) {
  std::vector<InodeId> ids;
  for (int i = 0; i < 20; ++i) {
    auto created = fs_->Create(sub_, Name(i), 0644, O_WRONLY | O_CREAT, {});
    ASSERT_TRUE(created) << created.error().message();
    ASSERT_TRUE(fs_->Write(*created->second, 0, Bytes(Content(i)), false));
    fs_->Release(std::move(created->second));
    ids.push_back(created->first.id);
  }
  auto evicted = [&](InodeId id) {
    auto inode = fs_->inodes().Get(id);
    std::lock_guard lock(inode->mu);
    return inode->evicted;
  };
  ASSERT_TRUE(evicted(ids[0]));
  auto st = fs_->GetAttr(ids[0]);
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(st->st_size, static_cast<off_t>(Content(0).size()));
  EXPECT_EQ(st->st_mode, S_IFREG | 0644u);
  EXPECT_TRUE(evicted(ids[0])) << "a stat opened the evicted file again";

  AttrChange change;
  change.size = 3;
  change.mode = 0600;
  ASSERT_TRUE(fs_->SetAttr(ids[0], change, nullptr));
  for (int i = 1; i < 20; ++i) {
    auto handle = fs_->OpenFile(ids[static_cast<size_t>(i)], O_RDONLY);  // evicts file 0 again
    ASSERT_TRUE(handle);
    fs_->Release(std::move(*handle));
  }
  ASSERT_TRUE(evicted(ids[0]));
  st = fs_->GetAttr(ids[0]);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->st_size, 3);
  EXPECT_EQ(st->st_mode, S_IFREG | 0600u);
  for (InodeId id : ids) fs_->Forget(id, 1);
}

}  // namespace
}  // namespace hpfs
