// Write-back mode (-o writeback) under failure: a SIGKILL of the daemon in
// the middle of a stream of log lines, and a backing filesystem that fills
// up. What the mode promises: the file holds exactly a prefix of what was
// written, every fsynced byte is there, lines older than the commit interval
// (with generous slack) are there, and errors reach the writer at fsync.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/core/test_util.h"
#include "tests/drills/drill_harness.h"

namespace hpfs::drills {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

class WritebackDrill : public DrillTest {
 protected:
  std::string ReadBack(const std::string& name) {
    std::ifstream in(M(name), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
};

TEST_F(WritebackDrill, SigkillKeepsAPrefixWithEveryFsyncedLineAndEveryLineOlderThanTheCommit) {
  Mount({"-o", "writeback,commit=1,segment_size=1M"});
  const int fd = ::open(M("app.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  // What was written, with the time each line's write returned.
  std::string written;
  std::vector<std::pair<size_t, Clock::time_point>> line_ends;
  size_t fsynced = 0;
  const auto start = Clock::now();
  for (uint64_t i = 0; Clock::now() - start < seconds(6); ++i) {
    const std::string line = "line " + std::to_string(i) + " " + std::string(i % 97, 'x') + "\n";
    ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size())) << std::strerror(errno);
    written += line;
    line_ends.emplace_back(written.size(), Clock::now());
    if (i % 5000 == 4999) {
      ASSERT_EQ(::fsync(fd), 0) << std::strerror(errno);
      fsynced = written.size();
    }
  }
  const auto killed_at = Clock::now();
  KillDaemon();
  ::close(fd);  // its flush fails on the dead mount; the bytes are the kernel's to drop
  Mount({"-o", "writeback,commit=1,segment_size=1M"});
  const std::string stored = ReadBack("app.log");

  ASSERT_LE(stored.size(), written.size());
  // Exactly a prefix (it may end inside the last line), so no zeros, no gap.
  const size_t mismatch =
      std::mismatch(stored.begin(), stored.end(), written.begin()).first - stored.begin();
  EXPECT_EQ(mismatch, stored.size()) << "the stored file differs from what was written at byte " << mismatch;
  EXPECT_GE(stored.size(), fsynced) << "an fsynced line is missing";
  // The commit interval is 1 s; the slack covers a busy machine.
  const auto old_enough = killed_at - seconds(4);
  size_t must_have = 0;
  for (const auto& [end, when] : line_ends) {
    if (when <= old_enough) must_have = end;
  }
  EXPECT_GT(must_have, 0u) << "the writer ran too briefly to check the commit interval";
  EXPECT_GE(stored.size(), must_have) << "a line written more than 4 s before the kill is missing ("
                                      << written.size() - stored.size() << " bytes lost of " << written.size()
                                      << ")";
}

TEST_F(WritebackDrill, EnospcReachesFsyncAndLosesNothingBeforeIt) {
  mount_test::TmpfsMount tmpfs(backing_, "4m");
  ASSERT_TRUE(tmpfs.ok()) << tmpfs.error();
  Mount({"-o", "writeback,segment_size=256K"});
  constexpr size_t kChunk = 64 << 10;
  int fd = ::open(M("f").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  uint64_t synced = 0;
  int fsync_error = 0;
  for (int i = 0; i < 200 && fsync_error == 0; ++i) {
    const ssize_t n = AppendPattern(fd, synced, kChunk);
    ASSERT_EQ(n, static_cast<ssize_t>(kChunk)) << "the page cache takes the append: " << std::strerror(errno);
    if (::fsync(fd) == 0) {
      synced += kChunk;
    } else {
      fsync_error = errno;
    }
  }
  EXPECT_EQ(fsync_error, ENOSPC);
  ::close(fd);

  // Every fsynced byte is there and right; nothing of the failed write shows.
  auto stat = StatOf("f");
  EXPECT_EQ(stat["mode"], "writeback");
  EXPECT_EQ(stat["held_bytes"], "0");
  const uint64_t stored = std::stoull(stat["size"]);
  EXPECT_GE(stored, synced);
  EXPECT_LT(stored, synced + kChunk);
  const int reader = ::open(M("f").c_str(), O_RDONLY);
  ASSERT_GE(reader, 0);
  EXPECT_EQ(VerifyPattern(reader, 0, stored, 0), std::nullopt);
  ::close(reader);

  // Space back (the head punched), the sizes brought together by a truncate
  // to the stored end: appends go on.
  const auto punch = Run("fallocate --punch-hole --keep-size -o 0 -l " + std::to_string(stored / 2) +
                         " f && truncate -s " + std::to_string(stored) + " f");
  ASSERT_EQ(punch.exit_code, 0) << punch.output;
  fd = ::open(M("f").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(AppendPattern(fd, stored, 1000), 1000);
  EXPECT_EQ(::fsync(fd), 0) << std::strerror(errno);
  ::close(fd);
  EXPECT_EQ(std::stoull(StatOf("f")["size"]), stored + 1000);
  Unmount();
}

}  // namespace
}  // namespace hpfs::drills
