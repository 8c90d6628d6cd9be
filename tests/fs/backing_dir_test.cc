// SPDX-License-Identifier: Apache-2.0
// fs/backing_dir: the one "is this directory an HPFile" rule, which the mount
// and `hpfsctl check` share, and listings that fail rather than come back short.
#include "fs/backing_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "fs/ctl/check.h"
#include "fs/filesystem.h"
#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

using testing::TempDir;

class BackingDirTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& rel) const { return dir_.path() + "/" + rel; }
  void Dir(const std::string& rel) { std::filesystem::create_directories(Path(rel)); }
  void File(const std::string& rel, const std::string& text = "") { std::ofstream(Path(rel)) << text; }
  void Meta(const std::string& rel) { File(rel + "/hpfile.meta", "format=1\nsegment_size=4096\nhead=0\n"); }

  Result<bool> IsFile(const std::string& rel) {
    auto root = OpenAt(AT_FDCWD, dir_.path(), O_RDONLY | O_DIRECTORY);
    if (!root) return std::unexpected(root.error());
    return IsHPFileDir(root->get(), rel);
  }

  // What a mount makes of the top-level entry `name`.
  Result<bool> MountShowsFile(const std::string& name) {
    auto fs = Filesystem::Open(dir_.path(), Config{});
    if (!fs) return std::unexpected(fs.error());
    auto entry = (*fs)->Lookup(kRootInode, name);
    if (!entry) return std::unexpected(entry.error());
    const bool regular = S_ISREG(entry->attr.st_mode);
    (*fs)->Forget(entry->id, 1);
    return regular;
  }

  // How many HPFiles `hpfsctl check` counts.
  std::string CheckSummary() {
    std::ostringstream out, err;
    ctl::CheckBacking(dir_.path(), ctl::CheckOptions{}, out, err);
    const std::string text = out.str();
    const size_t at = text.find("checked ");
    return at == std::string::npos ? text + err.str() : text.substr(at);
  }

  TempDir dir_;
};

TEST_F(BackingDirTest, ListingOfAnOwnDescriptorIsTheListingOfTheDirectory) {
  // More names than one getdents64 buffer holds.
  Dir("d/sub");
  for (int i = 0; i < 300; ++i) File("d/" + std::string(60, 'n') + std::to_string(i));
  auto fd = OpenAt(AT_FDCWD, Path("d"), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(fd);
  auto own = ListOwnEntries(fd->get());
  auto plain = ListEntries(fd->get());
  ASSERT_TRUE(own && plain);
  auto names = [](std::vector<ListedEntry> entries) {
    std::vector<std::pair<std::string, unsigned char>> out;
    for (auto& entry : entries) out.emplace_back(std::move(entry.name), entry.type);
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(own->size(), 301u);
  EXPECT_EQ(names(*own), names(*plain));
  // The descriptor is at its end now: a second listing of it is empty.
  auto again = ListOwnEntries(fd->get());
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->empty());
  // A bound below the entries' count is E2BIG, one at or above it lists.
  auto bounded = OpenAt(AT_FDCWD, Path("d"), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(bounded);
  auto refused = ListOwnEntries(bounded->get(), 300);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().value(), E2BIG);
  auto exact = OpenAt(AT_FDCWD, Path("d"), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(exact);
  auto all = ListOwnEntries(exact->get(), 301);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 301u);
}

TEST_F(BackingDirTest, RegularMetaMakesAnHPFileWhateverElseIsThere) {
  Dir("f/sub");
  Meta("f");
  EXPECT_EQ(IsFile("f"), true);
}

TEST_F(BackingDirTest, MetaThatIsNotARegularFileDoesNotCount) {
  Dir("d/hpfile.meta");
  EXPECT_EQ(IsFile("d"), false);
}

TEST_F(BackingDirTest, SegmentsWithoutMetaMakeAnHPFileThatLostItsMeta) {
  Dir("f");
  File("f/00000000000000000000-4096.seg", "abc");
  File("f/00000000000000004096-4096.seg", "abc");
  EXPECT_EQ(IsFile("f"), true);
}

TEST_F(BackingDirTest, EmptyDirectoryAndPlainFilesAreNoHPFile) {
  Dir("empty");
  Dir("plain");
  File("plain/notes.txt", "x");
  EXPECT_EQ(IsFile("empty"), false);
  EXPECT_EQ(IsFile("plain"), false);
}

// A stray segment-like file next to directories: whichever readdir returns
// first, the directories make it a plain directory. Many names, so that both
// orders occur whatever the backing filesystem's hash order is.
TEST_F(BackingDirTest, ADirectoryOrSymlinkBesideSegmentsMakesAPlainDirectoryInAnyOrder) {
  for (int i = 0; i < 16; ++i) {
    const std::string d = "mixed" + std::to_string(i);
    Dir(d + "/sub" + std::to_string(i));
    File(d + "/" + std::to_string(i) + ".seg", "x");
    File(d + "/z" + std::to_string(i * 7) + ".seg", "x");
    EXPECT_EQ(IsFile(d), false) << d;
  }
  Dir("linked");
  File("linked/a.seg", "x");
  ASSERT_EQ(::symlink("a.seg", Path("linked/b").c_str()), 0);
  EXPECT_EQ(IsFile("linked"), false);
}

TEST_F(BackingDirTest, MissingDirectoryIsAnError) {
  const auto r = IsFile("nothing");
  ASSERT_FALSE(r);
  EXPECT_TRUE(hpfile::IsErrno(r.error(), ENOENT));
}

// `hpfsctl check` promises to predict what a mount does; on a directory
// holding both a segment and a subdirectory they used to disagree.
TEST_F(BackingDirTest, CheckAndMountClassifyAlike) {
  Dir("mixed/sub");
  File("mixed/00000000000000000000-4096.seg", "abc");
  Dir("lost");
  File("lost/00000000000000000000-4096.seg", "abc");
  EXPECT_EQ(MountShowsFile("mixed"), false);
  EXPECT_EQ(MountShowsFile("lost"), true);
  EXPECT_EQ(CheckSummary().substr(0, 17), "checked 1 HPFiles") << CheckSummary();
}

TEST_F(BackingDirTest, ListingThatFailsMidwayIsAnErrorNotAShortList) {
  Dir("d");
  File("d/a");
  File("d/b");
  auto fd = OpenAt(AT_FDCWD, Path("d"), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(fd);
  FailListingsForTest(EIO);
  const auto failed = ListEntries(fd->get());
  ASSERT_FALSE(failed);
  EXPECT_TRUE(hpfile::IsErrno(failed.error(), EIO));
  const auto listed = ListEntries(fd->get());
  ASSERT_TRUE(listed) << "only the one listing fails";
  EXPECT_EQ(listed->size(), 2u);
}

}  // namespace
}  // namespace hpfs
