// SPDX-License-Identifier: Apache-2.0
// Write-back mode (-o writeback) under failure: a SIGKILL of the daemon in
// the middle of a stream of log lines, and a backing filesystem that fills
// up. What the mode promises: the file holds exactly a prefix of what was
// written, every fsynced byte is there, lines older than the commit interval
// (with generous slack) are there, and errors reach the writer at fsync.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <random>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
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

// Aborts the FUSE connection of the mount at `mountpoint`, so that every
// process waiting in it returns (with ENOTCONN) instead of staying in D state.
// Mounts fusectl first where nothing did. Returns what went wrong, if anything.
std::optional<std::string> AbortConnection(const std::string& mountpoint, dev_t dev) {
  const std::string connections = "/sys/fs/fuse/connections";
  const std::string abort_file = connections + "/" + std::to_string(minor(dev)) + "/abort";
  if (::access(abort_file.c_str(), W_OK) != 0 && ::mount("none", connections.c_str(), "fusectl", 0, nullptr) != 0) {
    return "mounting fusectl: " + std::string(std::strerror(errno));
  }
  std::ofstream abort_out(abort_file);
  abort_out << "1\n";
  abort_out.flush();
  if (!abort_out) return "cannot write " + abort_file + " (mount " + mountpoint + ")";
  return std::nullopt;
}

// A logger's loop, in a child process: 400,000 appends of 128 bytes with
// write(2) on one O_APPEND descriptor, then close. In write-back mode the
// kernel writes the pages back in several passes at once (its own flusher,
// the daemon's commit, the close), and a page can overtake the ones in front
// of it; the daemon answers such a page at once, since the kernel may wait
// for that answer before it sends the pages in front. A hang fails the test
// and aborts the connection, so no process is left in D state.
TEST_F(WritebackDrill, AppendLoopOfSmallWritesFinishesAndStoresEveryByte) {
  Mount({"-o", "writeback,commit=1,segment_size=1M"});
  struct stat mount_stat;
  ASSERT_EQ(::stat(mnt_.c_str(), &mount_stat), 0) << std::strerror(errno);
  constexpr long kCount = 400000;
  constexpr size_t kSize = 128;
  const std::string path = M("loop.log");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    // Only system calls here: the parent has threads.
    char line[kSize];
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) ::_exit(10);
    for (long i = 0; i < kCount; ++i) {
      std::memset(line, 'a' + static_cast<int>(i % 26), kSize - 1);
      line[kSize - 1] = '\n';
      if (::write(fd, line, kSize) != static_cast<ssize_t>(kSize)) ::_exit(11);
    }
    ::_exit(::close(fd) == 0 ? 0 : 12);
  }
  const auto deadline = Clock::now() + seconds(120);
  int status = 0;
  pid_t reaped = 0;
  while ((reaped = ::waitpid(child, &status, WNOHANG)) == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (reaped == 0) {
    const auto aborted = AbortConnection(mnt_, mount_stat.st_dev);
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    KillDaemon();
    FAIL() << "the append loop hung in write-back mode (connection aborted"
           << (aborted ? ": " + *aborted : std::string()) << ")";
  }
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "append loop status " << status;
  std::string expected;
  expected.reserve(kCount * kSize);
  for (long i = 0; i < kCount; ++i) {
    expected.append(kSize - 1, static_cast<char>('a' + i % 26));
    expected.push_back('\n');
  }
  const std::string stored = ReadBack("loop.log");
  ASSERT_EQ(stored.size(), expected.size());
  const size_t mismatch = std::mismatch(stored.begin(), stored.end(), expected.begin()).first - stored.begin();
  EXPECT_EQ(mismatch, stored.size()) << "the stored file differs from what was written at byte " << mismatch;
}

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

