// SPDX-License-Identifier: Apache-2.0
#include "fs/inode_table.h"

#include <gtest/gtest.h>

namespace hpfs {
namespace {

std::shared_ptr<Inode> MakeInode(ino_t ino) {
  return std::make_shared<Inode>(Kind::kDirectory, 1, ino, hpfile::Fd());
}

TEST(InodeTableTest, SameBackingEntryGetsTheSameIdAndAnotherLookup) {
  InodeTable table;
  auto a = table.Insert(MakeInode(10));
  auto again = table.Insert(MakeInode(10));
  EXPECT_EQ(a, again);
  EXPECT_EQ(table.Lookups(a->id), 2u);
  auto b = table.Insert(MakeInode(11));
  EXPECT_NE(b->id, a->id);
}

TEST(InodeTableTest, ForgetRemovesOnlyAtZero) {
  InodeTable table;
  auto a = table.Insert(MakeInode(10));
  table.AddLookup(*a);
  EXPECT_EQ(table.Forget(a->id, 1), nullptr);
  EXPECT_EQ(table.Get(a->id), a);
  EXPECT_EQ(table.Forget(a->id, 1), a);
  EXPECT_EQ(table.Get(a->id), nullptr);
  EXPECT_EQ(table.FindByBacking(1, 10), nullptr);
}

TEST(InodeTableTest, ForgetOfMoreThanKnownClampsAndRemoves) {
  InodeTable table;
  auto a = table.Insert(MakeInode(10));
  EXPECT_EQ(table.Forget(a->id, 100), a);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.Forget(a->id, 1), nullptr);
}

TEST(InodeTableTest, UnboundInodeKeepsItsIdButANewEntryGetsANewOne) {
  InodeTable table;
  auto old_inode = table.Insert(MakeInode(10));
  table.Unbind(*old_inode);
  EXPECT_EQ(table.Get(old_inode->id), old_inode);
  EXPECT_EQ(table.AcquireByBacking(1, 10), nullptr);
  auto reused = table.Insert(MakeInode(10));
  EXPECT_NE(reused->id, old_inode->id);
  // Forgetting the old inode must not detach the new one.
  table.Forget(old_inode->id, 1);
  EXPECT_EQ(table.FindByBacking(1, 10), reused);
}

TEST(InodeTableTest, IdsAreNeverReused) {
  InodeTable table;
  auto a = table.Insert(MakeInode(10));
  const InodeId first = a->id;
  table.Forget(first, 1);
  auto b = table.Insert(MakeInode(10));
  EXPECT_NE(b->id, first);
}

TEST(InodeTableTest, RootTakesTheForcedId) {
  InodeTable table;
  auto root = table.Insert(MakeInode(2), kRootInode);
  EXPECT_EQ(root->id, kRootInode);
  EXPECT_NE(table.Insert(MakeInode(3))->id, kRootInode);
}

}  // namespace
}  // namespace hpfs
