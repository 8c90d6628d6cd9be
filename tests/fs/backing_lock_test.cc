// SPDX-License-Identifier: Apache-2.0
#include "fs/backing_lock.h"

#include <gtest/gtest.h>

#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

TEST(BackingLockTest, SecondLockOnSameDirectoryFailsAtOnce) {
  testing::TempDir dir;
  auto first = BackingLock::Acquire(dir.path());
  ASSERT_TRUE(first) << first.error().message();
  auto second = BackingLock::Acquire(dir.path());
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().value(), EWOULDBLOCK);
}

TEST(BackingLockTest, LockIsFreedWhenItsHolderGoes) {
  testing::TempDir dir;
  {
    auto first = BackingLock::Acquire(dir.path());
    ASSERT_TRUE(first);
  }
  EXPECT_TRUE(BackingLock::Acquire(dir.path()));
}

TEST(BackingLockTest, MissingDirectoryIsEnoent) {
  auto lock = BackingLock::Acquire("/nonexistent/hpfs/backing");
  ASSERT_FALSE(lock);
  EXPECT_EQ(lock.error().value(), ENOENT);
}

}  // namespace
}  // namespace hpfs
