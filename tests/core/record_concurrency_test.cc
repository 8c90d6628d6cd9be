// SPDX-License-Identifier: Apache-2.0
// Readers and snapshot readers of a RecordLog running beside its writer. Every
// element carries its id and the position it was appended at, so a reader
// can tell a whole element from a torn or mixed one without a model. Sized
// to run under ThreadSanitizer too.
#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/record_log.h"
#include "tests/core/record_test_util.h"
#include "tests/core/test_util.h"

namespace hpfile::testing {
namespace {

constexpr size_t kHeader = 16;

// id (8 bytes), position (8 bytes), then bytes seeded by the id.
std::vector<std::byte> Tagged(uint64_t id, uint64_t position, uint32_t element_size) {
  const size_t size = element_size != 0 ? element_size : kHeader + (id * 2654435761ull >> 9) % 200;
  std::vector<std::byte> out = SeededBytes(id, 0, size);
  std::memcpy(out.data(), &id, 8);
  std::memcpy(out.data() + 8, &position, 8);
  return out;
}

struct Tag {
  uint64_t id = 0;
  uint64_t position = 0;
};

// The element's tag, or a failure when its bytes are not those of one element.
::testing::AssertionResult Whole(const std::vector<std::byte>& element, uint32_t element_size, Tag& tag) {
  if (element.size() < kHeader) return ::testing::AssertionFailure() << "element of " << element.size() << " bytes";
  std::memcpy(&tag.id, element.data(), 8);
  std::memcpy(&tag.position, element.data() + 8, 8);
  if (element != Tagged(tag.id, tag.position, element_size)) {
    return ::testing::AssertionFailure() << "element with id " << tag.id << " is torn or mixed";
  }
  return ::testing::AssertionSuccess();
}

class RecordConcurrencyTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  uint32_t element_size() const { return GetParam(); }

  std::unique_ptr<RecordLog> OpenLog() {
    // Syncs are not what is under test here, and real ones would make the
    // writer too slow for the readers to meet many of its changes.
    auto log = RecordLog::Open(dir_ / "log", RecordOptions(element_size(), 4096, &no_flush_));
    EXPECT_TRUE(log.has_value()) << log.error().message();
    return log ? std::move(*log) : nullptr;
  }

  // Reads random positions until `stop`; counts whole elements read.
  void PlainReader(const RecordLog& log, const std::atomic<bool>& stop, bool positions_fixed, uint64_t seed,
                   std::atomic<uint64_t>& reads) {
    std::mt19937_64 rng(seed);
    std::vector<std::byte> element;
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t first = log.First();
      const uint64_t end = log.SizeUnsynced();
      if (end <= first) continue;
      const uint64_t position = std::uniform_int_distribution<uint64_t>(first, end - 1)(rng);
      auto got = log.ReadInto(position, element);
      if (!got) {
        // The element may have been pruned or rewound since the figures were read.
        const int err = got.error().value();
        ASSERT_TRUE(err == ENODATA || err == ERANGE) << "position " << position << ": " << got.error().message();
        continue;
      }
      Tag tag;
      ASSERT_TRUE(Whole(element, element_size(), tag)) << "position " << position;
      if (positions_fixed) {
        ASSERT_EQ(tag.position, position);
      }
      reads.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // Scans with a RecordReader until `stop`, from the head to the end and
  // over again; counts whole elements read.
  void ViewReader(const RecordLog& log, const std::atomic<bool>& stop, std::atomic<uint64_t>& reads) {
    RecordReader reader(log, /*buffer_size=*/4096);
    std::vector<std::byte> element;
    uint64_t position = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      if (position < log.First() || position >= log.SizeUnsynced()) position = log.First();
      auto got = reader.Read(position);
      if (!got) {
        const int err = got.error().value();
        ASSERT_TRUE(err == ENODATA || err == ERANGE) << "position " << position << ": " << got.error().message();
        position = log.First();
        continue;
      }
      element.assign(got->bytes.begin(), got->bytes.end());
      Tag tag;
      ASSERT_TRUE(Whole(element, element_size(), tag)) << "position " << position;
      ASSERT_EQ(tag.position, position);
      ++position;
      reads.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // Takes snapshots until `stop` and reads each whole: every element intact,
  // ids growing with positions.
  void SnapshotReader(const RecordLog& log, const std::atomic<bool>& stop, bool positions_fixed,
                      std::atomic<uint64_t>& snapshots) {
    std::vector<std::byte> element;
    while (!stop.load(std::memory_order_relaxed)) {
      auto snap = log.Snapshot();
      ASSERT_TRUE(snap.has_value()) << snap.error().message();
      uint64_t last_id = 0;
      for (uint64_t p = snap->First(); p < snap->Size(); ++p) {
        auto got = snap->ReadInto(p, element);
        ASSERT_TRUE(got.has_value()) << "snapshot position " << p << ": " << got.error().message();
        Tag tag;
        ASSERT_TRUE(Whole(element, element_size(), tag)) << "snapshot position " << p;
        if (positions_fixed) {
          ASSERT_EQ(tag.position, p);
        }
        if (p > snap->First()) {
          ASSERT_GT(tag.id, last_id) << "snapshot position " << p;
        }
        last_id = tag.id;
      }
      snapshots.fetch_add(1, std::memory_order_relaxed);
    }
  }

  TempDir dir_;
  NoFlushIo no_flush_;
};

INSTANTIATE_TEST_SUITE_P(Sizes, RecordConcurrencyTest, ::testing::Values(0u, 32u),
                         [](const auto& info) { return info.param == 0 ? std::string("Variable") : "Fixed"; });

TEST_P(RecordConcurrencyTest, ReadersSeeWholeElementsWhileTheWriterAppendsRewindsAndPrunes) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> snapshots{0};
  std::vector<std::thread> readers;
  for (uint64_t t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] { PlainReader(*log, stop, /*positions_fixed=*/true, t, reads); });
  }
  readers.emplace_back([&] { SnapshotReader(*log, stop, /*positions_fixed=*/true, snapshots); });
  std::atomic<uint64_t> view_reads{0};
  readers.emplace_back([&] { ViewReader(*log, stop, view_reads); });

