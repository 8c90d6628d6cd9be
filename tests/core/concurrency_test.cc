// SPDX-License-Identifier: Apache-2.0
// Readers racing a writer, a pruner, a truncater and a syncer.
//
// Every byte the file ever holds at offset N is PatternByte(N): the truncater
// only cuts (never grows), and the writer re-appends the same function of the
// offset, so whatever a reader gets, whenever it gets it, is checkable without
// knowing the interleaving. Readers may see ENODATA only for offsets some
// PruneHead call was allowed to hide, never any other error, never more bytes
// than asked for, never a wrong byte.
//
// Runs under ThreadSanitizer as well: all state shared by the test's own
// threads is atomic or behind a mutex.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/hpfile.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::ForwardingIo;
using testing::OptionsWithSegmentSize;
using testing::PatternByte;
using testing::PatternBytes;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kSegmentSize = 4096;
constexpr int kReaders = 4;
// Keeps the live part of the file, and so the disk it takes, bounded.
constexpr uint64_t kMaxLive = 4 << 20;

enum class ReadMode { kReadAt, kPreReader, kMapRange };

const char* Name(ReadMode mode) {
  switch (mode) {
    case ReadMode::kReadAt: return "ReadAt";
    case ReadMode::kPreReader: return "PreReader";
    case ReadMode::kMapRange: return "MapRange";
  }
  return "?";
}

struct Shared {
  explicit Shared(HPFile& f, Clock::time_point d) : file(f), deadline(d) {}

  HPFile& file;
  const Clock::time_point deadline;
  const Clock::time_point give_up = deadline + std::chrono::minutes(2);
  std::atomic<bool> stop{false};

  // Serializes the writer's "read Size(), append the pattern from there" with
  // the truncater's cut, so the bytes always land at the offset they encode.
  std::mutex mutate_mu;
  // Raised *before* each PruneHead(n) to n: no head the file ever had exceeds it.
  std::atomic<uint64_t> max_head_allowed{0};
  // Raised *before* each Append to its end: no byte ever lies past it.
  std::atomic<uint64_t> max_end_allowed{0};
  // Counts appends so the other mutators can pace themselves on the writer
  // instead of on the clock.
  std::atomic<uint64_t> appends{0};
  // std::mutex is not fair and the writer relocks at once, so the truncater
  // raises this and the writer stands back until it has had its turn.
  std::atomic<bool> truncate_wanted{false};

  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> bytes_checked{0};
  std::atomic<uint64_t> enodata{0};
  std::atomic<uint64_t> punched_zeros_via_extent{0};
  std::atomic<uint64_t> truncates{0};
  std::atomic<uint64_t> prunes{0};
  std::atomic<uint64_t> syncs{0};
  std::atomic<uint64_t> failures{0};

  std::mutex failure_mu;
  std::vector<std::string> failure_messages;  // the first few, for the report

  // Past the deadline the run goes on until every mutator has done its part:
  // on a loaded machine a thread may not get its first turn for seconds, and
  // the checks below the run would then fail for the machine, not the file.
  // `give_up` bounds a run whose threads really hang.
  bool Running() const {
    if (stop.load(std::memory_order_relaxed)) return false;
    const auto now = Clock::now();
    return now < deadline || (now < give_up && !Exercised());
  }
  // More live bytes than the readers' ranges are meant to span: the writer
  // waits for a prune.
  bool Backlogged() const { return file.Size() - std::min(file.Size(), file.Head()) > kMaxLive; }
  bool Exercised() const {
    return appends.load() > kMinAppends && truncates.load() > 0 && prunes.load() > 0 && syncs.load() > 0 &&
           bytes_checked.load() > 0;
  }
  static constexpr uint64_t kMinAppends = 50;

  void Fail(const std::string& message) {
    failures.fetch_add(1);
    std::lock_guard lock(failure_mu);
    if (failure_messages.size() < 20) failure_messages.push_back(message);
  }

  // Waits until the writer has made `count` more appends (or time is up).
  // With `or_backlog`, also when the writer stands back for the pruner.
  bool WaitForAppends(uint64_t since, uint64_t count, bool or_backlog = false) {
    while (Running()) {
      if (appends.load() >= since + count || (or_backlog && Backlogged())) return true;
      std::this_thread::yield();
    }
    return false;
  }
};

