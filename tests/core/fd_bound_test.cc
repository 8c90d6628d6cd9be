// SPDX-License-Identifier: Apache-2.0
// A file with far more segments than max_open_segments must be readable
// everywhere while the process's descriptor count stays bounded by the limit
// plus the writer's tail descriptor.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/fault_io.h"
#include "core/hpfile.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::CountOpenFds;
using testing::OptionsWithSegmentSize;
using testing::PatternBytes;
using testing::TempDir;

constexpr uint64_t kSegmentSize = 16;
constexpr uint64_t kSegments = 10000;
constexpr uint64_t kFileSize = kSegmentSize * kSegments - 5;  // the tail is not full
constexpr size_t kLimit = 32;

class FdBoundTest : public ::testing::Test {
 protected:
  // Creating ten thousand files costs seconds on a journaling filesystem, so
  // the suite builds the file once; every test only reads it (or puts it back
  // as it found it).
  static void SetUpTestSuite() {
    tmp_ = new TempDir;
    Build();
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(built_) << "building the file failed; see the first test's output"; }

  static std::string Dir() { return tmp_->Sub("file"); }
  // Reopens the built file under the limit; never creates another.
  static Options ExistingFileOptions() {
    Options options;
    options.max_open_segments = kLimit;
    options.create_if_missing = false;
    return options;
  }

  // Builds the file by appending, under the same limit, and checks the count
  // while doing so: the writer's descriptors are bounded too.
  static void Build() {
    Options options = OptionsWithSegmentSize(kSegmentSize);
    options.max_open_segments = kLimit;
    const size_t baseline = CountOpenFds();
    auto file = HPFile::Open(Dir(), options);
    ASSERT_TRUE(file.has_value()) << file.error().message();
    size_t peak = 0;
    for (uint64_t offset = 0; offset < kFileSize;) {
      // 1601 bytes: each append starts at a different place in its segment.
      size_t len = static_cast<size_t>(std::min<uint64_t>(1601, kFileSize - offset));
      auto start = (*file)->Append(PatternBytes(offset, len));
      ASSERT_TRUE(start.has_value()) << start.error().message();
      ASSERT_EQ(*start, offset);
      offset += len;
      peak = std::max(peak, CountOpenFds() - baseline);
    }
    EXPECT_LE(peak, kLimit + 1) << "appending opened too many descriptors";
    EXPECT_LE((*file)->OpenDescriptors(), kLimit + 1);
    ASSERT_EQ((*file)->Segments().size(), kSegments);
    built_ = true;
  }

  static inline TempDir* tmp_ = nullptr;
  static inline bool built_ = false;
};

// Reads one range and checks its bytes; returns false (after reporting) on a
// mismatch so that a broken file does not produce ten thousand failures.
bool ReadAndCheck(const HPFile& file, uint64_t offset, size_t len) {
  std::vector<std::byte> buf(len);
  auto n = file.ReadAt(offset, buf);
  if (!n) {
    ADD_FAILURE() << "ReadAt(" << offset << ", " << len << "): " << n.error().message();
    return false;
  }
  const size_t want = static_cast<size_t>(std::min<uint64_t>(len, kFileSize - offset));
  if (*n != want) {
    ADD_FAILURE() << "ReadAt(" << offset << ", " << len << ") returned " << *n << ", expected " << want;
    return false;
  }
  buf.resize(*n);
  if (buf != PatternBytes(offset, *n)) {
    ADD_FAILURE() << "ReadAt(" << offset << ", " << len << ") returned wrong bytes";
    return false;
  }
  return true;
}

