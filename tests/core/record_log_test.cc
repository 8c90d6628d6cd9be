// SPDX-License-Identifier: Apache-2.0
// Unit tests of RecordLog: every call's edge cases, recovery of each crash
// signature, and crashes at every step of a flush and of a compaction.
#include "core/record_log.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/fault_io.h"
#include "core/record_format.h"
#include "tests/core/record_test_util.h"
#include "tests/core/test_util.h"

namespace hpfile::testing {
namespace {

namespace rf = record_format;

// Small segments, so a few hundred elements span many of them.
constexpr uint64_t kSegment = 512;

std::string GenDir(const std::string& log, uint64_t number) {
  char name[64];
  std::snprintf(name, sizeof name, "gen-%020llu", static_cast<unsigned long long>(number));
  return log + "/" + name;
}

// Runs every test for a fixed-size and a variable-size log.
class RecordLogTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  uint32_t element_size() const { return GetParam(); }
  bool fixed() const { return GetParam() != 0; }
  std::string path() const { return dir_ / "log"; }
  RecordLogOptions options(Io* io = nullptr) const { return RecordOptions(element_size(), kSegment, io); }

  // Syncs reach the disk only where a test drops unsynced data itself.
  std::unique_ptr<RecordLog> OpenLog(Io* io = nullptr) {
    auto log = RecordLog::Open(path(), options(io != nullptr ? io : &no_flush_));
    EXPECT_TRUE(log.has_value()) << log.error().message();
    return log ? std::move(*log) : nullptr;
  }

  // Appends elements with ids [from, to) and checks the positions they get.
  static void AppendIds(RecordLog& log, uint64_t from, uint64_t to, uint32_t element_size) {
    for (uint64_t id = from; id < to; ++id) {
      const uint64_t expected = log.SizeUnsynced();
      auto position = log.Append(ElementFor(id, element_size));
      ASSERT_TRUE(position.has_value()) << position.error().message();
      ASSERT_EQ(*position, expected);
    }
  }

  // Every position in [first, first + ids.size()) holds the element ids[i],
  // in a log or a snapshot.
  template <class Reader>
  static void ExpectElements(const Reader& log, uint64_t first, const std::vector<uint64_t>& ids,
                             uint32_t element_size) {
    for (size_t i = 0; i < ids.size(); ++i) {
      auto got = log.Read(first + i);
      ASSERT_TRUE(got.has_value()) << "position " << first + i << ": " << got.error().message();
      EXPECT_EQ(*got, ElementFor(ids[i], element_size)) << "position " << first + i;
    }
  }

  static std::vector<uint64_t> Ids(uint64_t from, uint64_t to) {
    std::vector<uint64_t> ids;
    for (uint64_t id = from; id < to; ++id) ids.push_back(id);
    return ids;
  }

  TempDir dir_;
  NoFlushIo no_flush_;
};

INSTANTIATE_TEST_SUITE_P(Sizes, RecordLogTest, ::testing::Values(0u, 24u),
                         [](const auto& info) { return info.param == 0 ? std::string("Variable") : "Fixed"; });

TEST_P(RecordLogTest, NewLogIsEmpty) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->First(), 0u);
  EXPECT_EQ(log->Size(), 0u);
  EXPECT_EQ(log->SizeUnsynced(), 0u);
  EXPECT_EQ(log->element_size(), element_size());
  EXPECT_FALSE(log->Damage().has_value());
  EXPECT_ERRNO(log->Read(0), ERANGE);
  EXPECT_TRUE(FileExists(path() + "/CURRENT"));
}

TEST_P(RecordLogTest, OpenWithoutCreateOfMissingLogIsEnoent) {
  auto opts = options();
  opts.create_if_missing = false;
  EXPECT_ERRNO(RecordLog::Open(path(), opts), ENOENT);
  EXPECT_FALSE(FileExists(path()));
}

TEST_P(RecordLogTest, OpenWithAnotherElementSizeIsEinval) {
  { auto log = OpenLog(); }
  auto opts = options();
  opts.element_size = fixed() ? 0 : 8;
  EXPECT_ERRNO(RecordLog::Open(path(), opts), EINVAL);
}

TEST_P(RecordLogTest, OpenWithBadSegmentSizeIsEinval) {
  auto opts = options();
  opts.segment_size = 0;
  EXPECT_ERRNO(RecordLog::Open(path(), opts), EINVAL);
}

TEST_P(RecordLogTest, PendingElementsAreReadableAndCountOnlyInSizeUnsynced) {
  auto log = OpenLog();
  AppendIds(*log, 0, 10, element_size());
  EXPECT_EQ(log->Size(), 0u);
  EXPECT_EQ(log->SizeUnsynced(), 10u);
  ExpectElements(*log, 0, Ids(0, 10), element_size());
  EXPECT_ERRNO(log->Read(10), ERANGE);
}

TEST_P(RecordLogTest, FlushMakesElementsDurableAcrossReopen) {
  {
    auto log = OpenLog();
    AppendIds(*log, 0, 100, element_size());
    ASSERT_OK(log->Flush());
    EXPECT_EQ(log->Size(), 100u);
    ExpectElements(*log, 0, Ids(0, 100), element_size());
    AppendIds(*log, 100, 105, element_size());  // pending: lost on close
  }
  auto log = OpenLog();
  EXPECT_EQ(log->Size(), 100u);
  EXPECT_EQ(log->SizeUnsynced(), 100u);
  ExpectElements(*log, 0, Ids(0, 100), element_size());
  EXPECT_ERRNO(log->Read(100), ERANGE);
  EXPECT_TRUE(log->RecoveryLog().empty()) << log->RecoveryLog().front();
}

