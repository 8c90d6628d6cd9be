// SPDX-License-Identifier: Apache-2.0
// Randomized model test of RecordLog: long random sequences of appends, reads,
// flushes, discards, rewinds, prunes, compactions, snapshots, reopens, process
// crashes after a prune to the end, and power losses, each checked against an
// in-memory model of what the log must hold. After a power loss every flushed
// element must be intact; after a crash no position is handed out twice.
#include <algorithm>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/fault_io.h"
#include "core/record_log.h"
#include "tests/core/record_test_util.h"
#include "tests/core/test_util.h"

namespace hpfile::testing {
namespace {

// What the log must hold. Positions index `ids` directly; entries below
// `first` are gone from the log and unused.
struct Model {
  uint64_t first = 0;
  std::vector<uint64_t> ids;  // flushed elements, [0, Size())
  std::optional<uint64_t> rewind;
  std::vector<uint64_t> pending;
  // As of the last flush or compaction: what a power loss must keep.
  uint64_t durable_first = 0;
  std::vector<uint64_t> durable_ids;

  uint64_t from_files() const { return rewind.value_or(ids.size()); }
  uint64_t size_unsynced() const { return from_files() + pending.size(); }
  // The id at `position`, or nullopt when the log has no element there.
  std::optional<uint64_t> At(uint64_t position) const {
    if (position < first || position >= size_unsynced()) return std::nullopt;
    if (position >= from_files()) return pending[position - from_files()];
    return ids[position];
  }
  void Flush() {
    ids.resize(from_files());
    ids.insert(ids.end(), pending.begin(), pending.end());
    rewind.reset();
    pending.clear();
    Durable();
  }
  void Durable() {
    durable_first = first;
    durable_ids = ids;
  }
};

struct SnapshotCase {
  RecordSnapshot snapshot;
  uint64_t first;
  std::vector<uint64_t> ids;  // positions [first, first + ids.size())
};

class RecordModelTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  uint32_t element_size() const { return GetParam(); }

  void Run(uint64_t seed, int steps);