// Single-threaded: after every read, no read is in flight, so nothing
// transient may be open. The only descriptors the file may hold are the
// cache's (at most kLimit) and the writer's tail (one); the fd-count probe's
// own descriptor is excluded by CountOpenFds. So no slack at all.
TEST_F(FdBoundTest, SequentialAndRandomReadsAcrossAllSegmentsStayWithinLimit) {
  const size_t baseline = CountOpenFds();
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), ExistingFileOptions()));
  ASSERT_EQ(file->Size(), kFileSize);
  size_t peak = CountOpenFds() - baseline;

  auto sample = [&] {
    const size_t open_now = CountOpenFds() - baseline;
    peak = std::max(peak, open_now);
    EXPECT_LE(file->OpenDescriptors(), kLimit + 1);
    return open_now <= kLimit + 1;
  };

  // Segment by segment, then with reads that straddle boundaries.
  for (uint64_t offset = 0; offset < kFileSize; offset += kSegmentSize) {
    if (!ReadAndCheck(*file, offset, kSegmentSize)) return;
    ASSERT_TRUE(sample()) << "after reading at " << offset << ": " << CountOpenFds() - baseline << " open";
  }
  for (uint64_t offset = 7; offset < kFileSize; offset += 24) {
    if (!ReadAndCheck(*file, offset, 24)) return;
    ASSERT_TRUE(sample()) << "after reading at " << offset;
  }
  std::mt19937_64 rng(20240611);
  for (int i = 0; i < 5000; ++i) {
    uint64_t offset = rng() % kFileSize;
    size_t len = 1 + rng() % 100;
    if (!ReadAndCheck(*file, offset, len)) return;
    ASSERT_TRUE(sample()) << "after random read " << i << " at " << offset;
  }
  // Large reads touching hundreds of segments each.
  for (int i = 0; i < 20; ++i) {
    uint64_t offset = rng() % kFileSize;
    if (!ReadAndCheck(*file, offset, 8000)) return;
    ASSERT_TRUE(sample()) << "after large read at " << offset;
  }
  RecordProperty("peak_extra_fds", static_cast<int>(peak));
  EXPECT_LE(peak, kLimit + 1);

  // Appending after all that still fits: the writer's descriptor is the +1.
  ASSERT_OK(file->Append(PatternBytes(kFileSize, 100)));
  EXPECT_LE(CountOpenFds() - baseline, kLimit + 1);
  ASSERT_OK(file->Truncate(kFileSize));  // as the other tests expect it
  file.reset();
  EXPECT_EQ(CountOpenFds(), baseline) << "closing the file must close every descriptor";
}

// Reading through MapRange keeps extents' descriptors alive only while the
// caller holds them.
TEST_F(FdBoundTest, MapRangeExtentsReleasedKeepTheBound) {
  const size_t baseline = CountOpenFds();
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), ExistingFileOptions()));
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    uint64_t offset = rng() % kFileSize;
    ASSERT_OK_AND_ASSIGN(auto extents, file->MapRange(offset, 64));
    size_t total = 0;
    for (auto& e : extents) total += e.length;
    ASSERT_EQ(total, std::min<uint64_t>(64, kFileSize - offset));
    extents.clear();
    ASSERT_LE(CountOpenFds() - baseline, kLimit + 1) << "after MapRange " << i;
  }
}

// Four readers at once, sampled from a fifth thread while they read. Beyond
// the cache and the tail, each in-flight reader may hold one descriptor that
// the cache has just evicted (it stays open until that reader's pread ends)
// or just opened and not yet inserted; a reader holds one at a time, so the
// slack is one per reader.
TEST_F(FdBoundTest, ConcurrentReadersStayWithinLimitPlusOnePerReader) {
  constexpr int kReaders = 4;
  const size_t baseline = CountOpenFds();
  Options options;
  options.max_open_segments = kLimit;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));

  std::atomic<int> finished{0};
  std::atomic<uint64_t> failures{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      std::mt19937_64 rng(100 + r);
      std::vector<std::byte> buf(48);
      for (int i = 0; i < 4000; ++i) {
        uint64_t offset = rng() % kFileSize;
        auto n = file->ReadAt(offset, buf);
        const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), kFileSize - offset));
        if (!n || *n != want ||
            !std::equal(buf.begin(), buf.begin() + want, PatternBytes(offset, want).begin())) {
          failures.fetch_add(1);
        }
      }
      finished.fetch_add(1);
    });
  }
  size_t peak = 0;
  while (finished.load() < kReaders) peak = std::max(peak, CountOpenFds() - baseline);
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0u);
  RecordProperty("peak_extra_fds", static_cast<int>(peak));
  EXPECT_LE(peak, kLimit + 1 + kReaders);
  EXPECT_LE(file->OpenDescriptors(), kLimit + 1);
}

// The same bound seen from the I/O layer, which also catches descriptors that
// live too briefly for /proc sampling. Nothing here writes, so no tail
// descriptor is needed; the + 1 is a segment opened just before the cache
// closes the one it evicts to make room (opening happens outside its lock).
TEST_F(FdBoundTest, PeakDescriptorsThroughIoStayWithinLimit) {
  FaultIo io;
  Options options;
  options.io = &io;
  options.max_open_segments = kLimit;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  std::mt19937_64 rng(99);
  for (int i = 0; i < 5000; ++i) {
    uint64_t offset = rng() % kFileSize;
    if (!ReadAndCheck(*file, offset, 1 + rng() % 64)) return;
  }
  for (uint64_t offset = 0; offset < kFileSize; offset += 4000) {
    if (!ReadAndCheck(*file, offset, 4000)) return;
  }
  EXPECT_LE(io.PeakOpenDescriptors(), kLimit + 1);
  EXPECT_LE(io.OpenDescriptors(), kLimit + 1);
  file.reset();
  EXPECT_EQ(io.OpenDescriptors(), 0u);
}

}  // namespace
}  // namespace hpfile