TEST_P(RecordLogTest, FixedSizeLogRejectsOtherSizes) {
  auto log = OpenLog();
  if (fixed()) {
    EXPECT_ERRNO(log->Append(ElementFor(0, element_size() + 1)), EINVAL);
    EXPECT_ERRNO(log->Append({}), EINVAL);
  } else {
    // Empty elements are elements too.
    ASSERT_OK_AND_ASSIGN(uint64_t at, log->Append({}));
    ASSERT_OK(log->Flush());
    ASSERT_OK_AND_ASSIGN(auto got, log->Read(at));
    EXPECT_TRUE(got.empty());
  }
  EXPECT_EQ(log->SizeUnsynced(), fixed() ? 0u : 1u);
}

TEST_P(RecordLogTest, DiscardDropsPendingAppendsAndRewind) {
  auto log = OpenLog();
  AppendIds(*log, 0, 10, element_size());
  ASSERT_OK(log->Flush());
  AppendIds(*log, 10, 15, element_size());
  log->Discard();
  EXPECT_EQ(log->SizeUnsynced(), 10u);
  EXPECT_ERRNO(log->Read(10), ERANGE);
  ASSERT_OK(log->Rewind(4));
  EXPECT_ERRNO(log->Read(4), ERANGE);
  log->Discard();
  EXPECT_EQ(log->SizeUnsynced(), 10u);
  ExpectElements(*log, 0, Ids(0, 10), element_size());
  // The next append goes where the discarded ones went.
  ASSERT_OK_AND_ASSIGN(uint64_t at, log->Append(ElementFor(99, element_size())));
  EXPECT_EQ(at, 10u);
}

TEST_P(RecordLogTest, RewindWithinPendingDropsLaterPendingElements) {
  auto log = OpenLog();
  AppendIds(*log, 0, 10, element_size());
  ASSERT_OK(log->Flush());
  AppendIds(*log, 10, 20, element_size());
  ASSERT_OK(log->Rewind(15));
  EXPECT_EQ(log->SizeUnsynced(), 15u);
  ExpectElements(*log, 0, Ids(0, 15), element_size());
  EXPECT_ERRNO(log->Read(15), ERANGE);
  ASSERT_OK(log->Flush());
  EXPECT_EQ(log->Size(), 15u);
}

TEST_P(RecordLogTest, RewindOfFlushedElementsIsPendingUntilFlush) {
  auto log = OpenLog();
  AppendIds(*log, 0, 50, element_size());
  ASSERT_OK(log->Flush());
  ASSERT_OK(log->Rewind(20));
  EXPECT_EQ(log->Size(), 50u);
  EXPECT_EQ(log->SizeUnsynced(), 20u);
  EXPECT_ERRNO(log->Read(20), ERANGE);
  AppendIds(*log, 1000, 1010, element_size());  // positions 20..29
  std::vector<uint64_t> expected = Ids(0, 20);
  for (uint64_t id = 1000; id < 1010; ++id) expected.push_back(id);
  ExpectElements(*log, 0, expected, element_size());
  ASSERT_OK(log->Flush());
  EXPECT_EQ(log->Size(), 30u);
  ExpectElements(*log, 0, expected, element_size());
  log.reset();
  log = OpenLog();
  EXPECT_EQ(log->Size(), 30u);
  ExpectElements(*log, 0, expected, element_size());
}

TEST_P(RecordLogTest, RewindToZeroThenFlushEmptiesTheLog) {
  auto log = OpenLog();
  AppendIds(*log, 0, 30, element_size());
  ASSERT_OK(log->Flush());
  ASSERT_OK(log->Rewind(0));
  ASSERT_OK(log->Flush());
  EXPECT_EQ(log->Size(), 0u);
  AppendIds(*log, 500, 505, element_size());
  ASSERT_OK(log->Flush());
  log.reset();
  log = OpenLog();
  ExpectElements(*log, 0, Ids(500, 505), element_size());
  EXPECT_EQ(log->Size(), 5u);
}

TEST_P(RecordLogTest, RewindOutsideTheLogIsEinval) {
  auto log = OpenLog();
  AppendIds(*log, 0, 20, element_size());
  ASSERT_OK(log->Flush());
  EXPECT_ERRNO(log->Rewind(21), EINVAL);
  ASSERT_OK(log->PruneHead(5));
  EXPECT_ERRNO(log->Rewind(4), EINVAL);
  ASSERT_OK(log->Rewind(5));
  EXPECT_EQ(log->SizeUnsynced(), 5u);
  ASSERT_OK(log->Rewind(5));  // the end itself
}

TEST_P(RecordLogTest, PruneHeadKeepsPositionsAndDeletesSegments) {
  auto log = OpenLog();
  AppendIds(*log, 0, 200, element_size());
  ASSERT_OK(log->Flush());
  const std::string data_dir = GenDir(path(), 1) + "/data";
  const size_t segments_before = SegmentFilesOnDisk(data_dir).size();
  ASSERT_OK(log->PruneHead(150));
  EXPECT_EQ(log->First(), 150u);
  EXPECT_EQ(log->Size(), 200u);
  EXPECT_ERRNO(log->Read(149), ENODATA);
  EXPECT_ERRNO(log->Read(0), ENODATA);
  ExpectElements(*log, 150, Ids(150, 200), element_size());
  EXPECT_LT(SegmentFilesOnDisk(data_dir).size(), segments_before);
  // A lower position is a no-op, and appends continue at the same positions.
  ASSERT_OK(log->PruneHead(10));
  EXPECT_EQ(log->First(), 150u);
  ASSERT_OK_AND_ASSIGN(uint64_t at, log->Append(ElementFor(200, element_size())));
  EXPECT_EQ(at, 200u);
  ASSERT_OK(log->Flush());
  log.reset();
  log = OpenLog();
  EXPECT_EQ(log->First(), 150u);
  EXPECT_EQ(log->Size(), 201u);
  ExpectElements(*log, 150, Ids(150, 201), element_size());
}