// Checks `n` bytes read at `offset` for a request of `len`. With
// `zeros_below_head_ok`, zero bytes are accepted at offsets a prune may have
// punched since the range was mapped (an extent is a handle on the backing
// file, not a snapshot).
void CheckRead(Shared& s, ReadMode mode, uint64_t offset, size_t len, const std::byte* data, size_t n,
               bool zeros_below_head_ok = false) {
  s.reads.fetch_add(1, std::memory_order_relaxed);
  if (n > len) {
    s.Fail(std::string(Name(mode)) + " at " + std::to_string(offset) + " returned " + std::to_string(n) +
           " bytes for a request of " + std::to_string(len));
    return;
  }
  if (n > 0 && offset + n > s.max_end_allowed.load()) {
    s.Fail(std::string(Name(mode)) + " at " + std::to_string(offset) + " returned bytes up to " +
           std::to_string(offset + n) + ", past any end the file ever had");
  }
  for (size_t i = 0; i < n; ++i) {
    if (data[i] == PatternByte(offset + i)) continue;
    const bool below_head = offset + i < s.max_head_allowed.load();
    if (data[i] == std::byte{0} && below_head && zeros_below_head_ok) {
      s.punched_zeros_via_extent.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    s.Fail(std::string(Name(mode)) + " read " + std::to_string(offset) + "+" + std::to_string(len) +
           ": wrong byte at " + std::to_string(offset + i) + " (got " + std::to_string(int(data[i])) +
           ", expected " + std::to_string(int(PatternByte(offset + i))) + ")" +
           (below_head && data[i] == std::byte{0} ? " - a zero below the head: a punch raced the read" : ""));
    return;
  }
  s.bytes_checked.fetch_add(n, std::memory_order_relaxed);
}

void CheckError(Shared& s, ReadMode mode, uint64_t offset, const std::error_code& error) {
  if (error.value() == ENODATA) {
    s.enodata.fetch_add(1, std::memory_order_relaxed);
    if (offset >= s.max_head_allowed.load()) {
      s.Fail(std::string(Name(mode)) + " at " + std::to_string(offset) + " failed with ENODATA, but no head ever " +
             "passed " + std::to_string(s.max_head_allowed.load()));
    }
    return;
  }
  s.Fail(std::string(Name(mode)) + " at " + std::to_string(offset) + " failed: " + error.message());
}

void Reader(Shared& s, int id, ReadMode mode) {
  std::mt19937_64 rng(1000 + id);
  PreReader pre_reader(s.file, 16 << 10);
  std::vector<std::byte> buf(64 << 10);
  uint64_t sequential_next = 0;
  while (s.Running()) {
    const uint64_t head = s.file.Head();
    const uint64_t size = s.file.Size();
    uint64_t offset;
    const unsigned pick = rng() % 100;
    if (mode == ReadMode::kPreReader && pick < 60) {
      offset = sequential_next;  // a sequential scan, what PreReader is for
    } else if (pick < 70 && size > head) {
      offset = head + rng() % (size - head);
    } else if (pick < 85) {
      offset = head - std::min<uint64_t>(head, rng() % 8192);
    } else {
      offset = size - std::min<uint64_t>(size, 300) + rng() % 600;
    }
    const size_t len = 1 + rng() % (mode == ReadMode::kPreReader ? 2048 : buf.size());

    if (mode == ReadMode::kMapRange) {
      auto extents = s.file.MapRange(offset, len);
      if (!extents) {
        CheckError(s, mode, offset, extents.error());
        continue;
      }
      size_t total = 0;
      for (const Extent& e : *extents) total += e.length;
      if (total > len) {
        s.Fail("MapRange at " + std::to_string(offset) + " mapped " + std::to_string(total) + " bytes for " +
               std::to_string(len));
        continue;
      }
      uint64_t position = offset;
      for (const Extent& e : *extents) {
        ssize_t got = ::pread(e.fd->get(), buf.data(), e.length, static_cast<off_t>(e.file_offset));
        if (got < 0) {
          s.Fail("pread on a MapRange extent failed: " + std::string(std::strerror(errno)));
          break;
        }
        // Short when a truncate cut the segment file after mapping.
        CheckRead(s, mode, position, e.length, buf.data(), static_cast<size_t>(got), /*zeros_below_head_ok=*/true);
        if (static_cast<size_t>(got) < e.length) break;
        position += e.length;
      }
      continue;
    }

    std::span<std::byte> target(buf.data(), len);
    auto n = mode == ReadMode::kReadAt ? s.file.ReadAt(offset, target) : pre_reader.ReadAt(offset, target);
    if (!n) {
      CheckError(s, mode, offset, n.error());
      sequential_next = s.file.Head();
      continue;
    }
    CheckRead(s, mode, offset, len, buf.data(), *n);
    sequential_next = *n == 0 ? s.file.Head() : offset + *n;
  }
}

void Writer(Shared& s) {
  std::mt19937_64 rng(1);
  while (s.Running()) {
    if (s.Backlogged()) {
      std::this_thread::yield();  // let the pruner catch up
      continue;
    }
    // Mostly small records, sometimes several segments at once.
    const size_t len = rng() % 10 == 0 ? 1 + rng() % (5 * kSegmentSize) : 1 + rng() % 700;
    while (s.truncate_wanted.load() && s.Running()) std::this_thread::yield();
    std::lock_guard lock(s.mutate_mu);
    const uint64_t start = s.file.Size();
    uint64_t end = start + len;
    uint64_t seen = s.max_end_allowed.load();
    while (seen < end && !s.max_end_allowed.compare_exchange_weak(seen, end)) {
    }
    auto offset = s.file.Append(PatternBytes(start, len));
    if (!offset) {
      s.Fail("Append failed: " + offset.error().message());
      s.stop = true;
      return;
    }
    if (*offset != start) {
      s.Fail("Append returned " + std::to_string(*offset) + ", expected " + std::to_string(start));
      s.stop = true;
      return;
    }
    s.appends.fetch_add(1);
  }
}

void Truncater(Shared& s) {
  std::mt19937_64 rng(2);
  while (s.WaitForAppends(s.appends.load(), 4)) {
    s.truncate_wanted = true;
    std::lock_guard lock(s.mutate_mu);
    s.truncate_wanted = false;
    const uint64_t size = s.file.Size();
    const uint64_t head = s.file.Head();
    uint64_t n;
    if (rng() % 10 == 0) {
      n = head == 0 ? 0 : rng() % head;  // below the head: the file empties, head drops to n
    } else {
      n = size - std::min<uint64_t>(size - head, rng() % (3 * kSegmentSize));
    }
    if (auto cut = s.file.Truncate(n); !cut) {
      s.Fail("Truncate(" + std::to_string(n) + ") failed: " + cut.error().message());
      s.stop = true;
      return;
    }
    if (s.file.Size() != n) s.Fail("Size() after Truncate(" + std::to_string(n) + ") is " + std::to_string(s.file.Size()));
    s.truncates.fetch_add(1);
  }
}

void Pruner(Shared& s) {
  std::mt19937_64 rng(3);
  while (s.WaitForAppends(s.appends.load(), 3, /*or_backlog=*/true)) {
    const uint64_t size = s.file.Size();
    uint64_t n = rng() % 20 == 0 ? size : size - std::min<uint64_t>(size, rng() % (kMaxLive / 2));
    uint64_t seen = s.max_head_allowed.load();
    while (seen < n && !s.max_head_allowed.compare_exchange_weak(seen, n)) {
    }
    if (auto pruned = s.file.PruneHead(n); !pruned) {
      s.Fail("PruneHead(" + std::to_string(n) + ") failed: " + pruned.error().message());
      s.stop = true;
      return;
    }
    s.prunes.fetch_add(1);
  }
}

void Syncer(Shared& s) {
  while (s.WaitForAppends(s.appends.load(), 8)) {
    if (auto synced = s.file.Sync(); !synced) {
      s.Fail("Sync failed: " + synced.error().message());
      s.stop = true;
      return;
    }
    s.syncs.fetch_add(1);
  }
}

class ConcurrencyTest : public ::testing::TestWithParam<size_t> {
 protected:
  TempDir tmp_;
};

TEST_P(ConcurrencyTest, ReadersSeeOnlyPatternBytesWhileFileChanges) {
  Options options = OptionsWithSegmentSize(kSegmentSize, GetParam());
  options.max_open_segments = 16;  // evictions happen all the time too
  const std::string dir = tmp_.Sub("file");
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(dir, options));

  Shared s(*file, Clock::now() + std::chrono::milliseconds(1500));
  std::vector<std::thread> threads;
  const ReadMode modes[kReaders] = {ReadMode::kReadAt, ReadMode::kPreReader, ReadMode::kMapRange, ReadMode::kReadAt};
  for (int i = 0; i < kReaders; ++i) threads.emplace_back(Reader, std::ref(s), i, modes[i]);
  threads.emplace_back(Writer, std::ref(s));
  threads.emplace_back(Truncater, std::ref(s));
  threads.emplace_back(Pruner, std::ref(s));
  threads.emplace_back(Syncer, std::ref(s));
  for (auto& t : threads) t.join();

  {
    std::lock_guard lock(s.failure_mu);
    for (const std::string& message : s.failure_messages) ADD_FAILURE() << message;
  }
  EXPECT_EQ(s.failures.load(), 0u);
  RecordProperty("reads", static_cast<int>(s.reads.load()));
  RecordProperty("appends", static_cast<int>(s.appends.load()));
  std::cout << "reads " << s.reads.load() << ", bytes checked " << s.bytes_checked.load() << ", ENODATA "
            << s.enodata.load() << ", appends " << s.appends.load() << ", truncates " << s.truncates.load()
            << ", prunes " << s.prunes.load() << ", syncs " << s.syncs.load() << ", punched zeros via extents "
            << s.punched_zeros_via_extent.load() << ", final head " << file->Head() << " size " << file->Size()
            << "\n";
  // The run must have exercised what it claims to.
  EXPECT_GT(s.appends.load(), Shared::kMinAppends);
  EXPECT_GT(s.truncates.load(), 0u);
  EXPECT_GT(s.prunes.load(), 0u);
  EXPECT_GT(s.syncs.load(), 0u);
  EXPECT_GT(s.bytes_checked.load(), 0u);

  // Quiet now: everything the file holds is the pattern, before and after a reopen.
  ASSERT_OK(file->Sync());
  EXPECT_EQ(file->DurableSize(), file->Size());
  testing::ExpectWellFormed(*file);
  const uint64_t head = file->Head();
  const uint64_t size = file->Size();
  ASSERT_OK_AND_ASSIGN(auto all, testing::ReadRange(*file, head, size - head));
  EXPECT_TRUE(all == PatternBytes(head, size - head));
  file.reset();
  ASSERT_OK_AND_ASSIGN(file, HPFile::Open(dir, options));
  EXPECT_EQ(file->Head(), head);
  EXPECT_EQ(file->Size(), size);
  ASSERT_OK_AND_ASSIGN(all, testing::ReadRange(*file, head, size - head));
  EXPECT_TRUE(all == PatternBytes(head, size - head));
  testing::ExpectWellFormed(*file);
}

