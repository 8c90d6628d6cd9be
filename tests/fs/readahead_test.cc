// SPDX-License-Identifier: Apache-2.0
#include "fs/readahead.h"

#include <gtest/gtest.h>

namespace hpfs {
namespace {

constexpr const char* kMountinfo =
    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "40 22 0:45 / /tmp/a\\040b rw,nosuid shared:20 - fuse.hpfs /var/b rw,user_id=0\n"
    "41 22 0:46 / /mnt/hpfs rw,nosuid shared:21 - fuse.hpfs /var/c rw,user_id=0\n"
    "42 41 0:47 / /mnt/hpfs rw,nosuid shared:22 - fuse.hpfs /var/d rw,user_id=0\n";

TEST(MountDeviceTest, FindsTheMountByItsPath) {
  EXPECT_EQ(MountDevice(kMountinfo, "/"), "254:0");
}

TEST(MountDeviceTest, UndoesTheOctalEscapesOfThePath) {
  EXPECT_EQ(MountDevice(kMountinfo, "/tmp/a b"), "0:45");
  EXPECT_EQ(MountDevice(kMountinfo, "/tmp/a\\040b"), std::nullopt);
}

// A mount over another at the same point hides it: the new one is the daemon's.
TEST(MountDeviceTest, TakesTheLastMountAtThePoint) {
  EXPECT_EQ(MountDevice(kMountinfo, "/mnt/hpfs"), "0:47");
}

TEST(MountDeviceTest, NothingForAPathThatIsNoMountPoint) {
  EXPECT_EQ(MountDevice(kMountinfo, "/mnt"), std::nullopt);
  EXPECT_EQ(MountDevice("", "/"), std::nullopt);
  EXPECT_EQ(MountDevice("garbage\n", "/"), std::nullopt);
}

}  // namespace
}  // namespace hpfs
