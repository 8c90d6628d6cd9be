// SPDX-License-Identifier: Apache-2.0
// A mount holding many files: the daemon's descriptors stay within
// -o max_open_files however many files the kernel remembers.
//
// The files are written straight into the backing directory (a copy of one
// file made through the mount, with its own bytes each), so the test spends
// its time on the reads: about 5 s for 20,000 files on a tmpfs.
// HPFS_SCALE_FILES sets another number of files.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/mount/mount_harness.h"

namespace hpfs::mount_test {
namespace {

constexpr int kBound = 64;
// Descriptors the daemon holds whatever its files: standard streams,
// /dev/fuse, the backing directory, its trash and lock, the root inode, the
// log, and the threads' event descriptors.
constexpr int kSlack = 16;

int Files() {
  const char* env = std::getenv("HPFS_SCALE_FILES");
  return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : 20000;
}

size_t DescriptorsOf(pid_t pid) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

std::string Content(int i) { return "file " + std::to_string(i) + "\n" + std::string(static_cast<size_t>(i % 97), 'x'); }

std::string ReadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open failed: " + std::string(std::strerror(errno));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  if (n < 0) out = "read failed: " + std::string(std::strerror(errno));
  ::close(fd);
  return out;
}

std::string ReadFd(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  off_t offset = 0;
  while ((n = ::pread(fd, buf, sizeof buf, offset)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    offset += n;
  }
  return out;
}

class ScaleTest : public MountedTest {
 protected:
  // Makes `count` files d/f<i> in the backing directory, each a copy of a
  // template file created through the mount with its segment's bytes
  // replaced by Content(i).
  void MakeFiles(int count) {
    // On a tmpfs where the test may mount one: creating and removing tens of
    // thousands of entries on a busy disk takes minutes, and what is under
    // test is the daemon's descriptors, not the backing filesystem.
    tmpfs_ = std::make_unique<TmpfsMount>(backing_, "1g");
    if (!tmpfs_->ok()) tmpfs_.reset();
    ASSERT_NO_FATAL_FAILURE(Mount());
    auto ran = Run("mkdir d && printf x > template");
    ASSERT_EQ(ran.exit_code, 0) << ran.output;
    ASSERT_NO_FATAL_FAILURE(Unmount());
    std::string meta;
    std::string segment;
    for (const auto& entry : std::filesystem::directory_iterator(B("template"))) {
      const std::string name = entry.path().filename();
      if (name == "hpfile.meta") {
        std::ifstream in(entry.path());
        std::stringstream text;
        text << in.rdbuf();
        meta = text.str();
      } else {
        segment = name;
      }
    }
    ASSERT_FALSE(meta.empty());
    ASSERT_FALSE(segment.empty());
    for (int i = 0; i < count; ++i) {
      const std::string dir = B("d/f" + std::to_string(i));
      ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0) << dir;
      std::ofstream(dir + "/hpfile.meta") << meta;
      std::ofstream(dir + "/" + segment) << Content(i);
    }
  }

  void TearDown() override {
    MountedTest::TearDown();  // the daemon stops first
    tmpfs_.reset();
  }

  std::unique_ptr<TmpfsMount> tmpfs_;
};

TEST_F(ScaleTest, ReadingManyFilesKeepsTheDaemonsDescriptorsWithinTheBound) {
  const int files = Files();
  ASSERT_NO_FATAL_FAILURE(MakeFiles(files));
  ASSERT_NO_FATAL_FAILURE(Mount({"-o", "max_open_files=" + std::to_string(kBound)}));
  const pid_t pid = daemon_->pid();
  const size_t at_start = DescriptorsOf(pid);
  EXPECT_LE(at_start, static_cast<size_t>(kSlack));

  size_t most = 0;
  int wrong = 0;
  for (int i = 0; i < files; ++i) {
    if (ReadFile(M("d/f" + std::to_string(i))) != Content(i) && wrong++ < 5) {
      ADD_FAILURE() << "d/f" << i << " reads " << ReadFile(M("d/f" + std::to_string(i)));
    }
    if (i % 500 == 0) most = std::max(most, DescriptorsOf(pid));
  }
  most = std::max(most, DescriptorsOf(pid));
  EXPECT_EQ(wrong, 0);
  EXPECT_LE(most, static_cast<size_t>(kBound + kSlack)) << "descriptors at the start: " << at_start;

  // Open-unlinked files stay readable while the daemon keeps evicting the
  // rest; each one pinned holds its own few descriptors beyond the bound.
  constexpr int kUnlinked = 4;
  std::vector<int> open;
  for (int k = 0; k < kUnlinked; ++k) {
    const std::string path = M("d/f" + std::to_string(k));
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << path;
    open.push_back(fd);
    ASSERT_EQ(::unlink(path.c_str()), 0) << path;
  }
  for (int i = kUnlinked; i < std::min(files, 2000); ++i) {
    EXPECT_EQ(ReadFile(M("d/f" + std::to_string(i))), Content(i));
  }
  for (int k = 0; k < kUnlinked; ++k) EXPECT_EQ(ReadFd(open[static_cast<size_t>(k)]), Content(k)) << "f" << k;
  EXPECT_LE(DescriptorsOf(pid), static_cast<size_t>(kBound + kSlack + 4 * kUnlinked));
  for (int fd : open) ::close(fd);
  // Stat of every file, as `ls -l` makes it, stays within the bound too.
  auto listed = Run("ls -l d | wc -l");
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_EQ(std::stoi(listed.output), files - kUnlinked + 1);
  EXPECT_LE(DescriptorsOf(pid), static_cast<size_t>(kBound + kSlack));
}

// A fresh mount answers `stat` of a file it has not opened from the backing
// directory alone (fs/closed_file_stat.h): after every kind of change, what
// it says is what the backing store holds.
TEST_F(ScaleTest, StatOfAFileNotYetOpenedIsWhatItsBackingDirectoryHolds) {
  ASSERT_NO_FATAL_FAILURE(Mount({"-o", "segment_size=4K"}));
  auto made = Run(
      "head -c 10000 /dev/zero | tr '\\0' a > grown\n"
      "head -c 20000 /dev/zero | tr '\\0' b > punched\n"
      "fallocate -p -o 0 -l 9000 punched\n"
      "head -c 12000 /dev/zero | tr '\\0' c > cut\n"
      "truncate -s 5000 cut\n"
      "printf x > sparse\n"
      "truncate -s 100000 sparse\n"
      "printf y > moded\n"
      "chmod 600 moded\n"
      ": > empty\n");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  // The daemon finishes its deletions before it exits.
  ASSERT_NO_FATAL_FAILURE(Unmount());

  struct Want {
    std::string name;
    off_t size;
    mode_t mode;
  };
  const std::vector<Want> wants = {{"grown", 10000, 0}, {"punched", 20000, 0}, {"cut", 5000, 0},
                                   {"sparse", 100000, 0}, {"moded", 1, 0600}, {"empty", 0, 0}};
  ASSERT_NO_FATAL_FAILURE(Mount({"-o", "segment_size=4K"}));
  for (const Want& want : wants) {
    SCOPED_TRACE(want.name);
    blkcnt_t blocks = 0;
    timespec newest{};
    std::string tail;
    for (const auto& entry : std::filesystem::directory_iterator(B(want.name))) {
      const std::string name = entry.path().filename();
      if (!name.ends_with(".seg")) continue;
      struct stat seg;
      ASSERT_EQ(::stat(entry.path().c_str(), &seg), 0);
      blocks += seg.st_blocks;
      if (name > tail) {
        tail = name;
        newest = seg.st_mtim;
      }
    }
    struct stat st;
    ASSERT_EQ(::stat(M(want.name).c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_size, want.size);
    EXPECT_EQ(st.st_blocks, blocks);
    if (want.mode != 0) {
      EXPECT_EQ(st.st_mode & 07777, want.mode);
    }
    if (!tail.empty()) {
      EXPECT_EQ(st.st_mtim.tv_sec, newest.tv_sec);
      EXPECT_EQ(st.st_mtim.tv_nsec, newest.tv_nsec);
    }
    EXPECT_EQ(st.st_nlink, 1u);
  }
  // And the files read as they were written.
  auto read = Run("test \"$(tr -d a < grown | wc -c)\" = 0 && test \"$(wc -c < cut)\" = 5000 && "
                  "test \"$(cat moded)\" = y && test \"$(wc -c < sparse)\" = 100000");
  EXPECT_EQ(read.exit_code, 0) << read.output;
}

}  // namespace
}  // namespace hpfs::mount_test