  std::mt19937_64 rng(42);
  uint64_t next_id = 1;
  // At least 300 rounds, and on until the readers have had their turn.
  auto more = [&](int round) {
    return (round < 300 || reads.load() < 100 || view_reads.load() < 100 || snapshots.load() < 3) && round < 100000;
  };
  for (int round = 0; more(round) && !::testing::Test::HasFailure(); ++round) {
    const int appends = static_cast<int>(rng() % 20) + 1;
    for (int i = 0; i < appends; ++i) {
      const uint64_t position = log->SizeUnsynced();
      ASSERT_OK(log->Append(Tagged(next_id++, position, element_size())));
    }
    switch (rng() % 6) {
      case 0:
        log->Discard();
        break;
      case 1: {
        const uint64_t end = log->SizeUnsynced();
        const uint64_t back = std::min<uint64_t>(end - log->First(), rng() % 30);
        ASSERT_OK(log->Rewind(end - back));
        break;
      }
      default:
        break;
    }
    if (rng() % 3 != 0) {
      ASSERT_OK(log->Flush());
    }
    if (log->Size() > 300) {
      ASSERT_OK(log->PruneHead(log->Size() - 200));
    }
  }
  ASSERT_OK(log->Flush());
  stop.store(true);
  for (std::thread& reader : readers) reader.join();
  EXPECT_GT(reads.load(), 0u);
  EXPECT_GT(view_reads.load(), 0u);
  EXPECT_GT(snapshots.load(), 0u);
}

TEST_P(RecordConcurrencyTest, ReadersSeeWholeElementsWhileTheWriterCompacts) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> snapshots{0};
  std::vector<std::thread> readers;
  readers.emplace_back([&] { PlainReader(*log, stop, /*positions_fixed=*/false, 7, reads); });
  readers.emplace_back([&] { SnapshotReader(*log, stop, /*positions_fixed=*/false, snapshots); });

  std::mt19937_64 rng(7);
  uint64_t next_id = 1;
  auto more = [&](int round) { return (round < 60 || reads.load() < 100 || snapshots.load() < 3) && round < 20000; };
  for (int round = 0; more(round) && !::testing::Test::HasFailure(); ++round) {
    for (int i = 0; i < 25; ++i) ASSERT_OK(log->Append(Tagged(next_id++, 0, element_size())));
    ASSERT_OK(log->Flush());
    std::vector<uint64_t> removed;
    for (int i = 0; i < 5; ++i) removed.push_back(log->First() + rng() % (log->Size() - log->First()));
    ASSERT_OK(log->Compact(removed));
    if (log->Size() - log->First() > 200) {
      ASSERT_OK(log->PruneHead(log->Size() - 150));
    }
  }
  stop.store(true);
  for (std::thread& reader : readers) reader.join();
  EXPECT_GT(reads.load(), 0u);
  EXPECT_GT(snapshots.load(), 0u);
}

}  // namespace
}  // namespace hpfile::testing
