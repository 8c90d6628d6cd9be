// SPDX-License-Identifier: Apache-2.0
// The daemon killed with SIGKILL in the middle of each kind of operation:
// an append stream, segment rolls, head prunes, truncates, rename-replace,
// unlink while open. Each drill runs its operations on threads through the
// mount, kills the daemon once they have made a given amount of progress
// (a different amount each round, so the kill lands at different points),
// clears the dead mount, mounts again and checks that every acknowledged
// change is there and nothing else is wrong; then it unmounts cleanly and
// `hpfsctl check` must find the store clean (recovery at the remount repaired
// whatever the kill interrupted) and the trash empty.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/core/test_util.h"
#include "tests/drills/drill_harness.h"

namespace hpfs::drills {
namespace {

using hpfile::testing::SeededByte;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Progress (acknowledged operations) at which each round kills the daemon.
constexpr uint64_t kKillPoints[] = {1, 23, 180};

// One kind of operation run against the mount until the daemon dies.
class Workload {
 public:
  explicit Workload(std::string dir) : dir_(std::move(dir)) {}
  virtual ~Workload() = default;

  // In the fresh mount, before the threads start.
  virtual void Prepare() {}
  // One thread's loop; returns when `stop` is set or a call fails. A call
  // that fails before the kill is a finding (Fail()).
  virtual void Work(int thread, const std::atomic<bool>& stop) = 0;
  virtual int threads() const { return 1; }
  // After the remount: everything acknowledged must be there.
  virtual void Verify() = 0;

  uint64_t progress() const { return progress_; }
  void set_killing() { killing_ = true; }
  std::string failure() {
    std::lock_guard lock(mu_);
    return failure_;
  }

 protected:
  std::string P(const std::string& name) const { return dir_ + "/" + name; }
  // A failed call: expected once the daemon is being killed, a finding before.
  void Fail(const std::string& what) { Report(what + ": " + std::strerror(errno)); }
  void Report(const std::string& why) {
    if (killing_) return;
    std::lock_guard lock(mu_);
    if (failure_.empty()) failure_ = why;
  }
  void Progress() { ++progress_; }

  const std::string dir_;

 private:
  std::atomic<uint64_t> progress_{0};
  std::atomic<bool> killing_{false};
  std::mutex mu_;
  std::string failure_;
};

// Appends of varying sizes to one file; `chunk(i)` gives the i-th size.
class AppendStream : public Workload {
 public:
  AppendStream(std::string dir, std::function<size_t(uint64_t)> chunk, std::string segment_size)
      : Workload(std::move(dir)), chunk_(std::move(chunk)), segment_size_(std::move(segment_size)) {}