TEST_P(RecordLogTest, PruneHeadAndSnapshotCopyNoElementData) {
  FaultIo io(no_flush_);
  auto log = OpenLog(&io);
  AppendIds(*log, 0, 2000, element_size());
  ASSERT_OK(log->Flush());
  const std::string data_dir = GenDir(path(), 1) + "/data";
  const size_t segments_before = SegmentFilesOnDisk(data_dir).size();
  io.ResetCounts();
  ASSERT_OK(log->PruneHead(1500));
  // At most the index entry of the new first element is read; nothing is
  // written but the new head, in the meta of each file pruned.
  EXPECT_LE(io.Calls(static_cast<IoOpMask>(IoOp::kPread)), 1u);
  EXPECT_LE(io.Calls(static_cast<IoOpMask>(IoOp::kPwrite)), 2u);
  EXPECT_LT(SegmentFilesOnDisk(data_dir).size(), segments_before / 2);
  io.ResetCounts();
  ASSERT_OK_AND_ASSIGN(RecordSnapshot snap, log->Snapshot());
  EXPECT_LE(io.Calls(static_cast<IoOpMask>(IoOp::kPread)), 2u);
  EXPECT_EQ(io.Calls(static_cast<IoOpMask>(IoOp::kPwrite)), 0u);
  ASSERT_OK_AND_ASSIGN(auto got, snap.Read(1999));
  EXPECT_EQ(got, ElementFor(1999, element_size()));
}

TEST_P(RecordLogTest, PruneHeadStopsAtTheFlushedEnd) {
  auto log = OpenLog();
  AppendIds(*log, 0, 20, element_size());
  ASSERT_OK(log->Flush());
  AppendIds(*log, 20, 25, element_size());
  ASSERT_OK(log->PruneHead(1000));
  EXPECT_EQ(log->First(), 20u);
  ExpectElements(*log, 20, Ids(20, 25), element_size());  // pending ones stay
  ASSERT_OK(log->Rewind(20));
  ASSERT_OK(log->Flush());
  EXPECT_EQ(log->First(), 20u);
  EXPECT_EQ(log->Size(), 20u);
  // With a rewind pending, the head stops at the rewind.
  AppendIds(*log, 20, 30, element_size());
  ASSERT_OK(log->Flush());
  ASSERT_OK(log->Rewind(25));
  ASSERT_OK(log->PruneHead(28));
  EXPECT_EQ(log->First(), 25u);
  log->Discard();
  EXPECT_EQ(log->SizeUnsynced(), 30u);
  ExpectElements(*log, 25, Ids(25, 30), element_size());
}

TEST_P(RecordLogTest, CompactRemovesPositionsAndShiftsLaterOnesDown) {
  auto log = OpenLog();
  AppendIds(*log, 0, 100, element_size());
  ASSERT_OK(log->Flush());
  ASSERT_OK(log->PruneHead(10));
  // Unsorted, with a duplicate and a position below the head.
  const std::vector<uint64_t> removed = {50, 12, 99, 50, 3, 13};
  ASSERT_OK(log->Compact(removed));
  std::vector<uint64_t> expected;
  for (uint64_t id = 10; id < 100; ++id) {
    if (id != 12 && id != 13 && id != 50 && id != 99) expected.push_back(id);
  }
  EXPECT_EQ(log->First(), 10u);
  EXPECT_EQ(log->Size(), 10u + expected.size());
  ExpectElements(*log, 10, expected, element_size());
  EXPECT_ERRNO(log->Read(9), ENODATA);
  EXPECT_FALSE(FileExists(GenDir(path(), 1)));
  EXPECT_TRUE(FileExists(GenDir(path(), 2)));
  // Appends continue after the new end, and all of it survives a reopen.
  AppendIds(*log, 100, 110, element_size());
  ASSERT_OK(log->Flush());
  for (uint64_t id = 100; id < 110; ++id) expected.push_back(id);
  log.reset();
  log = OpenLog();
  EXPECT_EQ(log->First(), 10u);
  ExpectElements(*log, 10, expected, element_size());
  EXPECT_TRUE(log->RecoveryLog().empty());
}

TEST_P(RecordLogTest, CompactWithNothingRemovedKeepsEveryElement) {
  auto log = OpenLog();
  AppendIds(*log, 0, 40, element_size());
  ASSERT_OK(log->Flush());
  ASSERT_OK(log->Compact({}));
  ExpectElements(*log, 0, Ids(0, 40), element_size());
  EXPECT_EQ(log->Size(), 40u);
}

TEST_P(RecordLogTest, CompactionArgumentsAndStateAreChecked) {
  auto log = OpenLog();
  EXPECT_ERRNO(log->ReplaceWithTmp(), ENOENT);
  AppendIds(*log, 0, 10, element_size());
  const std::vector<uint64_t> one = {2};
  EXPECT_ERRNO(log->WriteTmpPruned(one), EBUSY);  // pending appends
  ASSERT_OK(log->Flush());
  const std::vector<uint64_t> past_end = {10};
  EXPECT_ERRNO(log->WriteTmpPruned(past_end), EINVAL);
  ASSERT_OK(log->WriteTmpPruned(one));
  AppendIds(*log, 10, 11, element_size());
  EXPECT_ERRNO(log->ReplaceWithTmp(), EBUSY);
  ASSERT_OK(log->Flush());
  // The log changed since the new generation was written: it is dropped.
  EXPECT_ERRNO(log->ReplaceWithTmp(), ESTALE);
  EXPECT_FALSE(FileExists(GenDir(path(), 2)));
  EXPECT_ERRNO(log->ReplaceWithTmp(), ENOENT);
  ExpectElements(*log, 0, Ids(0, 11), element_size());
}

