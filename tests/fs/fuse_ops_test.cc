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

}  // namespace
}  // namespace hpfs
