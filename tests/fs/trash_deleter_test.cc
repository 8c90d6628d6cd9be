// SPDX-License-Identifier: Apache-2.0
#include "fs/trash_deleter.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

using testing::ListBacking;
using testing::TempDir;

class TrashDeleterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trash_fd_ = ::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(trash_fd_, 0);
  }
  void TearDown() override { ::close(trash_fd_); }

  // A trash entry shaped like a deleted HPFile: a directory of `files` files.
  std::string MakeEntry(const std::string& name, int files = 3) {
    const std::string path = dir_.path() + "/" + name;
    std::filesystem::create_directories(path + "/sub");
    for (int i = 0; i < files; ++i) std::ofstream(path + "/" + std::to_string(i) + ".seg") << "bytes";
    return name;
  }

  TempDir dir_;
  int trash_fd_ = -1;
};

TEST_F(TrashDeleterTest, QueuedEntriesStayUntilStarted) {
  TrashDeleter deleter(trash_fd_);
  deleter.Enqueue(MakeEntry("a"));
  deleter.Enqueue(MakeEntry("b"));
  EXPECT_EQ(deleter.Pending(), 2u);
  EXPECT_EQ(ListBacking(dir_.path()), (std::vector<std::string>{"a", "b"}));
  deleter.Start();
  deleter.Wait();
  EXPECT_EQ(deleter.Pending(), 0u);
  EXPECT_TRUE(ListBacking(dir_.path()).empty());
}

TEST_F(TrashDeleterTest, WaitDeletesOnTheCallingThreadWhenNotStarted) {
  TrashDeleter deleter(trash_fd_);
  deleter.Enqueue(MakeEntry("a"));
  deleter.Wait();
  EXPECT_TRUE(ListBacking(dir_.path()).empty());
  EXPECT_EQ(deleter.Pending(), 0u);
}

TEST_F(TrashDeleterTest, UnstartedDeleterLeavesItsQueueForTheNextMount) {
  {
    TrashDeleter deleter(trash_fd_);
    deleter.Enqueue(MakeEntry("a"));
  }
  EXPECT_EQ(ListBacking(dir_.path()), (std::vector<std::string>{"a"}));
}

TEST_F(TrashDeleterTest, DestructionFinishesEverythingQueued) {
  {
    TrashDeleter deleter(trash_fd_);
    deleter.Start();
    for (int i = 0; i < 40; ++i) deleter.Enqueue(MakeEntry("e" + std::to_string(i), 5));
  }
  EXPECT_TRUE(ListBacking(dir_.path()).empty());
}

TEST_F(TrashDeleterTest, EntriesFromManyThreadsAreAllDeleted) {
  TrashDeleter deleter(trash_fd_);
  deleter.Start();
  std::vector<std::string> names;
  for (int i = 0; i < 64; ++i) names.push_back(MakeEntry("e" + std::to_string(i)));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < 64; i += 4) deleter.Enqueue(names[i]);
    });
  }
  for (auto& t : threads) t.join();
  deleter.Wait();
  EXPECT_TRUE(ListBacking(dir_.path()).empty());
}

TEST_F(TrashDeleterTest, MissingEntryCountsAsDone) {
  TrashDeleter deleter(trash_fd_);
  deleter.Start();
  deleter.Enqueue("never-existed");
  deleter.Wait();
  EXPECT_EQ(deleter.Pending(), 0u);
}

}  // namespace
}  // namespace hpfs