TEST_P(RecordLogTest, UnusedCompactionIsRemovedWhenTheLogCloses) {
  auto log = OpenLog();
  AppendIds(*log, 0, 10, element_size());
  ASSERT_OK(log->Flush());
  const std::vector<uint64_t> one = {2};
  ASSERT_OK(log->WriteTmpPruned(one));
  EXPECT_TRUE(FileExists(GenDir(path(), 2)));
  log.reset();
  EXPECT_FALSE(FileExists(GenDir(path(), 2)));
  log = OpenLog();
  ExpectElements(*log, 0, Ids(0, 10), element_size());
}

TEST_P(RecordLogTest, SnapshotKeepsItsViewWhileTheLogChanges) {
  auto log = OpenLog();
  AppendIds(*log, 0, 120, element_size());
  ASSERT_OK(log->Flush());
  AppendIds(*log, 120, 125, element_size());  // pending ones are part of the view
  ASSERT_OK_AND_ASSIGN(RecordSnapshot snap, log->Snapshot());
  EXPECT_EQ(snap.First(), 0u);
  EXPECT_EQ(snap.Size(), 125u);

  int step = 0;
  auto check = [&] {
    SCOPED_TRACE("check " + std::to_string(++step));
    for (uint64_t p = 0; p < 125; ++p) {
      auto got = snap.Read(p);
      ASSERT_TRUE(got.has_value()) << "position " << p << ": " << got.error().message();
      EXPECT_EQ(*got, ElementFor(p, element_size())) << "position " << p;
    }
    EXPECT_ERRNO(snap.Read(125), ERANGE);
  };
  check();
  // A prune into the middle of a segment punches it; a rewind cuts a segment
  // in place and appends overwrite the same file offsets.
  ASSERT_OK(log->PruneHead(37));
  check();
  ASSERT_OK(log->Rewind(61));
  AppendIds(*log, 2000, 2100, element_size());
  ASSERT_OK(log->Flush());
  check();
  ASSERT_OK(log->PruneHead(90));
  ASSERT_OK(log->Rewind(95));
  AppendIds(*log, 3000, 3050, element_size());
  ASSERT_OK(log->Flush());
  check();
  const std::vector<uint64_t> removed = {91, 92, 100};
  ASSERT_OK(log->Compact(removed));
  check();
  log.reset();
  check();
}

TEST_P(RecordLogTest, SnapshotOfAPrunedLogStartsAtItsHead) {
  auto log = OpenLog();
  AppendIds(*log, 0, 60, element_size());
  ASSERT_OK(log->Flush());
  ASSERT_OK(log->PruneHead(33));
  ASSERT_OK(log->Rewind(50));
  ASSERT_OK_AND_ASSIGN(RecordSnapshot snap, log->Snapshot());
  EXPECT_EQ(snap.First(), 33u);
  EXPECT_EQ(snap.Size(), 50u);
  EXPECT_ERRNO(snap.Read(32), ENODATA);
  EXPECT_ERRNO(snap.Read(50), ERANGE);
  ASSERT_OK_AND_ASSIGN(auto got, snap.Read(49));
  EXPECT_EQ(got, ElementFor(49, element_size()));
}

TEST_P(RecordLogTest, ReaderOfAReplacedGenerationKeepsItUntilItLetsGo) {
  auto log = OpenLog();
  AppendIds(*log, 0, 80, element_size());
  ASSERT_OK(log->Flush());
  ASSERT_OK_AND_ASSIGN(RecordSnapshot snap, log->Snapshot());
  const std::vector<uint64_t> removed = {0, 1, 2, 3};
  ASSERT_OK(log->Compact(removed));
  // Its directory is gone; the open descriptors keep its bytes.
  EXPECT_FALSE(FileExists(GenDir(path(), 1)));
  for (uint64_t p = 0; p < 80; ++p) {
    ASSERT_OK_AND_ASSIGN(auto got, snap.Read(p));
    EXPECT_EQ(got, ElementFor(p, element_size()));
  }
  ASSERT_OK_AND_ASSIGN(auto now, log->Read(0));
  EXPECT_EQ(now, ElementFor(4, element_size()));
}

// ---- recovery -----------------------------------------------------------------

