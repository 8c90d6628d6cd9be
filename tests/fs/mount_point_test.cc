// SPDX-License-Identifier: Apache-2.0
#include "fs/mount_point.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

const char kMountInfo[] =
    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "30 22 0:40 / /srv/logs rw,nosuid,nodev,relatime shared:20 - fuse.hpfs /var/lib/hpfs/backing "
    "rw,user_id=0,group_id=0,default_permissions,allow_other\n"
    "31 22 0:41 / /mnt/with\\040space rw - fuse.hpfs /data/b\\134x rw\n"
    "32 22 0:40 /sub /bound rw shared:20 - fuse.hpfs /var/lib/hpfs/backing rw\n"
    "33 30 0:42 / /srv/logs/tmp rw - tmpfs tmpfs rw\n"
    "garbage\n";

TEST(ParseMountInfo, ReadsRootMountPointTypeAndSourceWithEscapes) {
  const auto mounts = ParseMountInfo(kMountInfo);
  ASSERT_EQ(mounts.size(), 5u);
  EXPECT_EQ(mounts[1].mount_point, "/srv/logs");
  EXPECT_EQ(mounts[1].fstype, "fuse.hpfs");
  EXPECT_EQ(mounts[1].source, "/var/lib/hpfs/backing");
  EXPECT_EQ(mounts[2].mount_point, "/mnt/with space");
  EXPECT_EQ(mounts[2].source, "/data/b\\x");
  EXPECT_EQ(mounts[3].root, "/sub");
}

TEST(HpfsStoragePath, MapsAPathOnAnHpfsMountToItsBackingDirectory) {
  const auto mounts = ParseMountInfo(kMountInfo);
  EXPECT_EQ(HpfsStoragePath("/srv/logs", mounts), "/var/lib/hpfs/backing");
  EXPECT_EQ(HpfsStoragePath("/srv/logs/app/x", mounts), "/var/lib/hpfs/backing/app/x");
  EXPECT_EQ(HpfsStoragePath("/mnt/with space/a", mounts), "/data/b\\x/a");
  // A bind mount of a subdirectory of the mount.
  EXPECT_EQ(HpfsStoragePath("/bound/y", mounts), "/var/lib/hpfs/backing/sub/y");
}

TEST(HpfsStoragePath, PathsOnOtherFilesystemsHaveNone) {
  const auto mounts = ParseMountInfo(kMountInfo);
  EXPECT_FALSE(HpfsStoragePath("/srv/logsx", mounts));  // a prefix, not a parent
  EXPECT_FALSE(HpfsStoragePath("/home", mounts));
  // The topmost mount holding the path decides: a tmpfs on the hpfs mount.
  EXPECT_FALSE(HpfsStoragePath("/srv/logs/tmp/z", mounts));
}

class MountPointProblemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(B("backing/sub"));
    std::filesystem::create_directories(B("mnt"));
    std::filesystem::create_directory_symlink(B("backing"), B("alias"));
  }
  std::string B(const std::string& rel) const { return dir_.path() + "/" + rel; }
  testing::TempDir dir_;
};

TEST_F(MountPointProblemTest, AMountPointBesideTheBackingDirectoryIsFine) {
  EXPECT_EQ(MountPointProblem(B("backing"), B("mnt")), std::nullopt);
  // Left for the mount to report.
  EXPECT_EQ(MountPointProblem(B("backing"), B("missing")), std::nullopt);
}

TEST_F(MountPointProblemTest, TheBackingDirectoryItselfIsRefused) {
  auto problem = MountPointProblem(B("backing"), B("backing"));
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("is the backing directory itself"), std::string::npos) << *problem;
  EXPECT_TRUE(MountPointProblem(B("backing"), B("alias")));
}

TEST_F(MountPointProblemTest, AMountPointBelowTheBackingDirectoryIsRefusedAlsoThroughASymlink) {
  for (const std::string mountpoint : {"backing/sub", "alias/sub", "mnt/../backing/sub"}) {
    auto problem = MountPointProblem(B("backing"), B(mountpoint));
    ASSERT_TRUE(problem) << mountpoint;
    EXPECT_NE(problem->find("is inside the backing directory"), std::string::npos) << *problem;
    EXPECT_NE(problem->find(B("backing/sub")), std::string::npos) << *problem;  // the real path
  }
}

TEST_F(MountPointProblemTest, ABackingDirectoryBelowTheMountPointIsRefused) {
  auto problem = MountPointProblem(B("backing/sub"), B("backing"));
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("is inside the mount point"), std::string::npos) << *problem;
}

}  // namespace
}  // namespace hpfs