  TempDir dir_;
};

void ExpectRead(const RecordLog& log, const Model& model, uint64_t position) {
  auto got = log.Read(position);
  auto want = model.At(position);
  if (want) {
    ASSERT_TRUE(got.has_value()) << "position " << position << ": " << got.error().message();
    ASSERT_EQ(*got, ElementFor(*want, log.element_size())) << "position " << position << " (id " << *want << ")";
  } else {
    ASSERT_FALSE(got.has_value()) << "position " << position << " should hold nothing";
    ASSERT_EQ(got.error().value(), position < model.first ? ENODATA : ERANGE) << "position " << position;
  }
}

void ExpectAll(const RecordLog& log, const Model& model) {
  ASSERT_EQ(log.First(), model.first);
  ASSERT_EQ(log.Size(), model.ids.size());
  ASSERT_EQ(log.SizeUnsynced(), model.size_unsynced());
  for (uint64_t p = model.first; p < model.size_unsynced(); ++p) ExpectRead(log, model, p);
}

void ExpectSnapshot(const SnapshotCase& c, uint32_t element_size) {
  ASSERT_EQ(c.snapshot.First(), c.first);
  ASSERT_EQ(c.snapshot.Size(), c.first + c.ids.size());
  for (size_t i = 0; i < c.ids.size(); ++i) {
    auto got = c.snapshot.Read(c.first + i);
    ASSERT_TRUE(got.has_value()) << "snapshot position " << c.first + i << ": " << got.error().message();
    ASSERT_EQ(*got, ElementFor(c.ids[i], element_size)) << "snapshot position " << c.first + i;
  }
}

void RecordModelTest::Run(uint64_t seed, int steps) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto pick = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };

  NoFlushIo base;
  FaultIo io(base);
  // Dies for a process crash: nothing more reaches the kernel.
  DyingIo dying(io);
  const std::string path = dir_ / ("log-" + std::to_string(seed));
  io.TrackDurability(dir_.path());
  // Small and uneven segments, so elements straddle segment boundaries.
  const RecordLogOptions options = RecordOptions(element_size(), 200 + 56 * (seed % 3), &dying);
  auto open = [&] {
    auto log = RecordLog::Open(path, options);
    EXPECT_TRUE(log.has_value()) << log.error().message();
    return log ? std::move(*log) : nullptr;
  };
  std::unique_ptr<RecordLog> log = open();
  ASSERT_NE(log, nullptr);
  Model model;
  std::vector<SnapshotCase> snapshots;
  uint64_t next_id = seed << 32;

  for (int step = 0; step < steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const uint64_t op = pick(0, 99);
    if (op < 35) {  // append
      const uint64_t id = next_id++;
      ASSERT_OK_AND_ASSIGN(uint64_t at, log->Append(ElementFor(id, element_size())));
      ASSERT_EQ(at, model.size_unsynced());
      model.pending.push_back(id);
    } else if (op < 55) {  // read
      const uint64_t lo = model.first >= 2 ? model.first - 2 : 0;
      ExpectRead(*log, model, pick(lo, model.size_unsynced() + 2));
    } else if (op < 63) {
      ASSERT_OK(log->Flush());
      model.Flush();
    } else if (op < 66) {
      log->Discard();
      model.rewind.reset();
      model.pending.clear();
    } else if (op < 71) {
      const uint64_t to = pick(model.first, model.size_unsynced());
      ASSERT_OK(log->Rewind(to));
      if (to >= model.from_files()) {
        model.pending.resize(to - model.from_files());
      } else {
        model.pending.clear();
        model.rewind = to;
      }
    } else if (op < 75) {
      const uint64_t to = pick(model.first, model.ids.size() + 3);
      ASSERT_OK(log->PruneHead(to));
      model.first = std::min({std::max(model.first, to), model.from_files(), uint64_t{model.ids.size()}});
    } else if (op < 78) {  // compaction, after a flush
      ASSERT_OK(log->Flush());
      model.Flush();
      std::vector<uint64_t> removed;
      const uint64_t count = pick(0, 4);
      for (uint64_t i = 0; i < count && model.first < model.ids.size(); ++i) {
        removed.push_back(pick(model.first > 3 ? model.first - 3 : 0, model.ids.size() - 1));
      }
      ASSERT_OK(log->Compact(removed));
      std::vector<uint64_t> kept(model.ids.begin(), model.ids.begin() + static_cast<std::ptrdiff_t>(model.first));
      for (uint64_t p = model.first; p < model.ids.size(); ++p) {
        if (std::find(removed.begin(), removed.end(), p) == removed.end()) kept.push_back(model.ids[p]);
      }
      model.ids = std::move(kept);
      model.Durable();
    } else if (op < 84) {  // snapshot
      ASSERT_OK_AND_ASSIGN(RecordSnapshot snap, log->Snapshot());
      SnapshotCase c{.snapshot = std::move(snap), .first = model.first, .ids = {}};
      for (uint64_t p = model.first; p < model.size_unsynced(); ++p) c.ids.push_back(*model.At(p));
      snapshots.push_back(std::move(c));
      if (snapshots.size() > 4) snapshots.erase(snapshots.begin() + static_cast<std::ptrdiff_t>(pick(0, 4)));
    } else if (op < 90) {
      for (const SnapshotCase& c : snapshots) ASSERT_NO_FATAL_FAILURE(ExpectSnapshot(c, element_size()));
    } else if (op < 93) {
      ASSERT_NO_FATAL_FAILURE(ExpectAll(*log, model));
    } else if (op < 95) {  // close and reopen: pending changes are dropped
      // The snapshots stay: the reopened log protects them as its own.
      log.reset();
      log = open();
      ASSERT_NE(log, nullptr);
      model.rewind.reset();
      model.pending.clear();
      ASSERT_NO_FATAL_FAILURE(ExpectAll(*log, model));
    } else if (op < 97) {
      // A write-ahead log that consumed everything: flush, prune to the end,
      // and the process dies (the kernel keeps every write). Segments fill
      // up now and then, so some of these prunes empty the files' tails.
      ASSERT_OK(log->Flush());
      model.Flush();
      const uint64_t end = model.ids.size();
      ASSERT_OK(log->PruneHead(end));
      snapshots.clear();  // recovery on the reopen is free to change bytes in place
      dying.DieAfter(0);
      log.reset();
      dying.Revive();
      log = open();
      ASSERT_NE(log, nullptr);
      ASSERT_FALSE(log->Damage().has_value()) << *log->Damage();
      // The unflushed prune may come back, but no position is lost or
      // handed out again.
      ASSERT_EQ(log->Size(), end);
      ASSERT_GE(log->First(), model.durable_first);
      ASSERT_LE(log->First(), end);
      for (uint64_t p = log->First(); p < end; ++p) {
        auto got = log->Read(p);
        ASSERT_TRUE(got.has_value()) << "position " << p << ": " << got.error().message();
        // A fixed-size log's punched elements come back as zeros
        // (docs/RECORDS.md, "Durability").
        const bool zeros = std::all_of(got->begin(), got->end(), [](std::byte b) { return b == std::byte{0}; });
        ASSERT_TRUE(*got == ElementFor(model.ids[p], element_size()) || (element_size() != 0 && zeros))
            << "position " << p;
      }
      ASSERT_OK(log->PruneHead(end));
      model.first = end;
      ASSERT_NO_FATAL_FAILURE(ExpectAll(*log, model));
    } else {  // power loss
      const uint64_t first_before = model.first;
      snapshots.clear();  // their descriptors would outlive the machine
      log.reset();
      ASSERT_OK(io.DropUnsyncedData());
      log = open();
      ASSERT_NE(log, nullptr);
      ASSERT_FALSE(log->Damage().has_value()) << *log->Damage();
      model.ids = model.durable_ids;
      model.rewind.reset();
      model.pending.clear();
      // A prune made after the last flush may come back.
      ASSERT_GE(log->First(), model.durable_first);
      ASSERT_LE(log->First(), std::max(first_before, model.durable_first));
      model.first = log->First();
      model.Durable();
      ASSERT_NO_FATAL_FAILURE(ExpectAll(*log, model));
    }
    if (::testing::Test::HasFatalFailure()) return;
  }
  ASSERT_NO_FATAL_FAILURE(ExpectAll(*log, model));
  for (const SnapshotCase& c : snapshots) ASSERT_NO_FATAL_FAILURE(ExpectSnapshot(c, element_size()));
}

INSTANTIATE_TEST_SUITE_P(Sizes, RecordModelTest, ::testing::Values(0u, 16u),
                         [](const auto& info) { return info.param == 0 ? std::string("Variable") : "Fixed"; });

TEST_P(RecordModelTest, RandomOperationsMatchTheModel) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    Run(seed, 1500);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace hpfile::testing