TEST_P(RecordLogTest, LeftoversOfAnInterruptedSwitchAreRemovedOnOpen) {
  {
    auto log = OpenLog();
    AppendIds(*log, 0, 10, element_size());
    ASSERT_OK(log->Flush());
  }
  ASSERT_EQ(::mkdir(GenDir(path(), 2).c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((GenDir(path(), 2) + "/data").c_str(), 0755), 0);
  WriteFileText(GenDir(path(), 2) + "/data/junk", "x");
  WriteFileText(path() + "/CURRENT.tmp", "format=1\n");
  auto log = OpenLog();
  EXPECT_FALSE(FileExists(GenDir(path(), 2)));
  EXPECT_FALSE(FileExists(path() + "/CURRENT.tmp"));
  EXPECT_EQ(log->RecoveryLog().size(), 2u);
  ExpectElements(*log, 0, Ids(0, 10), element_size());
}

TEST_P(RecordLogTest, UnreadableCurrentFailsOpenWithEio) {
  { auto log = OpenLog(); }
  WriteFileText(path() + "/CURRENT", "format=1\ngeneration=x\n");
  EXPECT_ERRNO(RecordLog::Open(path(), options()), EIO);
}

TEST_P(RecordLogTest, MissingGenerationFailsOpenWithEio) {
  { auto log = OpenLog(); }
  std::filesystem::remove_all(GenDir(path(), 1));
  EXPECT_ERRNO(RecordLog::Open(path(), options()), EIO);
}

TEST_P(RecordLogTest, TornLastElementOrEntryIsCutOnOpen) {
  {
    auto log = OpenLog();
    AppendIds(*log, 0, 10, element_size());
    ASSERT_OK(log->Flush());
  }
  // A crash mid-append left part of one more element (or index entry).
  const std::string file_dir = GenDir(path(), 1) + (fixed() ? "/data" : "/index");
  const std::string tail = file_dir + "/" + SegmentFilesOnDisk(file_dir).back();
  auto bytes = ReadFileBytes(tail);
  bytes.resize(bytes.size() + 5, std::byte{0x7f});
  WriteFileBytes(tail, bytes);
  auto log = OpenLog();
  EXPECT_FALSE(log->Damage().has_value());
  EXPECT_EQ(log->Size(), 10u);
  EXPECT_FALSE(log->RecoveryLog().empty());
  ExpectElements(*log, 0, Ids(0, 10), element_size());
  AppendIds(*log, 10, 12, element_size());
  ASSERT_OK(log->Flush());
  ExpectElements(*log, 0, Ids(0, 12), element_size());
}

class VariableRecordLogTest : public RecordLogTest {};
INSTANTIATE_TEST_SUITE_P(Sizes, VariableRecordLogTest, ::testing::Values(0u),
                         [](const auto&) { return std::string("Variable"); });

std::string TailFile(const std::string& dir) { return dir + "/" + SegmentFilesOnDisk(dir).back(); }

TEST_P(VariableRecordLogTest, DataNoIndexEntryReachedIsCutOnOpen) {
  {
    auto log = OpenLog();
    AppendIds(*log, 0, 10, 0);
    ASSERT_OK(log->Flush());
  }
  const std::string tail = TailFile(GenDir(path(), 1) + "/data");
  auto bytes = ReadFileBytes(tail);
  const size_t before = bytes.size();
  bytes.resize(before + 40, std::byte{1});
  WriteFileBytes(tail, bytes);
  auto log = OpenLog();
  EXPECT_FALSE(log->Damage().has_value());
  ASSERT_EQ(log->RecoveryLog().size(), 1u);
  EXPECT_NE(log->RecoveryLog()[0].find("40 bytes"), std::string::npos) << log->RecoveryLog()[0];
  EXPECT_EQ(FileSize(tail), static_cast<int64_t>(before));
  AppendIds(*log, 10, 11, 0);
  ASSERT_OK(log->Flush());
  ExpectElements(*log, 0, Ids(0, 11), 0);
}

TEST_P(VariableRecordLogTest, IndexPointingPastTheDataIsCutBackOnOpen) {
  {
    auto log = OpenLog();
    AppendIds(*log, 0, 10, 0);
    ASSERT_OK(log->Flush());
  }
  // The last byte of the data never reached the disk.
  const std::string tail = TailFile(GenDir(path(), 1) + "/data");
  auto bytes = ReadFileBytes(tail);
  bytes.resize(bytes.size() - 1);
  WriteFileBytes(tail, bytes);
  auto log = OpenLog();
  EXPECT_FALSE(log->Damage().has_value());
  EXPECT_EQ(log->Size(), 9u);
  ExpectElements(*log, 0, Ids(0, 9), 0);
  // The rest of the cut element's bytes went too: the next one follows on.
  AppendIds(*log, 9, 10, 0);
  ASSERT_OK(log->Flush());
  log.reset();
  log = OpenLog();
  ExpectElements(*log, 0, Ids(0, 10), 0);
}

TEST_P(VariableRecordLogTest, CorruptLastIndexEntryOpensDamaged) {
  {
    auto log = OpenLog();
    AppendIds(*log, 0, 10, 0);
    ASSERT_OK(log->Flush());
  }
  const std::string tail = TailFile(GenDir(path(), 1) + "/index");
  auto bytes = ReadFileBytes(tail);
  bytes[bytes.size() - 10] ^= std::byte{0x40};
  WriteFileBytes(tail, bytes);
  auto log = OpenLog();
  ASSERT_TRUE(log->Damage().has_value());
  EXPECT_NE(log->Damage()->find("position 9"), std::string::npos) << *log->Damage();
  ExpectElements(*log, 0, Ids(0, 9), 0);
  EXPECT_ERRNO(log->Read(9), EIO);
  EXPECT_ERRNO(log->Append(ElementFor(1, 0)), EIO);
  EXPECT_ERRNO(log->Flush(), EIO);
  EXPECT_ERRNO(log->PruneHead(3), EIO);
  EXPECT_ERRNO(log->Compact({}), EIO);
}

TEST_P(VariableRecordLogTest, CorruptIndexEntryInsideTheLogFailsItsReadWithEio) {
  {
    auto log = OpenLog();
    AppendIds(*log, 0, 200, 0);
    ASSERT_OK(log->Flush());
  }
  // Entry 40 lies at index offset 640, in the second 512-byte segment.
  const std::string seg = GenDir(path(), 1) + "/index/" + SegmentFileName(512, kSegment);
  auto bytes = ReadFileBytes(seg);
  bytes[640 - 512 + 3] ^= std::byte{0x01};
  WriteFileBytes(seg, bytes);
  auto log = OpenLog();
  EXPECT_FALSE(log->Damage().has_value());
  EXPECT_ERRNO(log->Read(40), EIO);
  ExpectElements(*log, 41, Ids(41, 200), 0);
  // Compaction refuses to copy it rather than guess.
  EXPECT_ERRNO(log->Compact({}), EIO);
  ExpectElements(*log, 41, Ids(41, 200), 0);
}

// The positions [first, ...) of `log` hold exactly ids.
bool Holds(const RecordLog& log, uint64_t first, const std::vector<uint64_t>& ids, uint32_t element_size) {
  if (log.First() != first || log.Size() != first + ids.size()) return false;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto got = log.Read(first + i);
    if (!got || *got != ElementFor(ids[i], element_size)) return false;
  }
  return true;
}

