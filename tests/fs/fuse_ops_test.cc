// SPDX-License-Identifier: Apache-2.0
#include "fs/fuse_ops.h"

#include <gtest/gtest.h>

namespace hpfs {
namespace {

// libfuse answers ENOSYS for an unset callback, which is what makes the
// kernel stop asking for xattrs (DESIGN.md section 4).
TEST(LowlevelOpsTest, XattrCallbacksAreUnsetWithoutTheOption) {
  const fuse_lowlevel_ops ops = MakeLowlevelOps(/*xattr=*/false);
  EXPECT_EQ(ops.getxattr, nullptr);
  EXPECT_EQ(ops.setxattr, nullptr);
  EXPECT_EQ(ops.listxattr, nullptr);
  EXPECT_EQ(ops.removexattr, nullptr);
}

TEST(LowlevelOpsTest, XattrOptionSetsAllFourCallbacks) {
  const fuse_lowlevel_ops ops = MakeLowlevelOps(/*xattr=*/true);
  EXPECT_NE(ops.getxattr, nullptr);
  EXPECT_NE(ops.setxattr, nullptr);
  EXPECT_NE(ops.listxattr, nullptr);
  EXPECT_NE(ops.removexattr, nullptr);
}

// Unset fallocate would answer ENOSYS, which disables fallocate for the whole
// mount; every operation the semantics table names has a callback.
TEST(LowlevelOpsTest, EveryOperationOfTheSemanticsTableHasACallback) {
  const fuse_lowlevel_ops ops = MakeLowlevelOps(false);
  EXPECT_NE(ops.fallocate, nullptr);
  EXPECT_NE(ops.lseek, nullptr);
  EXPECT_NE(ops.ioctl, nullptr);
  EXPECT_NE(ops.link, nullptr);
  EXPECT_NE(ops.mknod, nullptr);
  EXPECT_NE(ops.readdirplus, nullptr);
  EXPECT_NE(ops.forget_multi, nullptr);
  EXPECT_NE(ops.fsyncdir, nullptr);
  EXPECT_NE(ops.statfs, nullptr);
  EXPECT_NE(ops.create, nullptr);
}

TEST(DelayedWriteTest, ParsesOffsetColonMilliseconds) {
  const auto parsed = ParseDelayedWrite("1048576:2500");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->first, 1048576u);
  EXPECT_EQ(parsed->second, std::chrono::milliseconds(2500));
}

TEST(DelayedWriteTest, RefusesAnythingElse) {
  for (const char* bad : {"", "5", ":5", "5:", "-1:5", "5:x", "5:5ms", "0x10:5", "1:2:3"}) {
    EXPECT_FALSE(ParseDelayedWrite(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace hpfs