// A clean stop (SIGTERM, what `systemctl stop` sends) has the kernel write
// back every page it holds before the daemon unmounts: nothing acknowledged
// is lost. commit=0 leaves write-back to the kernel, which would not send
// these pages for seconds.
TEST_F(WritebackDrill, SigtermWritesBackEveryAcknowledgedLineBeforeTheDaemonExits) {
  Mount({"-o", "writeback,commit=0,segment_size=1M"});
  const int fd = ::open(M("app.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  std::string written;
  for (int i = 0; i < 20000; ++i) {
    const std::string line = "line " + std::to_string(i) + " " + std::string(i % 61, 'y') + "\n";
    ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size())) << std::strerror(errno);
    written += line;
  }
  ASSERT_EQ(::kill(daemon_->pid(), SIGTERM), 0);
  const int status = daemon_->WaitExit(seconds(60));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  ::close(fd);
  daemon_->Stop();
  Mount({"-o", "writeback,commit=0,segment_size=1M"});
  const std::string stored = ReadBack("app.log");
  EXPECT_EQ(stored.size(), written.size()) << written.size() - std::min(written.size(), stored.size())
                                           << " acknowledged bytes lost";
  EXPECT_TRUE(stored == written) << "the stored file is not what was written";
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

// A SIGKILL while the commit's syncfs waits: a close writes the file's pages
// back holding the inode (write_inode_now) and waits for a WRITE the test
// hook holds up in its handler; the commit's syncfs waits for the kernel's
// flusher, which waits for that inode. syncfs sleeps unkillably, so in the
// daemon's own process it kept the dead daemon and its /dev/fuse
// descriptors around, and with them the mount and the writer, for good.
TEST_F(WritebackDrill, SigkillDuringACommitEndsTheDaemon) {
  ASSERT_EQ(::setenv("HPFS_TEST_DELAY_WRITE", "0:15000", 1), 0);
  Mount({"-o", "writeback,commit=1,segment_size=1M"});
  ::unsetenv("HPFS_TEST_DELAY_WRITE");
  struct stat mount_stat;
  ASSERT_EQ(::stat(mnt_.c_str(), &mount_stat), 0) << std::strerror(errno);
  const int fd = ::open(M("f").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(AppendPattern(fd, 0, 65536), 65536) << std::strerror(errno);
  std::thread closer([fd] { ::close(fd); });  // fails on the dead mount
  ASSERT_TRUE(Eventually([&] { return daemon_->Log().find("delaying the WRITE at offset 0") != std::string::npos; },
                         seconds(10)))
      << daemon_->Log();
  std::this_thread::sleep_for(seconds(3));  // commits meanwhile
  ASSERT_EQ(::kill(daemon_->pid(), SIGKILL), 0);
  const int status = daemon_->WaitExit(seconds(5));
  std::optional<std::string> aborted;
  const bool died = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  if (!died) aborted = AbortConnection(mnt_, mount_stat.st_dev);
  closer.join();
  if (!died) daemon_->WaitExit(seconds(20));
  daemon_->Stop();
  EXPECT_TRUE(died) << "the daemon did not die (status " << status << "); connection aborted"
                    << (aborted ? ": " + *aborted : std::string());
  EXPECT_FALSE(mount_test::IsMountPoint(mnt_));
}

// Write-back sends the pages of one file in several requests that the
// daemon's threads may handle in any order. The test hook holds up the first
// one (HPFS_TEST_DELAY_WRITE): the later ones arrive first and wait in the
// reorder buffer, counted in held_bytes, until it comes; the file then
// ends whole, with no zeros where the late bytes belong.
TEST_F(WritebackDrill, WritesThatOvertakeAnEarlierOneAreHeldUntilItComes) {
  ASSERT_EQ(::setenv("HPFS_TEST_DELAY_WRITE", "0:3000", 1), 0);
  Mount({"-o", "writeback,commit=0,segment_size=1M"});
  ::unsetenv("HPFS_TEST_DELAY_WRITE");
  constexpr size_t kSize = 4 << 20;
  const int fd = ::open(M("f").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(AppendPattern(fd, 0, kSize), static_cast<ssize_t>(kSize)) << std::strerror(errno);
  int fsync_rc = -1;
  std::thread syncer([&] { fsync_rc = ::fsync(fd); });
  uint64_t most_held = 0;
  const bool held = Eventually([&] {
    const auto stat = StatOf("f");
    const auto it = stat.find("held_bytes");
    if (it != stat.end()) most_held = std::max<uint64_t>(most_held, std::stoull(it->second));
    return most_held > 0;
  }, seconds(3));
  syncer.join();
  EXPECT_TRUE(held) << "no write was held while the first one was delayed";
  EXPECT_EQ(fsync_rc, 0) << std::strerror(errno);
  ASSERT_EQ(::close(fd), 0) << std::strerror(errno);
  EXPECT_NE(daemon_->Log().find("delaying the WRITE at offset 0"), std::string::npos) << daemon_->Log();

  auto stat = StatOf("f");
  EXPECT_EQ(stat["held_bytes"], "0");
  EXPECT_EQ(stat["size"], std::to_string(kSize));
  const int reader = ::open(M("f").c_str(), O_RDONLY);
  ASSERT_GE(reader, 0);
  EXPECT_EQ(VerifyPattern(reader, 0, kSize, 0), std::nullopt);
  ::close(reader);
  Unmount();
  // And as stored: a fresh mount reads the same.
  Mount({"-o", "writeback,segment_size=1M"});
  const int again = ::open(M("f").c_str(), O_RDONLY);
  ASSERT_GE(again, 0);
  uint64_t checked = 0;
  EXPECT_EQ(VerifyPattern(again, 0, kSize, 0, &checked), std::nullopt);
  EXPECT_EQ(checked, kSize);
  ::close(again);
}

// The kernel lets a FUSE mount's pages be dirty up to its bdi's cap, and
// its write-back passes can send the later of those pages first. With the
// cap raised far past the reorder buffer's memory (64 MiB) and the first
// WRITE held up, 160 MiB of appends then fsync: the early pages go to the
// spool, and the fsync succeeds with every byte where it belongs. Root
// only (the bdi is root's); HPFS_DRILL_SPOOL_MIB sets the size.
TEST_F(WritebackDrill, AppendsFarPastTheReorderMemoryWithARaisedDirtyCapSpoolAndLandWhole) {
  if (::geteuid() != 0) GTEST_SKIP() << "the bdi is root's";
  const char* mib_env = std::getenv("HPFS_DRILL_SPOOL_MIB");
  const size_t size = static_cast<size_t>(mib_env ? std::stoull(mib_env) : 160) << 20;
  ASSERT_EQ(::setenv("HPFS_TEST_DELAY_WRITE", "0:5000", 1), 0);
  Mount({"-o", "writeback,commit=0,segment_size=16M"});
  ::unsetenv("HPFS_TEST_DELAY_WRITE");
  struct stat st {};
  ASSERT_EQ(::stat(mnt_.c_str(), &st), 0) << std::strerror(errno);
  const std::string max_bytes = "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                                std::to_string(minor(st.st_dev)) + "/max_bytes";
  if (::access(max_bytes.c_str(), W_OK) != 0) GTEST_SKIP() << "no " << max_bytes << " on this kernel";
  {
    std::ofstream cap(max_bytes);
    cap << (size + (size_t{64} << 20)) << "\n";
    cap.flush();
    ASSERT_TRUE(cap) << "cannot raise " << max_bytes;
  }
  const int fd = ::open(M("f").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  // (Watching spooled_bytes meanwhile cannot work: `hpfsctl stat` closes
  // the file, and the kernel's FLUSH first waits for the write-back in
  // flight, the delayed request too. The daemon's log says when it spools.)
  constexpr size_t kChunk = 1 << 20;
  for (size_t at = 0; at < size; at += kChunk) {
    ASSERT_EQ(AppendPattern(fd, at, kChunk), static_cast<ssize_t>(kChunk)) << at << ": " << std::strerror(errno);
  }
  EXPECT_EQ(::fsync(fd), 0) << std::strerror(errno);
  EXPECT_EQ(::close(fd), 0) << std::strerror(errno);
  EXPECT_NE(daemon_->Log().find("held bytes go to a spool file"), std::string::npos)
      << "nothing was spooled: the drill did not reach past the memory\n" << daemon_->Log();
  auto stat = StatOf("f");
  EXPECT_EQ(stat["held_bytes"], "0");
  EXPECT_EQ(stat["spooled_bytes"], "0");
  EXPECT_EQ(stat["spool_overflows"], "0");
  EXPECT_EQ(stat["size"], std::to_string(size));
  EXPECT_EQ(daemon_->Log().find("EIO"), std::string::npos) << daemon_->Log();
  const int reader = ::open(M("f").c_str(), O_RDONLY);
  ASSERT_GE(reader, 0);
  uint64_t checked = 0;
  EXPECT_EQ(VerifyPattern(reader, 0, size, 0, &checked), std::nullopt);
  EXPECT_EQ(checked, size);
  ::close(reader);
  size_t trash_entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(B(".hpfs-trash"))) {
    (void)entry;
    ++trash_entries;
  }
  EXPECT_EQ(trash_entries, 0u) << "a spool file has a name";
  Unmount();
}

// A direct write at an offset an appender's dirty pages already cover (the
// writer took the size before the appender wrote). The kernel sends the
// dirty pages in the direct write's range first, ahead of the pages in
// front of them: those wait in the reorder buffer, and the direct write,
// over them, fails with EPERM at write(2). Nothing of the appender's is
// refused later: its next appends, fsync and close succeed, and the file
// holds exactly the appended bytes.
TEST_F(WritebackDrill, DirectWriteOverAnAppendersDirtyPagesFailsAndTheAppenderLosesNothing) {
  Mount({"-o", "writeback,commit=0,segment_size=1M"});
  const int appender = ::open(M("f").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(appender, 0) << std::strerror(errno);
  const int direct = ::open(M("f").c_str(), O_WRONLY);
  ASSERT_GE(direct, 0) << std::strerror(errno);
  // Pages 0 and 1 dirty, nothing sent yet (no commits).
  ASSERT_EQ(AppendPattern(appender, 0, 6000), 6000) << std::strerror(errno);
  const std::string stray(2000, 'Z');  // past the appender's end too
  EXPECT_EQ(::pwrite(direct, stray.data(), stray.size(), 5000), -1);
  EXPECT_EQ(errno, EPERM);
  ASSERT_EQ(AppendPattern(appender, 6000, 3000), 3000) << std::strerror(errno);
  EXPECT_EQ(::fsync(appender), 0) << std::strerror(errno);
  ASSERT_EQ(AppendPattern(appender, 9000, 1000), 1000) << std::strerror(errno);
  EXPECT_EQ(::close(appender), 0) << std::strerror(errno);
  EXPECT_EQ(::close(direct), 0) << std::strerror(errno);
  auto stat = StatOf("f");
  EXPECT_EQ(stat["held_bytes"], "0");
  EXPECT_EQ(stat["size"], "10000");
  const int reader = ::open(M("f").c_str(), O_RDONLY);
  ASSERT_GE(reader, 0);
  uint64_t checked = 0;
  EXPECT_EQ(VerifyPattern(reader, 0, 10000, 0, &checked), std::nullopt);
  EXPECT_EQ(checked, 10000u);
  ::close(reader);
  EXPECT_EQ(daemon_->Log().find("writes past the end of this file fail"), std::string::npos) << daemon_->Log();
}

// Seeded model-based torture through a write-back mount: buffered O_APPEND
// writes of 1 B to 64 KiB (from this process and from child processes),
// direct writes at and below the end, reads through a cached and a direct
// handle, fsync, truncate, head punch, close/reopen and remount, each step
// checked against an in-memory model. HPFS_TORTURE_SEED picks the run,
// HPFS_TORTURE_OPS its length (default 2000).
class WritebackTorture : public WritebackDrill {
 protected:
  void OpenHandles() {
    appender_ = ::open(M("t").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    direct_ = ::open(M("t").c_str(), O_WRONLY);
    cached_reader_ = ::open(M("t").c_str(), O_RDONLY);
    direct_reader_ = ::open(M("t").c_str(), O_RDWR);  // read-write: a direct handle
    ASSERT_TRUE(appender_ >= 0 && direct_ >= 0 && cached_reader_ >= 0 && direct_reader_ >= 0)
        << std::strerror(errno);
  }
  void CloseHandles() {
    for (int* fd : {&appender_, &direct_, &cached_reader_, &direct_reader_}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }
  void TearDown() override {
    CloseHandles();
    WritebackDrill::TearDown();
  }
  // The model's bytes of [offset, offset + length), clipped at its end.
  std::string Expected(uint64_t offset, uint64_t length) const {
    if (offset >= model_.size()) return "";
    std::string out = model_.substr(offset, length);
    for (uint64_t i = offset; i < std::min<uint64_t>(head_, offset + out.size()); ++i) out[i - offset] = '\0';
    return out;
  }

  std::string model_;
  uint64_t head_ = 0;
  int appender_ = -1, direct_ = -1, cached_reader_ = -1, direct_reader_ = -1;
};

TEST_F(WritebackTorture, EveryStepMatchesTheModel) {
  const char* seed_env = std::getenv("HPFS_TORTURE_SEED");
  const char* ops_env = std::getenv("HPFS_TORTURE_OPS");
  const uint64_t seed = seed_env ? std::stoull(seed_env) : 20261203;
  const int ops = ops_env ? std::stoi(ops_env) : 2000;
  SCOPED_TRACE("HPFS_TORTURE_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto pick = [&rng](uint64_t n) { return n == 0 ? 0 : rng() % n; };
  const std::vector<std::string> options = {"-o", "writeback,commit=1,segment_size=64K"};
  Mount(options);
  OpenHandles();
  uint64_t next_byte = 0;
  auto bytes = [&](size_t n) {
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>('a' + (next_byte++ % 26));
    return out;
  };
  for (int step = 0; step < ops; ++step) {
    const uint64_t op = pick(100);
    std::string what;
    if (op < 40) {  // a buffered append, mostly short
      const size_t n = pick(4) == 0 ? 1 + pick(64 << 10) : 1 + pick(200);
      const std::string data = bytes(n);
      what = "append " + std::to_string(n);
      ASSERT_EQ(::write(appender_, data.data(), n), static_cast<ssize_t>(n)) << what << ": " << std::strerror(errno);
      model_ += data;
    } else if (op < 44) {  // an append from another process
      const std::string data = bytes(1 + pick(3000));
      what = "child append " + std::to_string(data.size());
      const pid_t child = ::fork();
      ASSERT_GE(child, 0);
      if (child == 0) {
        const int fd = ::open(M("t").c_str(), O_WRONLY | O_APPEND);
        const bool ok = fd >= 0 && ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                        ::close(fd) == 0;
        ::_exit(ok ? 0 : 1);
      }
      int status = 0;
      ASSERT_EQ(::waitpid(child, &status, 0), child);
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << what;
      model_ += data;
    } else if (op < 50) {  // a direct write at the end
      const std::string data = bytes(1 + pick(5000));
      what = "direct write at end " + std::to_string(data.size());
      ASSERT_EQ(::pwrite(direct_, data.data(), data.size(), static_cast<off_t>(model_.size())),
                static_cast<ssize_t>(data.size()))
          << what << ": " << std::strerror(errno);
      model_ += data;
    } else if (op < 54 && !model_.empty()) {  // a direct write below the end
      const uint64_t at = pick(model_.size());
      what = "direct write below end at " + std::to_string(at);
      EXPECT_EQ(::pwrite(direct_, "Z", 1, static_cast<off_t>(at)), -1) << what;
      EXPECT_EQ(errno, EPERM) << what;
    } else if (op < 74) {  // a read, cached or direct
      const bool cached = op < 64;
      const uint64_t at = pick(model_.size() + 10);
      const size_t n = 1 + pick(70000);
      what = std::string(cached ? "cached" : "direct") + " read " + std::to_string(n) + " at " + std::to_string(at);
      std::string got(n, '\0');
      const ssize_t r = ::pread(cached ? cached_reader_ : direct_reader_, got.data(), n, static_cast<off_t>(at));
      ASSERT_GE(r, 0) << what << ": " << std::strerror(errno);
      got.resize(static_cast<size_t>(r));
      ASSERT_EQ(got, Expected(at, n)) << what << " at step " << step;
    } else if (op < 80) {
      what = "fsync";
      ASSERT_EQ(::fsync(pick(2) ? appender_ : direct_), 0) << std::strerror(errno);
    } else if (op < 85) {  // truncate, mostly shrinking
      const uint64_t n = pick(5) == 0 ? model_.size() + pick(10000) : pick(model_.size() + 1);
      what = "truncate to " + std::to_string(n);
      ASSERT_EQ(::ftruncate(direct_, static_cast<off_t>(n)), 0) << what << ": " << std::strerror(errno);
      if (n < model_.size()) {
        model_.resize(n);
      } else {
        model_.append(n - model_.size(), '\0');
      }
      head_ = std::min(head_, n);
    } else if (op < 90 && !model_.empty()) {  // head punch
      const uint64_t to = std::max<uint64_t>(1, pick(model_.size() + 1));
      what = "punch head to " + std::to_string(to);
      ASSERT_EQ(::fallocate(direct_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(to)), 0)
          << what << ": " << std::strerror(errno);
      head_ = std::max(head_, std::min<uint64_t>(to, model_.size()));
    } else if (op < 99) {
      what = "close and reopen";
      ASSERT_EQ(::close(appender_), 0) << std::strerror(errno);
      appender_ = ::open(M("t").c_str(), O_WRONLY | O_APPEND);
      ASSERT_GE(appender_, 0);
    } else {
      what = "remount";
      CloseHandles();
      Unmount();
      Mount(options);
      OpenHandles();
    }
    struct stat st {};
    ASSERT_EQ(::fstat(cached_reader_, &st), 0);
    ASSERT_EQ(static_cast<uint64_t>(st.st_size), model_.size()) << "after " << what << " at step " << step;
  }
  // Everything, through a fresh mount.
  CloseHandles();
  Unmount();
  Mount(options);
  EXPECT_TRUE(ReadBack("t") == Expected(0, model_.size())) << "the file differs from the model after a remount";
  auto stat = StatOf("t");
  EXPECT_EQ(stat["held_bytes"], "0");
  EXPECT_EQ(std::stoull(stat["head"]), head_);
}

}  // namespace
}  // namespace hpfs::drills