TEST_P(RecordLogTest, DamagedDataFileMakesTheLogDamaged) {
  {
    auto log = OpenLog();
    AppendIds(*log, 0, 100, element_size());
    ASSERT_OK(log->Flush());
  }
  const std::string data_dir = GenDir(path(), 1) + "/data";
  const auto segments = SegmentFilesOnDisk(data_dir);
  ASSERT_GE(segments.size(), 3u);
  ASSERT_EQ(::unlink((data_dir + "/" + segments[1]).c_str()), 0);
  auto log = OpenLog();
  ASSERT_TRUE(log->Damage().has_value());
  EXPECT_EQ(log->Damage()->rfind("data: ", 0), 0u) << *log->Damage();
  EXPECT_ERRNO(log->Append(ElementFor(1, element_size())), EIO);
  EXPECT_ERRNO(log->Rewind(0), EIO);
}

TEST_P(RecordLogTest, FailedFlushKeepsItsChangesPendingAndCanBeRetried) {
  std::vector<uint64_t> expected = Ids(0, 20);
  for (uint64_t id = 100; id < 110; ++id) expected.push_back(id);
  uint64_t n = 1;
  for (; n < 200; ++n) {
    SCOPED_TRACE("failing call " + std::to_string(n));
    TempDir dir;
    FaultIo io(no_flush_);
    auto opened = RecordLog::Open(dir / "log", RecordOptions(element_size(), kSegment, &io));
    ASSERT_TRUE(opened.has_value());
    RecordLog& log = **opened;
    AppendIds(log, 0, 30, element_size());
    ASSERT_OK(log.Flush());
    ASSERT_OK(log.Rewind(20));
    AppendIds(log, 100, 110, element_size());
    // A failed fdatasync is not retried (HPFile::Sync): see below.
    io.FailNthCall(n, ENOSPC, kMutatingIoOps & ~static_cast<IoOpMask>(IoOp::kFdatasync));
    const bool failed = !log.Flush().has_value();
    const bool fired = io.Fired();
    io.Heal();
    if (!fired) {
      EXPECT_FALSE(failed);
      break;
    }
    // Whatever failed, every element reads as before or as after the flush.
    const uint64_t end = log.SizeUnsynced();
    EXPECT_EQ(end, 30u);
    ASSERT_OK(log.Flush());
    EXPECT_TRUE(Holds(log, 0, expected, element_size()));
    opened->reset();
    auto reopened = RecordLog::Open(dir / "log", RecordOptions(element_size(), kSegment, &io));
    ASSERT_TRUE(reopened.has_value());
    EXPECT_TRUE(Holds(**reopened, 0, expected, element_size()));
    EXPECT_FALSE((*reopened)->Damage().has_value());
  }
  EXPECT_GT(n, 3u);
}

// After a failed fdatasync the bytes may be gone while a retry would succeed:
// no Flush succeeds again until the log is reopened.
TEST_P(RecordLogTest, FailedFdatasyncFailsEveryLaterFlushUntilReopened) {
  FaultIo io(no_flush_);
  auto log = OpenLog(&io);
  ASSERT_TRUE(log);
  AppendIds(*log, 0, 30, element_size());
  io.FailNthCall(1, EIO, static_cast<IoOpMask>(IoOp::kFdatasync));
  EXPECT_ERRNO(log->Flush(), EIO);
  io.Heal();
  EXPECT_ERRNO(log->Flush(), EIO);
  AppendIds(*log, 30, 40, element_size());
  EXPECT_ERRNO(log->Flush(), EIO);
  log.reset();
  log = OpenLog(&io);
  ASSERT_TRUE(log);
  EXPECT_FALSE(log->Damage().has_value());
  AppendIds(*log, 1000, 1005, element_size());
  EXPECT_OK(log->Flush());
}

// ---- crashes at every step -------------------------------------------------------------