// An Io that can hold one Pread until the test lets it go, to put another
// operation exactly between a reader's decision to read and its pread.
class GatedIo final : public ForwardingIo {
 public:
  void ArmPreadGate() {
    std::lock_guard lock(mu_);
    armed_ = true;
    entered_ = false;
    released_ = false;
  }
  // Waits until a gated Pread is waiting; false after `timeout`.
  bool WaitUntilEntered(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return entered_; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

  Result<size_t> Pread(int fd, std::span<std::byte> buf, uint64_t offset) override {
    {
      std::unique_lock lock(mu_);
      if (armed_) {
        armed_ = false;
        entered_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return released_; });
      }
    }
    return ForwardingIo::Pread(fd, buf, offset);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool entered_ = false;
  bool released_ = false;
};

// A read that has found its bytes above the head, and a prune that moves the
// head past them and punches them out before the read's pread runs: the read
// must answer ENODATA (or the bytes), never the punched zeros.
TEST(ConcurrencyRaceTest, ReadRacingPruneNeverReturnsPunchedZeros) {
  TempDir tmp;
  if (!testing::PunchHoleReleasesBlocks(tmp.path())) {
    GTEST_SKIP() << "the filesystem under /tmp cannot punch holes";
  }
  GatedIo io;
  Options options = OptionsWithSegmentSize(1 << 20);
  options.io = &io;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(tmp.Sub("file"), options));
  ASSERT_OK(file->Append(PatternBytes(0, 256 << 10)));

  io.ArmPreadGate();
  std::vector<std::byte> buf(4096);
  Result<size_t> read_result = 0;
  std::thread reader([&] { read_result = file->ReadAt(8192, buf); });
  ASSERT_TRUE(io.WaitUntilEntered(std::chrono::seconds(10))) << "the read never reached pread";

  // The prune may legitimately wait for the read; then the read wins and is
  // checked the same way. Let it run while the read is held, and release the
  // read once the prune is done or has had ample time.
  std::atomic<bool> pruned{false};
  std::thread pruner([&] {
    EXPECT_OK(file->PruneHead(128 << 10));
    pruned = true;
  });
  const auto give_up = Clock::now() + std::chrono::seconds(2);
  while (!pruned.load() && Clock::now() < give_up) std::this_thread::yield();
  io.Release();
  reader.join();
  pruner.join();

  EXPECT_EQ(file->Head(), 128u << 10);
  if (read_result.has_value()) {
    ASSERT_EQ(*read_result, buf.size());
    auto diff = testing::FirstDifference(buf, PatternBytes(8192, buf.size()));
    EXPECT_FALSE(diff.has_value()) << "ReadAt returned " << (buf[diff.value_or(0)] == std::byte{0} ? "zeros" : "wrong bytes")
                                   << " at offset " << 8192 + diff.value_or(0)
                                   << " punched by a prune that ran during the read; expected ENODATA or the data";
  } else {
    EXPECT_EQ(read_result.error().value(), ENODATA) << read_result.error().message();
  }
}

INSTANTIATE_TEST_SUITE_P(WriteBuffer, ConcurrencyTest, ::testing::Values(0, 64 << 10),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return info.param == 0 ? std::string("WriteThrough") : std::string("Buffered");
                         });

}  // namespace
}  // namespace hpfile
