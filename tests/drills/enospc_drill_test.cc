// SPDX-License-Identifier: Apache-2.0
// The backing filesystem fills up under a writer, through the mount: the
// backing directory is a 4 MiB tmpfs. Appends must fail with ENOSPC and show
// nothing of themselves, readers must never see a byte of a failed write,
// every acknowledged byte must stay, and once a head punch frees space the
// appends must go on where they stopped. The store must unmount cleanly,
// check clean and mount again with everything in place.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
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

using hpfile::testing::PatternBytes;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr size_t kChunk = 64 << 10;

class EnospcDrill : public DrillTest {
 protected:
  void SetUp() override {
    DrillTest::SetUp();
    if (IsSkipped()) return;
    tmpfs_ = std::make_unique<mount_test::TmpfsMount>(backing_, "4m");
    ASSERT_TRUE(tmpfs_->ok()) << tmpfs_->error();
  }
  void TearDown() override {
    DrillTest::TearDown();  // the daemon goes first, then the tmpfs under it
    tmpfs_.reset();
  }

  // What holds the space: for a failure message.
  std::string BackingUsage() {
    return mount_test::Shell("df -k '" + backing_ + "'; ls -laR '" + backing_ + "'; ls -l /proc/" +
                                 std::to_string(daemon_->pid()) + "/fd | grep -F -e .seg -e deleted",
                             seconds(20))
        .output;
  }

  std::unique_ptr<mount_test::TmpfsMount> tmpfs_;
};

// Readers that re-read the end of the file (and on to end of file) in a loop,
// checking every byte, until stopped.
class Readers {
 public:
  Readers(const std::string& path, int count) {
    for (int i = 0; i < count; ++i) {
      threads_.emplace_back([this, path] { Loop(path); });
    }
  }
  ~Readers() { Stop(); }

  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  uint64_t checked() const { return checked_; }
  std::string failure() {
    std::lock_guard lock(mu_);
    return failure_;
  }

 private:
  void Loop(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      Fail("open: " + std::string(std::strerror(errno)));
      return;
    }
    while (!stop_) {
      auto hs = StatHeadSize(fd);
      if (!hs) {
        Fail("HPFS_IOC_STAT: " + std::string(std::strerror(errno)));
        break;
      }
      const uint64_t from = hs->size > (512 << 10) ? hs->size - (512 << 10) : 0;
      uint64_t n = 0;
      // On to end of file, whatever the size was a moment ago: a failed
      // append must not show even briefly.
      if (auto bad = VerifyPattern(fd, std::max(from, hs->head), 1ull << 40, hs->head, &n)) {
        Fail(*bad);
        break;
      }
      checked_ += n;
    }
    ::close(fd);
  }
  void Fail(const std::string& why) {
    std::lock_guard lock(mu_);
    if (failure_.empty()) failure_ = why;
  }

  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> checked_{0};
  std::mutex mu_;
  std::string failure_;
  std::vector<std::thread> threads_;
};

TEST_F(EnospcDrill, AppendsFailWhenFullLoseNothingAndResumeAfterAPrune) {
  Mount({"-o", "segment_size=256K"});
  const std::string path = M("log");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  Readers readers(path, 2);

  // Fill the backing filesystem.
  uint64_t acked = 0;
  int err = 0;
  for (int i = 0; i < 1000; ++i) {
    const ssize_t n = AppendPattern(fd, acked, kChunk);
    if (n < 0) {
      err = errno;
      break;
    }
    acked += static_cast<uint64_t>(n);
  }
  ASSERT_EQ(err, ENOSPC) << "appends on a full backing filesystem must fail with ENOSPC, got "
                         << std::strerror(err) << " after " << acked << " bytes";
  EXPECT_GT(acked, 2u << 20) << "a 4 MiB backing filesystem held less than 2 MiB";

  // While full, every append fails whole, with bytes that differ from the
  // pattern at every offset so a reader would notice any of them.
  for (size_t length : {kChunk, size_t{200} << 10, size_t{1} << 20}) {
    std::vector<std::byte> poison = PatternBytes(acked, length);
    for (auto& b : poison) b ^= std::byte{0xA5};
    errno = 0;
    const ssize_t n = ::write(fd, poison.data(), poison.size());
    EXPECT_EQ(n, -1) << "an append of " << length << " bytes on a full filesystem returned " << n;
    EXPECT_EQ(errno, ENOSPC) << std::strerror(errno);
    struct stat st;
    ASSERT_EQ(::fstat(fd, &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), acked) << "a failed append changed the size";
  }
  {
    const int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(rfd, 0);
    uint64_t n = 0;
    auto bad = VerifyPattern(rfd, 0, 1ull << 40, 0, &n);
    EXPECT_FALSE(bad) << *bad;
    EXPECT_EQ(n, acked) << "acknowledged bytes lost, or bytes of failed appends kept";
    ::close(rfd);
  }

  // Drop the older half; the daemon frees the segments in the background.
  const uint64_t head = acked / 2;
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(head)), 0)
      << "punching the head of a full filesystem: " << std::strerror(errno);
  // Each append may wait for space (ENOSPC) until the deadline: the punch
  // frees the first segment's bytes at once, the rest as the deleter gets to
  // the segments.
  const auto deadline = std::chrono::steady_clock::now() + seconds(15);
  for (int i = 0; i < 16; ++i) {
    ssize_t n = -1;
    while ((n = AppendPattern(fd, acked, kChunk)) < 0 && errno == ENOSPC &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    ASSERT_EQ(n, static_cast<ssize_t>(kChunk))
        << "append " << i << " after the prune: " << std::strerror(errno) << "\n" << BackingUsage();
    acked += kChunk;
  }
  ASSERT_EQ(::fsync(fd), 0) << std::strerror(errno);
  ::close(fd);

  readers.Stop();
  EXPECT_EQ(readers.failure(), "");
  EXPECT_GT(readers.checked(), 0u);

  auto verify_all = [&](const char* when) {
    SCOPED_TRACE(when);
    const int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(rfd, 0) << std::strerror(errno);
    auto hs = StatHeadSize(rfd);
    ASSERT_TRUE(hs);
    EXPECT_GE(hs->head, head);
    EXPECT_EQ(hs->size, acked);
    uint64_t n = 0;
    auto bad = VerifyPattern(rfd, hs->head, 1ull << 40, hs->head, &n);
    EXPECT_FALSE(bad) << *bad;
    EXPECT_EQ(hs->head + n, acked);
    // Below the head: zeros, as in a punched hole.
    std::vector<char> below(4096, 'x');
    ASSERT_EQ(::pread(rfd, below.data(), below.size(), 0), static_cast<ssize_t>(below.size()));
    EXPECT_EQ(below, std::vector<char>(4096, 0));
    ::close(rfd);
  };
  verify_all("after the prune");

  Unmount();
  auto check = Check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
  Mount({"-o", "segment_size=256K"});
  verify_all("after a remount");
}

}  // namespace
}  // namespace hpfs::drills