// Sets up a log through a FaultIo, fails the nth mutating call of `op` and
// every call after it (the machine died), drops what was not synced and
// reopens. Returns false once `op` ran without reaching call n.
bool CrashDuring(const std::string& root, const std::string& path, const RecordLogOptions& base_options, uint64_t n,
                 const std::function<void(RecordLog&)>& setup, const std::function<void(RecordLog&)>& op,
                 const std::function<void(RecordLog&)>& verify) {
  NoFlushIo base;
  FaultIo io(base);
  io.TrackDurability(root);
  RecordLogOptions options = base_options;
  options.io = &io;
  bool fired = false;
  {
    auto log = RecordLog::Open(path, options);
    EXPECT_TRUE(log.has_value());
    if (!log) return false;
    setup(**log);
    io.FailNthCall(n, EIO, kMutatingIoOps);
    op(**log);
    fired = io.Fired();
    io.FailAlways(EIO, kMutatingIoOps);
  }
  io.Heal();
  EXPECT_OK(io.DropUnsyncedData());
  {
    auto log = RecordLog::Open(path, options);
    EXPECT_TRUE(log.has_value()) << "after a crash at call " << n << ": " << log.error().message();
    if (log) {
      EXPECT_FALSE((*log)->Damage().has_value()) << "after a crash at call " << n << ": " << *(*log)->Damage();
      verify(**log);
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
  return fired;
}

TEST_P(RecordLogTest, CrashAtAnyStepOfACompactionLeavesTheOldOrTheNewLog) {
  const std::vector<uint64_t> removed = {3, 4, 30, 39};
  std::vector<uint64_t> after;
  for (uint64_t id = 0; id < 40; ++id) {
    if (std::find(removed.begin(), removed.end(), id) == removed.end()) after.push_back(id);
  }
  uint64_t n = 1;
  int new_seen = 0;
  for (; n < 500; ++n) {
    SCOPED_TRACE("crash at call " + std::to_string(n));
    const bool fired = CrashDuring(
        dir_.path(), path(), RecordOptions(element_size(), 2048), n,
        [&](RecordLog& log) {
          AppendIds(log, 0, 40, element_size());
          ASSERT_OK(log.Flush());
        },
        [&](RecordLog& log) { (void)log.Compact(removed); },
        [&](RecordLog& log) {
          const bool old_log = Holds(log, 0, Ids(0, 40), element_size());
          const bool new_log = Holds(log, 0, after, element_size());
          EXPECT_TRUE(old_log || new_log) << "size " << log.Size();
          new_seen += new_log;
        });
    if (!fired) break;
  }
  EXPECT_GT(n, 5u) << "the compaction made too few calls to test anything";
  EXPECT_LT(n, 500u);
  EXPECT_GT(new_seen, 0);
}

TEST_P(RecordLogTest, CrashAtAnyStepOfAFlushLeavesAPrefixOfItsChanges) {
  // Old: ids 0..49 flushed. The flush rewinds to 30 and appends 100..139.
  uint64_t n = 1;
  for (; n < 500; ++n) {
    SCOPED_TRACE("crash at call " + std::to_string(n));
    const bool fired = CrashDuring(
        dir_.path(), path(), RecordOptions(element_size(), 2048), n,
        [&](RecordLog& log) {
          AppendIds(log, 0, 50, element_size());
          ASSERT_OK(log.Flush());
          ASSERT_OK(log.Rewind(30));
          AppendIds(log, 100, 140, element_size());
        },
        [&](RecordLog& log) { (void)log.Flush(); },
        [&](RecordLog& log) {
          if (Holds(log, 0, Ids(0, 50), element_size())) return;
          const uint64_t size = log.Size();
          ASSERT_GE(size, 30u);
          ASSERT_LE(size, 70u);
          std::vector<uint64_t> expected = Ids(0, 30);
          for (uint64_t id = 100; id < 100 + (size - 30); ++id) expected.push_back(id);
          EXPECT_TRUE(Holds(log, 0, expected, element_size())) << "size " << size;
        });
    if (!fired) break;
  }
  EXPECT_GT(n, 3u);
  EXPECT_LT(n, 500u);
}

TEST_P(RecordLogTest, PowerLossAfterFlushKeepsEveryFlushedElement) {
  NoFlushIo base;
  FaultIo io(base);
  io.TrackDurability(dir_.path());
  {
    auto log = OpenLog(&io);
    AppendIds(*log, 0, 100, element_size());
    ASSERT_OK(log->Flush());
    ASSERT_OK(log->PruneHead(20));
    ASSERT_OK(log->Flush());
    AppendIds(*log, 100, 120, element_size());  // never flushed
    ASSERT_OK(log->PruneHead(50));               // never flushed
  }
  ASSERT_OK(io.DropUnsyncedData());
  auto log = OpenLog(&io);
  EXPECT_FALSE(log->Damage().has_value());
  EXPECT_EQ(log->Size(), 100u);
  // The unflushed prune may come back; whatever is readable is intact.
  EXPECT_GE(log->First(), 20u);
  EXPECT_LE(log->First(), 50u);
  ExpectElements(*log, log->First(), Ids(log->First(), 100), element_size());
}

// ---- positions across a process crash; ownership; snapshots across a reopen ----

// The child opens the log, runs `steps` and dies with _exit, closing nothing.
bool CrashAfterLogSteps(const std::string& dir, const RecordLogOptions& options,
                        const std::function<bool(RecordLog&)>& steps) {
  return RunInChildThatCrashes([&] {
    auto log = RecordLog::Open(dir, options);
    if (!log) return false;
    const bool done = steps(**log);
    (void)log->release();
    return done;
  });
}

// A write-ahead log that consumed everything it wrote. With 8 elements the
// segments are full and the prune emptied the data file (and, for
// variable-size elements, the index) of every segment; with 7 the tails are
// not full, and the prune punched every index entry.
TEST_P(RecordLogTest, PruneToTheEndSurvivesACrashAndNoPositionIsHandedOutTwice) {
  RecordLogOptions small = RecordOptions(fixed() ? 32 : 0, 64, &no_flush_);
  const auto element = [](uint64_t id) { return SeededBytes(id, 0, 32); };
  for (const uint64_t count : {8u, 7u}) {
    SCOPED_TRACE(std::to_string(count) + " elements");
    const std::string dir = path() + std::to_string(count);
    ASSERT_TRUE(CrashAfterLogSteps(dir, small, [&](RecordLog& log) {
      for (uint64_t id = 0; id < count; ++id) {
        if (!log.Append(element(id))) return false;
      }
      return log.Flush() && log.PruneHead(count) && log.First() == count;
    }));
    ASSERT_OK_AND_ASSIGN(auto log, RecordLog::Open(dir, small));
    EXPECT_FALSE(log->Damage().has_value()) << *log->Damage();
    EXPECT_EQ(log->Size(), count);
    ASSERT_OK_AND_ASSIGN(const uint64_t position, log->Append(element(count)));
    EXPECT_EQ(position, count);
    ASSERT_OK(log->Flush());
    ASSERT_OK_AND_ASSIGN(auto got, log->Read(count));
    EXPECT_EQ(got, element(count));
  }
}

TEST_P(RecordLogTest, ASecondOpenOfAnOpenLogFailsWithEbusyAndLosesNothing) {
  auto a = OpenLog();
  ASSERT_NE(a, nullptr);
  AppendIds(*a, 0, 20, element_size());
  ASSERT_OK(a->Flush());
  const std::vector<uint64_t> removed{3};
  ASSERT_OK(a->WriteTmpPruned(removed));

  EXPECT_ERRNO(RecordLog::Open(path(), options(&no_flush_)), EBUSY);
  Result<std::unique_ptr<RecordLog>> from_thread = Errno(EINVAL);
  std::thread([&] { from_thread = RecordLog::Open(path(), options(&no_flush_)); }).join();
  EXPECT_ERRNO(from_thread, EBUSY);
  const RecordLogOptions child_options = options(&no_flush_);
  EXPECT_TRUE(RunInChildThatCrashes([&] {
    auto b = RecordLog::Open(path(), child_options);
    return !b && b.error().value() == EBUSY;
  }));

  // The compaction the refused opens would have deleted goes through.
  ASSERT_OK(a->ReplaceWithTmp());
  AppendIds(*a, 19, 25, element_size());
  ASSERT_OK(a->Flush());
  a.reset();
  auto reopened = OpenLog();
  ASSERT_NE(reopened, nullptr);
  EXPECT_FALSE(reopened->Damage().has_value());
  std::vector<uint64_t> ids = Ids(0, 3);
  for (uint64_t id = 4; id < 20; ++id) ids.push_back(id);
  for (uint64_t id = 19; id < 25; ++id) ids.push_back(id);
  ExpectElements(*reopened, 0, ids, element_size());
}

TEST_P(RecordLogTest, TheKernelReleasesTheLogWhenItsOwnerDies) {
  const RecordLogOptions child_options = options(&no_flush_);
  ASSERT_TRUE(CrashAfterLogSteps(path(), child_options, [&](RecordLog& log) {
    return log.Append(ElementFor(0, element_size())) && log.Flush();
  }));
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  ExpectElements(*log, 0, {0}, element_size());
}

// A snapshot outlives the log object that took it: a log opened again in
// this process protects it as its own.
TEST_P(RecordLogTest, SnapshotKeepsItsViewAcrossAReopenOfTheLog) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendIds(*log, 0, 10, element_size());
  ASSERT_OK(log->Flush());
  ASSERT_OK_AND_ASSIGN(RecordSnapshot snap, log->Snapshot());
  log.reset();

  log = OpenLog();
  ASSERT_NE(log, nullptr);
  ASSERT_OK(log->PruneHead(5));
  ASSERT_OK(log->Rewind(7));
  ASSERT_OK(log->Flush());
  AppendIds(*log, 100, 101, element_size());
  ASSERT_OK(log->Flush());

  ExpectElements(snap, 0, Ids(0, 10), element_size());
}

// Another process cannot change in place what a snapshot reads: the
// snapshot holds the log's lock until it goes.
TEST_P(RecordLogTest, ALiveSnapshotKeepsOtherProcessesOut) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendIds(*log, 0, 10, element_size());
  ASSERT_OK(log->Flush());
  std::optional<RecordSnapshot> snap;
  {
    ASSERT_OK_AND_ASSIGN(RecordSnapshot taken, log->Snapshot());
    snap = std::move(taken);
  }
  log.reset();
  const RecordLogOptions child_options = options(&no_flush_);
  auto other_process_prunes = [&] {
    return RunInChildThatCrashes([&] {
      auto other = RecordLog::Open(path(), child_options);
      return other && (*other)->PruneHead(10) && (*other)->Flush();
    });
  };
  EXPECT_FALSE(other_process_prunes());
  ExpectElements(*snap, 0, Ids(0, 10), element_size());
  snap.reset();
  EXPECT_TRUE(other_process_prunes());
}