  void Prepare() override {
    const int fd = ::open(P("log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ::close(fd);
    if (!segment_size_.empty()) {
      auto r = mount_test::Shell("'" + CtlPath() + "' set '" + P("log") + "' segment_size=" + segment_size_);
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
  }

  void Work(int, const std::atomic<bool>& stop) override {
    const int fd = ::open(P("log").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return Fail("open");
    for (uint64_t i = 0; !stop; ++i) {
      const size_t n = chunk_(i);
      if (AppendPattern(fd, acked_, n) != static_cast<ssize_t>(n)) {
        Fail("append");
        break;
      }
      acked_ += n;
      Progress();
    }
    ::close(fd);
  }

  void Verify() override {
    const int fd = ::open(P("log").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    auto hs = StatHeadSize(fd);
    ASSERT_TRUE(hs);
    EXPECT_EQ(hs->head, 0u);
    EXPECT_GE(hs->size, acked_.load()) << "acknowledged appends lost";
    uint64_t n = 0;
    auto bad = VerifyPattern(fd, 0, 1ull << 40, 0, &n);
    EXPECT_FALSE(bad) << *bad;
    EXPECT_EQ(n, hs->size);
    ::close(fd);
  }

 protected:
  std::function<size_t(uint64_t)> chunk_;
  std::string segment_size_;
  std::atomic<uint64_t> acked_{0};
};

// Appends on one thread, head punches on another.
class PruneWhileAppending : public AppendStream {
 public:
  explicit PruneWhileAppending(std::string dir)
      : AppendStream(std::move(dir), [](uint64_t i) { return 3000 + (i * 7919) % 40000; }, "64K") {}

  int threads() const override { return 2; }

  void Work(int thread, const std::atomic<bool>& stop) override {
    if (thread == 0) return AppendStream::Work(thread, stop);
    const int fd = ::open(P("log").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return Fail("open");
    while (!stop) {
      const uint64_t size = acked_;
      if (size < (256 << 10)) {
        std::this_thread::yield();
        continue;
      }
      const uint64_t to = size - (192 << 10) + (size % 5000);
      requested_ = std::max(requested_.load(), to);
      if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(to)) != 0) {
        Fail("punch");
        break;
      }
      Progress();
    }
    ::close(fd);
  }

  void Verify() override {
    const int fd = ::open(P("log").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    auto hs = StatHeadSize(fd);
    ASSERT_TRUE(hs);
    EXPECT_GE(hs->size, acked_.load()) << "acknowledged appends lost";
    EXPECT_LE(hs->head, requested_.load()) << "the head moved past every punch";
    // A punch not yet recorded in the meta may come back lower, and the one
    // the kill interrupted may be half done: below the furthest punch asked
    // for, bytes read as they were or as zeros. Above it every byte must be
    // there.
    uint64_t n = 0;
    auto bad = VerifyPattern(fd, hs->head, 1ull << 40, std::max<uint64_t>(hs->head, requested_), &n);
    EXPECT_FALSE(bad) << *bad;
    EXPECT_EQ(hs->head + n, hs->size);
    ::close(fd);
  }

 private:
  std::atomic<uint64_t> requested_{0};
};

// Appends and truncates of the tail, one after the other; the truncated bytes
// are appended again (the same bytes: they depend on the offset only).
class AppendAndTruncate : public Workload {
 public:
  using Workload::Workload;

  void Prepare() override {
    const int fd = ::open(P("log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ::close(fd);
    auto r = mount_test::Shell("'" + CtlPath() + "' set '" + P("log") + "' segment_size=64K");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  void Work(int, const std::atomic<bool>& stop) override {
    const int fd = ::open(P("log").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return Fail("open");
    uint64_t size = 0;
    for (uint64_t i = 0; !stop; ++i) {
      if (i % 3 == 2) {
        const uint64_t to = size - std::min<uint64_t>(size, (i * 104729) % (200 << 10));
        floor_ = to;  // the truncate in flight may stop anywhere above this
        if (::ftruncate(fd, static_cast<off_t>(to)) != 0) {
          Fail("ftruncate");
          break;
        }
        size = to;
      } else {
        const size_t n = 1000 + (i * 7919) % 90000;
        floor_ = size;
        if (AppendPattern(fd, size, n) != static_cast<ssize_t>(n)) {
          Fail("append");
          break;
        }
        size += n;
        ceiling_ = std::max(ceiling_.load(), size);
      }
      Progress();
    }
    ::close(fd);
  }

  void Verify() override {
    const int fd = ::open(P("log").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    auto hs = StatHeadSize(fd);
    ASSERT_TRUE(hs);
    EXPECT_GE(hs->size, floor_.load()) << "an acknowledged append lost, or a truncate cut too far";
    // At most what an append in flight could have added.
    EXPECT_LE(hs->size, ceiling_.load() + 100000);
    uint64_t n = 0;
    auto bad = VerifyPattern(fd, hs->head, 1ull << 40, hs->head, &n);
    EXPECT_FALSE(bad) << *bad;
    EXPECT_EQ(hs->head + n, hs->size);
    ::close(fd);
  }

 private:
  std::atomic<uint64_t> floor_{0};
  std::atomic<uint64_t> ceiling_{0};
};

// Generation g of a file replaced by rename: a header naming g and its length,
// then bytes that depend on g and the offset.
std::string GenerationContent(uint64_t g) {
  const size_t length = 64 + static_cast<size_t>((g * 7919) % 300000);
  std::string out(length, '\0');
  const int header = std::snprintf(out.data(), 64, "generation %" PRIu64 " length %zu\n", g, length);
  for (size_t i = static_cast<size_t>(header); i < length; ++i) out[i] = static_cast<char>(SeededByte(g, i));
  return out;
}

// The generation a file holds, or an explanation of why it holds none.
std::string ReadGeneration(const std::string& path, uint64_t* g) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open " + path + ": " + std::strerror(errno);
  std::string content;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) content.append(buf, static_cast<size_t>(n));
  const int err = errno;
  ::close(fd);
  if (n < 0) return "read " + path + ": " + std::strerror(err);
  unsigned long long parsed = 0;
  if (std::sscanf(content.c_str(), "generation %llu", &parsed) != 1) return path + " has no generation header";
  if (content != GenerationContent(parsed)) return path + " is not a whole generation " + std::to_string(parsed);
  *g = parsed;
  return "";
}

// Writes the next generation under a temporary name and renames it over
// `current`, while a reader keeps opening, reading and holding `current`.
class RenameReplace : public Workload {
 public:
  using Workload::Workload;

  int threads() const override { return 2; }

  void Work(int thread, const std::atomic<bool>& stop) override {
    if (thread == 1) return Read(stop);
    for (uint64_t g = 1; !stop; ++g) {
      const std::string content = GenerationContent(g);
      const int fd = ::open(P("next").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) return Fail("open next");
      const bool written = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
      ::close(fd);
      if (!written) return Fail("write next");
      if (::rename(P("next").c_str(), P("current").c_str()) != 0) return Fail("rename");
      acked_ = g;
      Progress();
    }
  }

  void Verify() override {
    const uint64_t acked = acked_;
    if (acked == 0) return;
    uint64_t g = 0;
    const std::string bad = ReadGeneration(P("current"), &g);
    ASSERT_EQ(bad, "");
    EXPECT_GE(g, acked) << "an acknowledged rename was undone";
    EXPECT_LE(g, acked + 1) << "a generation never renamed appeared";
  }

 private:
  void Read(const std::atomic<bool>& stop) {
    while (!stop) {
      if (acked_ == 0) {
        std::this_thread::yield();
        continue;
      }
      uint64_t g = 0;
      const std::string bad = ReadGeneration(P("current"), &g);
      if (!bad.empty()) {
        Report("reader: " + bad);
        return;
      }
    }
  }

  std::atomic<uint64_t> acked_{0};
};

// Files created, written, unlinked while still open, and then written and read
// through their descriptors; a log appended meanwhile must keep every
// acknowledged byte, and no unlinked name may come back.
class UnlinkWhileOpen : public Workload {
 public:
  using Workload::Workload;

  void Work(int, const std::atomic<bool>& stop) override {
    const int log = ::open(P("keeper").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0) return Fail("open keeper");
    std::vector<int> open_unlinked;
    for (uint64_t g = 0; !stop; ++g) {
      const std::string name = P("victim." + std::to_string(g));
      in_flight_ = g;
      const int fd = ::open(name.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0) {
        Fail("create victim");
        break;
      }
      open_unlinked.push_back(fd);
      if (AppendPattern(fd, 0, 70000) != 70000 || ::unlink(name.c_str()) != 0) {
        Fail("write or unlink victim");
        break;
      }
      unlinked_ = g + 1;
      if (AppendPattern(fd, 70000, 5000) != 5000) {
        Fail("append to an unlinked file");
        break;
      }
      if (auto bad = VerifyPattern(fd, 0, 1ull << 40, 0)) {
        Report("unlinked file reads back wrong: " + *bad);
        break;
      }
      if (open_unlinked.size() > 3) {
        ::close(open_unlinked.front());
        open_unlinked.erase(open_unlinked.begin());
      }
      const size_t n = 2000 + (g * 7919) % 20000;
      if (AppendPattern(log, acked_, n) != static_cast<ssize_t>(n)) {
        Fail("append keeper");
        break;
      }
      acked_ += n;
      Progress();
    }
    for (int fd : open_unlinked) ::close(fd);
    ::close(log);
  }

  void Verify() override {
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      const std::string name = entry.path().filename();
      if (!name.starts_with("victim.")) continue;
      const uint64_t g = std::stoull(name.substr(7));
      EXPECT_GE(g, unlinked_.load()) << name << " came back after its unlink was acknowledged";
      EXPECT_EQ(g, in_flight_.load()) << name << " was never created";
    }
    const int fd = ::open(P("keeper").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    uint64_t n = 0;
    auto bad = VerifyPattern(fd, 0, 1ull << 40, 0, &n);
    EXPECT_FALSE(bad) << *bad;
    EXPECT_GE(n, acked_.load()) << "acknowledged appends lost";
    ::close(fd);
  }

 private:
  std::atomic<uint64_t> acked_{0};
  std::atomic<uint64_t> unlinked_{0};
  std::atomic<uint64_t> in_flight_{0};
};

class SigkillDrill : public DrillTest {
 protected:
  // For each kill point: a fresh directory in the same store, the workload on
  // its threads, SIGKILL once it made that much progress, remount, verify,
  // clean unmount, check.
  void RunRounds(const std::function<std::unique_ptr<Workload>(const std::string& dir)>& make) {
    int round = 0;
    for (const uint64_t kill_at : kKillPoints) {
      SCOPED_TRACE("round " + std::to_string(round) + ": kill after " + std::to_string(kill_at) + " operations");
      const std::string dir = M("round" + std::to_string(round++));
      ASSERT_NO_FATAL_FAILURE(Mount());
      ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0) << std::strerror(errno);
      std::unique_ptr<Workload> work = make(dir);
      ASSERT_NO_FATAL_FAILURE(work->Prepare());

      std::atomic<bool> stop{false};
      std::vector<std::thread> threads;
      for (int t = 0; t < work->threads(); ++t) {
        threads.emplace_back([&work, &stop, t] { work->Work(t, stop); });
      }
      const bool reached = Eventually([&] { return work->progress() >= kill_at || !work->failure().empty(); },
                                      milliseconds(30000));
      work->set_killing();
      KillDaemon();
      stop = true;
      for (auto& t : threads) t.join();
      ASSERT_TRUE(reached) << "the workload made no progress";
      EXPECT_EQ(work->failure(), "") << "failed before the kill";

      ASSERT_NO_FATAL_FAILURE(Mount());
      // Every file is looked up (and so recovered) by the verification or here.
      auto walk = Run("find . -type f -exec cat {} + > /dev/null");
      EXPECT_EQ(walk.exit_code, 0) << walk.output;
      work->Verify();
      ASSERT_NO_FATAL_FAILURE(Unmount());
      auto check = Check();
      EXPECT_EQ(check.exit_code, 0) << "the store is not clean after a remount and a clean unmount:\n"
                                    << check.output;
      const std::string trash = B(".hpfs-trash");
      EXPECT_TRUE(!std::filesystem::exists(trash) || std::filesystem::is_empty(trash))
          << "the trash still holds files after a clean unmount";
      if (HasFatalFailure()) return;
    }
  }
};

TEST_F(SigkillDrill, AppendStreamKeepsEveryAcknowledgedByte) {
  RunRounds([](const std::string& dir) {
    return std::make_unique<AppendStream>(dir, [](uint64_t i) { return 1 + (i * 7919) % 150000; }, "");
  });
}

TEST_F(SigkillDrill, SegmentRollsKeepEveryAcknowledgedByte) {
  RunRounds([](const std::string& dir) {
    return std::make_unique<AppendStream>(dir, [](uint64_t i) { return 100 + (i * 7919) % 9000; }, "4K");
  });
}

TEST_F(SigkillDrill, PruneKeepsEverythingAboveTheAcknowledgedHead) {
  RunRounds([](const std::string& dir) { return std::make_unique<PruneWhileAppending>(dir); });
}

TEST_F(SigkillDrill, TruncateLeavesTheFileBetweenItsTargetAndTheOldEnd) {
  RunRounds([](const std::string& dir) { return std::make_unique<AppendAndTruncate>(dir); });
}

TEST_F(SigkillDrill, RenameReplaceLeavesAWholeGeneration) {
  RunRounds([](const std::string& dir) { return std::make_unique<RenameReplace>(dir); });
}

TEST_F(SigkillDrill, UnlinkWhileOpenNeverBringsANameBack) {
  RunRounds([](const std::string& dir) { return std::make_unique<UnlinkWhileOpen>(dir); });
}

}  // namespace
}  // namespace hpfs::drills
