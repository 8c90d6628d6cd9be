// SPDX-License-Identifier: Apache-2.0
// A sustained mixed load through the mount for HPFS_SOAK_SECONDS (60 by
// default): one appender that now and then truncates its tail and appends the
// same bytes again, three readers checking every byte they read, and the
// file's retention (retain_bytes) dropping its head. Nothing may fail, no byte
// may be wrong, retention must bound the file, and the daemon's descriptors
// and resident memory must stay flat once warmed up.
//
// Longer: HPFS_SOAK_SECONDS=3600 meson test -C BUILD --suite drills soak -t 0
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/core/test_util.h"
#include "tests/drills/drill_harness.h"

namespace hpfs::drills {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kSegment = 256 << 10;
constexpr uint64_t kRetainBytes = 2 << 20;
// Truncates cut at most this much, well under kRetainBytes, so retention
// never has the head above a truncate's target and the head only grows.
constexpr uint64_t kMaxCut = 512 << 10;

seconds SoakDuration() {
  const char* env = std::getenv("HPFS_SOAK_SECONDS");
  const long n = env != nullptr ? std::strtol(env, nullptr, 10) : 0;
  return seconds(n > 0 ? n : 60);
}

class Failures {
 public:
  void Add(const std::string& why) {
    std::lock_guard lock(mu_);
    if (list_.size() < 10) list_.push_back(why);
    ++count_;
  }
  std::string Text() {
    std::lock_guard lock(mu_);
    std::string out = std::to_string(count_) + " failures";
    for (const auto& f : list_) out += "\n  " + f;
    return out;
  }
  bool empty() {
    std::lock_guard lock(mu_);
    return count_ == 0;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> list_;
  uint64_t count_ = 0;
};

class SoakDrill : public DrillTest {};

TEST_F(SoakDrill, AppenderReadersRetentionAndTruncatesStayCorrectWithFlatFdsAndMemory) {
  const seconds duration = SoakDuration();
  Mount({"-o", "segment_size=256K"});
  const std::string path = M("soak.log");
  auto created = Run(": > soak.log && \"$CTL\" set soak.log retain_bytes=" + std::to_string(kRetainBytes));
  ASSERT_EQ(created.exit_code, 0) << created.output;

  Failures failures;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> appended{0}, truncates{0}, verified{0}, reads{0};
  // Odd while the appender is inside ftruncate; `cut_to` is its target.
  std::atomic<uint64_t> cut_sequence{0}, cut_to{0};

  std::thread appender([&] {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return failures.Add("appender open: " + std::string(std::strerror(errno)));
    std::mt19937_64 rng(1);
    uint64_t end = 0;
    auto next_truncate = Clock::now() + milliseconds(400);
    while (!stop) {
      if (Clock::now() >= next_truncate) {
        next_truncate = Clock::now() + milliseconds(400);
        auto hs = StatHeadSize(fd);
        if (!hs) {
          failures.Add("appender HPFS_IOC_STAT: " + std::string(std::strerror(errno)));
          break;
        }
        if (hs->size != end) failures.Add("size " + std::to_string(hs->size) + ", appended up to " + std::to_string(end));
        const uint64_t to = std::max(hs->head, end - std::min(end, rng() % kMaxCut));
        cut_to = to;
        ++cut_sequence;
        const int cut = ::ftruncate(fd, static_cast<off_t>(to));
        ++cut_sequence;
        if (cut != 0) {
          failures.Add("ftruncate to " + std::to_string(to) + ": " + std::strerror(errno));
          break;
        }
        end = to;
        ++truncates;
        continue;
      }
      const size_t n = 1 + rng() % (64 << 10);
      const ssize_t written = AppendPattern(fd, end, n);
      if (written != static_cast<ssize_t>(n)) {
        failures.Add("append of " + std::to_string(n) + " at " + std::to_string(end) + " returned " +
                     std::to_string(written) + ": " + std::strerror(errno));
        break;
      }
      end += n;
      appended += n;
    }
    ::close(fd);
  });

  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return failures.Add("reader open: " + std::string(std::strerror(errno)));
      std::mt19937_64 rng(100 + r);
      while (!stop) {
        auto before = StatHeadSize(fd);
        if (!before) {
          failures.Add("reader HPFS_IOC_STAT: " + std::string(std::strerror(errno)));
          break;
        }
        if (before->size == 0) continue;
        // Mostly the busy end of the file, sometimes anywhere (also below the head).
        const uint64_t span = rng() % 2 == 0 ? std::min<uint64_t>(before->size, 1 << 20) : before->size;
        const uint64_t offset = before->size - 1 - rng() % span;
        const uint64_t length = 1 + rng() % (256 << 10);
        std::vector<std::byte> buf(length);
        const uint64_t cuts_before = cut_sequence;
        const ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(offset));
        const uint64_t cuts_after = cut_sequence;
        if (n < 0) {
          failures.Add("pread at " + std::to_string(offset) + ": " + std::strerror(errno));
          break;
        }
        // The head only grows here, so a byte at or above the head read
        // after the read was above it during the read: it must be the
        // pattern. Below it, zeros are right too.
        auto after = StatHeadSize(fd);
        if (!after) {
          failures.Add("reader HPFS_IOC_STAT: " + std::string(std::strerror(errno)));
          break;
        }
        if (after->head < before->head) failures.Add("the head went back");
        // A read that overlaps a truncate may see the cut bytes as zeros: the
        // kernel zeroes the tail of the page holding the new end in place,
        // under readers copying it, as on any Linux filesystem. Never below
        // the cut, and one truncate at most overlaps a read here (they are
        // 400 ms apart); a read that overlapped more is not checked for zeros.
        uint64_t zeros_from = after->head;
        if (cuts_after != cuts_before || cuts_before % 2 == 1) {
          zeros_from = cuts_after - cuts_before <= 2 ? std::max<uint64_t>(after->head, cut_to) : 0;
        }
        for (ssize_t i = 0; i < n; ++i) {
          const uint64_t at = offset + static_cast<uint64_t>(i);
          const std::byte want = hpfile::testing::PatternByte(at);
          const std::byte got = buf[static_cast<size_t>(i)];
          if (got != want && !((at < after->head || at >= zeros_from) && got == std::byte{0})) {
            std::byte again{0xff};
            const ssize_t r = ::pread(fd, &again, 1, static_cast<off_t>(at));
            failures.Add("byte " + std::to_string(at) + " is " + std::to_string(static_cast<int>(got)) +
                         ", expected " + std::to_string(static_cast<int>(want)) + " (read " + std::to_string(n) +
                         " at " + std::to_string(offset) + ", head " + std::to_string(after->head) + ", size " +
                         std::to_string(before->size) + " before the read, " + std::to_string(after->size) +
                         " after; read again: " + (r == 1 ? std::to_string(static_cast<int>(again)) : "nothing") +
                         ")");
            break;
          }
        }
        verified += static_cast<uint64_t>(n);
        ++reads;
      }
      ::close(fd);
    });
  }

  // The daemon's descriptors and memory, once a second.
  const pid_t pid = daemon_->pid();
  const auto start = Clock::now();
  const auto warm = start + std::max<Clock::duration>(seconds(5), duration / 5);
  long warm_fds = 0, warm_rss = 0, max_fds = 0, max_rss = 0, samples = 0;
  while (Clock::now() < start + duration && failures.empty()) {
    std::this_thread::sleep_for(seconds(1));  // the sampling period, not a wait for an event
    const long fds = CountFds(pid);
    const long rss = ResidentKib(pid);
    ASSERT_GT(fds, 0) << "the daemon is gone";
    ASSERT_GT(rss, 0);
    if (Clock::now() < warm) {
      warm_fds = std::max(warm_fds, fds);
      warm_rss = std::max(warm_rss, rss);
    } else {
      max_fds = std::max(max_fds, fds);
      max_rss = std::max(max_rss, rss);
      ++samples;
    }
  }
  stop = true;
  appender.join();
  for (auto& t : readers) t.join();

  RecordProperty("appended_bytes", std::to_string(appended.load()));
  RecordProperty("verified_bytes", std::to_string(verified.load()));
  RecordProperty("truncates", std::to_string(truncates.load()));
  RecordProperty("fds_warm_max_after", std::to_string(warm_fds) + " " + std::to_string(max_fds));
  RecordProperty("rss_kib_warm_max_after", std::to_string(warm_rss) + " " + std::to_string(max_rss));
  ASSERT_TRUE(failures.empty()) << failures.Text();
  EXPECT_GT(appended.load(), 4 * kRetainBytes) << "the appender hardly ran";
  EXPECT_GT(truncates.load(), 0u);
  EXPECT_GT(reads.load(), 100u) << "the readers hardly ran";

  // Retention bounds the file: whole segments below size - retain_bytes go.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::optional<HeadSize> hs;
  EXPECT_TRUE(Eventually(
      [&] {
        hs = StatHeadSize(fd);
        return hs && hs->size - hs->head <= kRetainBytes + kSegment;
      },
      milliseconds(5000)))
      << "retention left " << (hs ? hs->size - hs->head : 0) << " live bytes, retain_bytes " << kRetainBytes;
  ASSERT_TRUE(hs);
  EXPECT_GT(hs->head, 0u);
  auto bad = VerifyPattern(fd, hs->head, 1ull << 40, hs->head);
  EXPECT_FALSE(bad) << *bad;
  ::close(fd);

  ASSERT_GT(samples, 0) << "the soak ended before the warm-up did";
  // Slack for the file's descriptor cache (8 segments) and its writer, which
  // need not have filled up during the warm-up; a leak per segment, request
  // or truncate would pass it within seconds.
  EXPECT_LE(max_fds, warm_fds + 10) << "the daemon's descriptors grew after warm-up";
  EXPECT_LE(max_rss, warm_rss + warm_rss / 4 + 8 * 1024) << "the daemon's memory grew after warm-up (KiB)";
  std::fprintf(stderr, "soak %llds: appended %llu bytes, %llu truncates, %llu reads verifying %llu bytes; "
               "daemon fds %ld -> %ld, RSS %ld -> %ld KiB\n",
               static_cast<long long>(duration.count()), static_cast<unsigned long long>(appended.load()),
               static_cast<unsigned long long>(truncates.load()), static_cast<unsigned long long>(reads.load()),
               static_cast<unsigned long long>(verified.load()), warm_fds, max_fds, warm_rss, max_rss);

  Unmount();
  auto check = Check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

}  // namespace
}  // namespace hpfs::drills