// ---- RecordReader ----------------------------------------------------------------------------

TEST_P(RecordLogTest, ReaderReturnsEveryElementFromOneBufferPerScan) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendIds(*log, 0, 300, element_size());
  ASSERT_OK(log->Flush());
  AppendIds(*log, 300, 305, element_size());  // pending
  RecordReader reader(*log);
  std::set<const std::vector<std::byte>*> buffers;
  for (uint64_t position = 0; position < 305; ++position) {
    ASSERT_OK_AND_ASSIGN(RecordView view, reader.Read(position));
    ASSERT_TRUE(std::ranges::equal(view.bytes, ElementFor(position, element_size()))) << "position " << position;
    if (position < 300) buffers.insert(view.buffer.get());
  }
  // Every flushed element came out of the one buffer the first read filled.
  EXPECT_EQ(buffers.size(), 1u);
  EXPECT_ERRNO(reader.Read(305), ERANGE);
}

TEST_P(RecordLogTest, ReaderViewStaysValidWhileHeld) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendIds(*log, 0, 200, element_size());
  ASSERT_OK(log->Flush());
  RecordReader reader(*log, /*buffer_size=*/64);
  ASSERT_OK_AND_ASSIGN(RecordView first, reader.Read(0));
  for (uint64_t position = 199; position > 0; --position) {
    ASSERT_OK_AND_ASSIGN(RecordView view, reader.Read(position));
    ASSERT_TRUE(std::ranges::equal(view.bytes, ElementFor(position, element_size()))) << "position " << position;
  }
  EXPECT_TRUE(std::ranges::equal(first.bytes, ElementFor(0, element_size())));
}

// Buffered bytes that a prune, a flushed rewind or a compaction replaced are
// never served.
TEST_P(RecordLogTest, ReaderNeverReturnsReplacedElements) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendIds(*log, 0, 50, element_size());
  ASSERT_OK(log->Flush());
  RecordReader reader(*log);
  ASSERT_OK(reader.Read(40));

  ASSERT_OK(log->Rewind(40));
  AppendIds(*log, 1000, 1010, element_size());
  ASSERT_OK(log->Flush());
  ASSERT_OK_AND_ASSIGN(RecordView replaced, reader.Read(40));
  EXPECT_TRUE(std::ranges::equal(replaced.bytes, ElementFor(1000, element_size())));

  ASSERT_OK(log->PruneHead(10));
  EXPECT_ERRNO(reader.Read(9), ENODATA);

  const std::vector<uint64_t> removed{10};
  ASSERT_OK(log->Compact(removed));
  ASSERT_OK_AND_ASSIGN(RecordView moved, reader.Read(10));
  EXPECT_TRUE(std::ranges::equal(moved.bytes, ElementFor(11, element_size())));
}

}  // namespace
}  // namespace hpfile::testing
