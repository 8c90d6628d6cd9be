// SPDX-License-Identifier: Apache-2.0
// Filesystem's directories: readdir paging, rewinds, the lookups a
// readdirplus reply hands out, and listings that fail instead of coming back
// short (also in the retention walk).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fs/backing_dir.h"
#include "fs/filesystem.h"
#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

using testing::TempDir;

class DirectoriesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.segment_size = 4096;
    auto fs = Filesystem::Open(dir_.path(), config_);
    ASSERT_TRUE(fs) << fs.error().message();
    fs_ = std::move(*fs);
  }

  InodeId MakeFile(const std::string& name) {
    auto created = fs_->Create(kRootInode, name, 0644, O_WRONLY | O_CREAT, caller_);
    EXPECT_TRUE(created) << created.error().message();
    if (!created) return 0;
    fs_->Release(std::move(created->second));
    return created->first.id;
  }

  std::unique_ptr<DirHandle> Open() {
    auto dir = fs_->OpenDir(kRootInode);
    EXPECT_TRUE(dir) << dir.error().message();
    return dir ? std::move(*dir) : nullptr;
  }

  struct Page {
    std::vector<std::string> names;
    std::vector<InodeId> looked_up;  // 0 for entries without an inode
    off_t next = 0;                  // where the next page starts
    std::vector<InodeId> handed_out;
  };
  // One reply of at most `room` entries from `offset`.
  Page Read(DirHandle& dir, off_t offset, size_t room, bool plus = false) {
    Page page;
    page.next = offset;
    auto handed_out = fs_->ReadDir(dir, offset, plus, [&](const DirEntry& de, const Entry* entry, off_t next) {
      if (page.names.size() == room) return false;
      page.names.push_back(de.name);
      page.looked_up.push_back(entry ? entry->id : 0);
      page.next = next;
      return true;
    });
    EXPECT_TRUE(handed_out) << handed_out.error().message();
    if (handed_out) page.handed_out = *handed_out;
    return page;
  }

  TempDir dir_;
  Config config_;
  Caller caller_{::geteuid(), ::getegid()};
  std::unique_ptr<Filesystem> fs_;
};

TEST_F(DirectoriesTest, PagesGoOnWhereTheLastOneStopped) {
  for (const char* name : {"a", "b", "c"}) MakeFile(name);
  auto dir = Open();
  ASSERT_TRUE(dir);
  std::vector<std::string> all;
  off_t offset = 0;
  for (int i = 0; i < 10; ++i) {
    Page page = Read(*dir, offset, 2);
    if (page.names.empty()) break;
    EXPECT_LE(page.names.size(), 2u);
    all.insert(all.end(), page.names.begin(), page.names.end());
    offset = page.next;
  }
  std::sort(all.begin() + 2, all.end());
  EXPECT_EQ(all, (std::vector<std::string>{".", "..", "a", "b", "c"}));
}

TEST_F(DirectoriesTest, ReadAtZeroAfterTheFirstIsARewindThatListsAgain) {
  MakeFile("a");
  auto dir = Open();
  ASSERT_TRUE(dir);
  EXPECT_EQ(Read(*dir, 0, 10).names.size(), 3u);
  MakeFile("b");
  EXPECT_EQ(Read(*dir, 3, 10).names.size(), 0u) << "the snapshot holds until a rewind";
  EXPECT_EQ(Read(*dir, 0, 10).names.size(), 4u);
}

TEST_F(DirectoriesTest, PlusHandsOutOneLookupPerEntryThatFits) {
  const InodeId a = MakeFile("a");
  const InodeId b = MakeFile("b");
  const uint64_t a_before = fs_->inodes().Lookups(a);
  const uint64_t b_before = fs_->inodes().Lookups(b);
  auto dir = Open();
  ASSERT_TRUE(dir);
  // ".", ".." and one of the two files fit; the other was looked up and given back.
  Page page = Read(*dir, 0, 3, /*plus=*/true);
  ASSERT_EQ(page.names.size(), 3u);
  EXPECT_EQ(page.looked_up[0], 0u);
  EXPECT_EQ(page.looked_up[1], 0u);
  const InodeId shown = page.looked_up[2];
  ASSERT_TRUE(shown == a || shown == b);
  EXPECT_EQ(page.handed_out, std::vector<InodeId>{shown});
  EXPECT_EQ(fs_->inodes().Lookups(a), a_before + (shown == a ? 1 : 0));
  EXPECT_EQ(fs_->inodes().Lookups(b), b_before + (shown == b ? 1 : 0));
  // Without plus nothing is looked up.
  Page plain = Read(*dir, 0, 10);
  EXPECT_TRUE(plain.handed_out.empty());
  EXPECT_EQ(fs_->inodes().Lookups(shown), (shown == a ? a_before : b_before) + 1);
}

TEST_F(DirectoriesTest, RefreshThatCannotListFailsAndKeepsTheOldSnapshot) {
  MakeFile("a");
  auto dir = Open();
  ASSERT_TRUE(dir);
  ASSERT_EQ(Read(*dir, 0, 10).names.size(), 3u);
  FailListingsForTest(EIO);
  auto refreshed = fs_->ReadDir(*dir, 0, false, [](const DirEntry&, const Entry*, off_t) { return true; });
  ASSERT_FALSE(refreshed) << "a failing readdir must not look like a short directory";
  EXPECT_TRUE(hpfile::IsErrno(refreshed.error(), EIO));
  EXPECT_EQ(dir->entries.size(), 3u);
  EXPECT_EQ(Read(*dir, 0, 10).names.size(), 3u);
}

TEST_F(DirectoriesTest, OpenDirThatCannotListFails) {
  FailListingsForTest(EIO);
  auto dir = fs_->OpenDir(kRootInode);
  ASSERT_FALSE(dir);
  EXPECT_TRUE(hpfile::IsErrno(dir.error(), EIO));
}

// A listing that fails in the retention walk is logged and skipped; the walk
// goes on and a later round reaches the file.
TEST_F(DirectoriesTest, RetentionWalkSurvivesAFailedListing) {
  const InodeId id = MakeFile("log");
  ASSERT_TRUE(fs_->SetXattr(id, "user.hpfs.retain_bytes", "1M"));
  fs_->Forget(id, fs_->inodes().Lookups(id));  // not known: only the walk reaches it
  FailListingsForTest(EIO);
  const RetentionPass failed = fs_->EnforceRetention(::time(nullptr), 100);
  EXPECT_EQ(failed.files_checked, 0u);
  EXPECT_TRUE(failed.round_complete);
  const RetentionPass next = fs_->EnforceRetention(::time(nullptr), 100);
  EXPECT_EQ(next.files_checked, 1u);
}

}  // namespace
}  // namespace hpfs
