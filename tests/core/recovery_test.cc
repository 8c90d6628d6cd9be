// SPDX-License-Identifier: Apache-2.0
// HPFile::Open on backing directories built by hand: crash signatures are
// repaired and logged; anything no crash can produce opens the file damaged,
// readable where data exists, refusing every mutation, and with every file in
// the directory left exactly as it was.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/format.h"
#include "core/hpfile.h"
#include "core/meta.h"
#include "core/recovery.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::FileExists;
using testing::PatternBytes;
using testing::ReadRange;
using testing::SegmentFileName;
using testing::SegmentFilesOnDisk;
using testing::SnapshotDir;
using testing::TempDir;

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(::mkdir(Dir().c_str(), 0755), 0); }

  std::string Dir() const { return tmp_.Sub("file"); }
  std::string Path(const std::string& name) const { return Dir() + "/" + name; }

  void WriteMetaText(const std::string& text) { testing::WriteFileText(Path("hpfile.meta"), text); }
  void WriteMeta(uint64_t segment_size, uint64_t head) {
    WriteMetaText("format=1\nsegment_size=" + std::to_string(segment_size) + "\nhead=" + std::to_string(head) +
                  "\nmode=0644\nuid=0\ngid=0\n");
  }
  // A segment file holding the pattern bytes of its offsets, so any read can
  // be checked against PatternBytes.
  void WriteSegment(uint64_t base, uint64_t capacity, size_t length) {
    testing::WriteFileBytes(Path(SegmentFileName(base, capacity)), PatternBytes(base, length));
  }

  // A segment a grow made to span a gap: sparse, all zeros, `length` long.
  void WriteGapSegment(uint64_t base, uint64_t capacity, uint64_t length) {
    testing::WriteFileBytes(Path(SegmentFileName(base, capacity)), {});
    ASSERT_EQ(::truncate(Path(SegmentFileName(base, capacity)).c_str(), static_cast<off_t>(length)), 0);
  }

  Result<std::unique_ptr<HPFile>> OpenExisting() {
    Options options;
    options.create_if_missing = false;
    return HPFile::Open(Dir(), options);
  }

  // Opening repaired something, said so in the log, and left no damage.
  static void ExpectRepaired(const HPFile& file) {
    EXPECT_FALSE(file.Damage().has_value()) << *file.Damage();
    EXPECT_FALSE(file.RecoveryLog().empty());
  }

  // [offset, offset + length) reads back as the pattern.
  void ExpectPattern(const HPFile& file, uint64_t offset, size_t length) {
    auto got = ReadRange(file, offset, length);
    ASSERT_TRUE(got.has_value()) << "ReadAt(" << offset << ", " << length << "): " << got.error().message();
    EXPECT_EQ(*got, PatternBytes(offset, length)) << "ReadAt(" << offset << ", " << length << ")";
  }

  TempDir tmp_;
};

// ---------------------------------------------------------------------------
// Healthy stores

TEST_F(RecoveryTest, HealthyStoreOpensUntouchedWithEmptyLog) {
  WriteMeta(16, 5);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 16);
  WriteSegment(32, 16, 3);
  auto before = SnapshotDir(Dir());
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  EXPECT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_TRUE(file->RecoveryLog().empty()) << file->RecoveryLog().front();
  EXPECT_EQ(file->Head(), 5u);
  EXPECT_EQ(file->Size(), 35u);
  ExpectPattern(*file, 5, 30);
  testing::ExpectWellFormed(*file);
  file.reset();
  testing::ExpectSameSnapshot(before, SnapshotDir(Dir()));
}

TEST_F(RecoveryTest, SegmentsOfDifferentCapacitiesAreContiguousWhenEachEndsWhereTheNextBegins) {
  WriteMeta(8, 0);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 32, 32);
  WriteSegment(48, 8, 5);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  EXPECT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_EQ(file->Size(), 53u);
  ExpectPattern(*file, 0, 53);
  testing::ExpectWellFormed(*file);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(PatternBytes(53, 10)));
  EXPECT_EQ(offset, 53u);
  ExpectPattern(*file, 0, 63);
  EXPECT_TRUE(FileExists(Path(SegmentFileName(56, 8))));
}

TEST_F(RecoveryTest, EmptyTailSegmentIsValid) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 0);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  EXPECT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_EQ(file->Size(), 16u);
  ExpectPattern(*file, 0, 16);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(PatternBytes(16, 4)));
  EXPECT_EQ(offset, 16u);
  ExpectPattern(*file, 0, 20);
}

// What a grow leaves: one sparse segment over the whole slots of the gap,
// here wider than any segment_size may be. (Snapshots of the directory read
// every byte, so the tests that take one use a narrow gap segment.)
constexpr uint64_t kWideGapCapacity = 2 * format::kMaxSegmentSize;
constexpr uint64_t kGapCapacity = 20 * 16;

TEST_F(RecoveryTest, GapSegmentWiderThanAnySegmentSizeIsHealthy) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteGapSegment(16, kWideGapCapacity, kWideGapCapacity);
  WriteSegment(16 + kWideGapCapacity, 16, 5);
  const auto before = SegmentFilesOnDisk(Dir());
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  EXPECT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_TRUE(file->RecoveryLog().empty()) << file->RecoveryLog().front();
  EXPECT_EQ(file->Size(), 16 + kWideGapCapacity + 5);
  ExpectPattern(*file, 0, 16);
  ASSERT_OK_AND_ASSIGN(auto zeros, ReadRange(*file, kWideGapCapacity / 2, 64));
  EXPECT_EQ(zeros, std::vector<std::byte>(64));
  ExpectPattern(*file, 16 + kWideGapCapacity, 5);
  testing::ExpectWellFormed(*file);
  file.reset();
  EXPECT_EQ(SegmentFilesOnDisk(Dir()), before);
  EXPECT_EQ(testing::FileSize(Path(SegmentFileName(16, kWideGapCapacity))), static_cast<int64_t>(kWideGapCapacity));
}

// Its size never synced before a power loss: the usual crash signature.
TEST_F(RecoveryTest, ShortGapSegmentBeforeItsSuccessorIsCut) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteGapSegment(16, kGapCapacity, 0);
  WriteSegment(16 + kGapCapacity, 16, 5);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  ExpectRepaired(*file);
  EXPECT_EQ(file->Size(), 16u);
  EXPECT_FALSE(FileExists(Path(SegmentFileName(16 + kGapCapacity, 16))));
  // Appends do not go into the empty wide slot: it makes way for an
  // ordinary segment.
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(PatternBytes(16, 20)));
  EXPECT_EQ(offset, 16u);
  ExpectPattern(*file, 0, 36);
  EXPECT_FALSE(FileExists(Path(SegmentFileName(16, kGapCapacity))));
  testing::ExpectWellFormed(*file);
}

TEST_F(RecoveryTest, MetaWithoutSegmentsIsEmptyFile) {
  WriteMeta(16, 0);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  EXPECT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_EQ(file->Size(), 0u);
  EXPECT_EQ(file->Head(), 0u);
}

// ---------------------------------------------------------------------------
// Crash signatures

TEST_F(RecoveryTest, ShortSealedSegmentIsCutAndSuccessorsDeleted) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 10);  // 6 bytes never reached the disk
  WriteSegment(16, 16, 16);
  WriteSegment(32, 16, 5);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  ExpectRepaired(*file);
  for (auto& line : file->RecoveryLog()) std::cout << "recovery: " << line << "\n";
  EXPECT_EQ(file->Size(), 10u);
  EXPECT_EQ(SegmentFilesOnDisk(Dir()), std::vector<std::string>{SegmentFileName(0, 16)});
  EXPECT_EQ(testing::FileSize(Path(SegmentFileName(0, 16))), 10);
  ExpectPattern(*file, 0, 10);
  testing::ExpectWellFormed(*file);

  // The file goes on from the cut.
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(PatternBytes(10, 20)));
  EXPECT_EQ(offset, 10u);
  ExpectPattern(*file, 0, 30);
  ASSERT_OK(file->Sync());
  file.reset();
  ASSERT_OK_AND_ASSIGN(file, OpenExisting());
  EXPECT_TRUE(file->RecoveryLog().empty()) << file->RecoveryLog().front();
  EXPECT_EQ(file->Size(), 30u);
  ExpectPattern(*file, 0, 30);
}

TEST_F(RecoveryTest, ShortSealedSegmentInTheMiddleIsCut) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 3);
  WriteSegment(32, 16, 16);
  WriteSegment(48, 16, 2);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  ExpectRepaired(*file);
  EXPECT_EQ(file->Size(), 19u);
  EXPECT_FALSE(FileExists(Path(SegmentFileName(32, 16))));
  EXPECT_FALSE(FileExists(Path(SegmentFileName(48, 16))));
  ExpectPattern(*file, 0, 19);
  testing::ExpectWellFormed(*file);
}

TEST_F(RecoveryTest, EmptySealedSegmentIsCutAtItsBase) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 0);
  WriteSegment(32, 16, 5);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  ExpectRepaired(*file);
  EXPECT_EQ(file->Size(), 16u);
  EXPECT_FALSE(FileExists(Path(SegmentFileName(32, 16))));
  ExpectPattern(*file, 0, 16);
  testing::ExpectWellFormed(*file);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(PatternBytes(16, 20)));
  EXPECT_EQ(offset, 16u);
  ExpectPattern(*file, 0, 36);
}

TEST_F(RecoveryTest, LeftoverTempFilesAreRemoved) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 7);
  testing::WriteFileText(Path("hpfile.meta.tmp"), "format=1\nsegm");
  testing::WriteFileText(Path(SegmentFileName(16, 16) + ".tmp"), "partial");
  testing::WriteFileText(Path("something.tmp"), "x");
  const std::string meta_before = testing::ReadFileText(Path("hpfile.meta"));
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  ExpectRepaired(*file);
  EXPECT_FALSE(FileExists(Path("hpfile.meta.tmp")));
  EXPECT_FALSE(FileExists(Path(SegmentFileName(16, 16) + ".tmp")));
  EXPECT_FALSE(FileExists(Path("something.tmp")));
  EXPECT_EQ(testing::ReadFileText(Path("hpfile.meta")), meta_before);
  EXPECT_EQ(file->Size(), 7u);
  ExpectPattern(*file, 0, 7);
}

TEST_F(RecoveryTest, SegmentsWhollyBelowMetaHeadAreLeftForDeletion) {
  WriteMeta(16, 40);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 16);
  WriteSegment(32, 16, 16);
  WriteSegment(48, 16, 3);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  // Opening deletes nothing: they are a prune's, for DeletePrunedSegments.
  EXPECT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_TRUE(file->RecoveryLog().empty());
  EXPECT_EQ(file->PrunedSegments().segments, 2u);
  testing::ExpectWellFormed(*file);
  testing::DeleteAllPruned(*file);
  EXPECT_EQ(file->Head(), 40u);
  EXPECT_EQ(file->Size(), 51u);
  EXPECT_EQ(SegmentFilesOnDisk(Dir()), (std::vector<std::string>{SegmentFileName(32, 16), SegmentFileName(48, 16)}));
  std::byte b[1];
  EXPECT_ERRNO(file->ReadAt(39, b), ENODATA);
  ExpectPattern(*file, 40, 11);
  testing::ExpectWellFormed(*file);
}

TEST_F(RecoveryTest, SegmentEndingExactlyAtMetaHeadIsLeftForDeletion) {
  WriteMeta(16, 32);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 16);
  WriteSegment(32, 16, 4);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  EXPECT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_EQ(file->Head(), 32u);
  testing::DeleteAllPruned(*file);
  EXPECT_EQ(SegmentFilesOnDisk(Dir()), std::vector<std::string>{SegmentFileName(32, 16)});
  ExpectPattern(*file, 32, 4);
}

TEST_F(RecoveryTest, HeadIsRaisedToFirstSegmentBase) {
  WriteMeta(16, 3);
  WriteSegment(32, 16, 16);
  WriteSegment(48, 16, 4);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  EXPECT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_EQ(file->Head(), 32u);
  EXPECT_EQ(file->Size(), 52u);
  std::byte b[1];
  EXPECT_ERRNO(file->ReadAt(0, b), ENODATA);
  EXPECT_ERRNO(file->ReadAt(31, b), ENODATA);
  ExpectPattern(*file, 32, 20);
  testing::ExpectWellFormed(*file);
  // The raised head survives the next open.
  ASSERT_OK(file->Sync());
  file.reset();
  ASSERT_OK_AND_ASSIGN(file, OpenExisting());
  EXPECT_EQ(file->Head(), 32u);
}

TEST_F(RecoveryTest, MetaHeadBeyondEndIsClampedToEnd) {
  WriteMeta(16, 1000);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 4);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  ExpectRepaired(*file);
  EXPECT_EQ(file->Size(), 20u);
  EXPECT_EQ(file->Head(), 20u);
  testing::DeleteAllPruned(*file);
  EXPECT_FALSE(FileExists(Path(SegmentFileName(0, 16))));
  std::byte b[1];
  EXPECT_ERRNO(file->ReadAt(19, b), ENODATA);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(PatternBytes(20, 30)));
  EXPECT_EQ(offset, 20u);
  ExpectPattern(*file, 20, 30);
  testing::ExpectWellFormed(*file);
}

TEST_F(RecoveryTest, MetaHeadWithoutSegmentsIsEmptyFileAtHead) {
  // What Truncate(n < head) leaves: no segment, head == size == n.
  WriteMeta(16, 1000);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  EXPECT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_EQ(file->Head(), 1000u);
  EXPECT_EQ(file->Size(), 1000u);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(PatternBytes(1000, 30)));
  EXPECT_EQ(offset, 1000u);
  ExpectPattern(*file, 1000, 30);
  testing::ExpectWellFormed(*file);
}

TEST_F(RecoveryTest, RecoveryIsIdempotent) {
  WriteMeta(16, 20);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 9);
  WriteSegment(32, 16, 16);
  testing::WriteFileText(Path("hpfile.meta.tmp"), "x");
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  EXPECT_FALSE(file->RecoveryLog().empty());
  const uint64_t head = file->Head();
  const uint64_t size = file->Size();
  file.reset();
  auto after_first = SnapshotDir(Dir());
  ASSERT_OK_AND_ASSIGN(file, OpenExisting());
  EXPECT_TRUE(file->RecoveryLog().empty()) << file->RecoveryLog().front();
  EXPECT_EQ(file->Head(), head);
  EXPECT_EQ(file->Size(), size);
  EXPECT_EQ(size, 25u);
  EXPECT_EQ(head, 20u);
  file.reset();
  testing::ExpectSameSnapshot(after_first, SnapshotDir(Dir()));
}

// ---------------------------------------------------------------------------
// Damaged stores

// Everything a damaged file must refuse, and proof that refusing changed
// nothing on disk.
void ExpectMutationsFailWithEIO(HPFile& file) {
  SCOPED_TRACE("mutations on a damaged file");
  const uint64_t size = file.Size();
  const uint64_t head = file.Head();
  EXPECT_ERRNO(file.Append(PatternBytes(size, 5)), EIO);
  EXPECT_ERRNO(file.Append(PatternBytes(size, 100)), EIO);
  EXPECT_ERRNO(file.Truncate(size > 0 ? size - 1 : 0), EIO);
  EXPECT_ERRNO(file.Truncate(size + 100), EIO);
  EXPECT_ERRNO(file.Truncate(0), EIO);
  EXPECT_ERRNO(file.PruneHead(size), EIO);
  EXPECT_ERRNO(file.UpdateMeta([](Meta& m) { m.uid = 4242; }), EIO);
  // SetSegmentSize and Sync have no EIO in their contract; whatever they
  // answer, the snapshot check below shows they wrote nothing.
  (void)file.SetSegmentSize(32);
  (void)file.Sync();
  (void)file.Flush();
  EXPECT_EQ(file.Size(), size);
  EXPECT_EQ(file.Head(), head);
}

class DamagedTest : public RecoveryTest {
 protected:
  // Opens the damaged store, runs `check`, tries every mutation, closes it,
  // and verifies no file in the directory changed at any point.
  template <class Check>
  void OpenDamaged(Check check) {
    auto before = SnapshotDir(Dir());
    ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
    ASSERT_TRUE(file->Damage().has_value()) << "opened as healthy";
    std::cout << "damage: " << *file->Damage() << "\n";
    EXPECT_GE(file->Damage()->size(), 10u) << "the reason should be a readable sentence";
    testing::ExpectSameSnapshot(before, SnapshotDir(Dir()));
    check(*file);
    ExpectMutationsFailWithEIO(*file);
    testing::ExpectSameSnapshot(before, SnapshotDir(Dir()));
    file.reset();
    testing::ExpectSameSnapshot(before, SnapshotDir(Dir()));
    // Still damaged the next time, and still untouched.
    ASSERT_OK_AND_ASSIGN(file, OpenExisting());
    EXPECT_TRUE(file->Damage().has_value());
    file.reset();
    testing::ExpectSameSnapshot(before, SnapshotDir(Dir()));
  }
};

TEST_F(DamagedTest, MissingMiddleSegmentIsDamagedAndGapReadsFailWithEIO) {
  WriteMeta(1000, 0);
  WriteSegment(0, 1000, 1000);
  // [1000, 2000) missing
  WriteSegment(2000, 1000, 1000);
  WriteSegment(3000, 1000, 5);
  // A leftover temp file stays too: a damaged file is not touched at all.
  testing::WriteFileText(Path("hpfile.meta.tmp"), "format=1\n");
  OpenDamaged([&](HPFile& file) {
    EXPECT_NE(file.Damage()->find("1000"), std::string::npos) << "the reason should name the gap";
    EXPECT_EQ(file.Size(), 3005u);
    EXPECT_EQ(file.Head(), 0u);
    ExpectPattern(file, 0, 1000);
    ExpectPattern(file, 2000, 1005);
    ExpectPattern(file, 2500, 505);
    std::byte buf[100];
    EXPECT_ERRNO(file.ReadAt(1000, buf), EIO);
    EXPECT_ERRNO(file.ReadAt(1500, buf), EIO);
    EXPECT_ERRNO(file.ReadAt(1999, std::span(buf, 1)), EIO);
    EXPECT_ERRNO(file.MapRange(1000, 10), EIO);
    EXPECT_ERRNO(file.MapRange(1999, 10), EIO);
    // A read that starts on data and runs into the gap: either the error or
    // exactly the bytes before the gap, never anything from inside it.
    auto straddle = file.ReadAt(990, buf);
    if (straddle.has_value()) {
      EXPECT_EQ(*straddle, 10u);
      EXPECT_EQ(std::vector<std::byte>(buf, buf + 10), PatternBytes(990, 10));
    } else {
      EXPECT_EQ(straddle.error().value(), EIO);
    }
    PreReader reader(file, 4096);
    EXPECT_ERRNO(reader.ReadAt(1500, buf), EIO);
    ASSERT_OK_AND_ASSIGN(size_t n, reader.ReadAt(2000, buf));
    EXPECT_EQ(n, 100u);
    EXPECT_EQ(std::vector<std::byte>(buf, buf + 100), PatternBytes(2000, 100));
    ASSERT_OK_AND_ASSIGN(n, reader.ReadAt(3005, buf));
    EXPECT_EQ(n, 0u);
  });
}

TEST_F(DamagedTest, MissingFirstSegmentsBelowHeadAreNotAGap) {
  // Control: segments missing *below the head* are what a prune leaves.
  WriteMeta(1000, 2500);
  WriteSegment(2000, 1000, 1000);
  WriteSegment(3000, 1000, 5);
  ASSERT_OK_AND_ASSIGN(auto file, OpenExisting());
  EXPECT_FALSE(file->Damage().has_value()) << *file->Damage();
  ExpectPattern(*file, 2500, 505);
}

TEST_F(DamagedTest, MissingGapSegmentIsDamaged) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteSegment(16 + kGapCapacity, 16, 5);
  OpenDamaged([&](HPFile& file) {
    EXPECT_NE(file.Damage()->find("missing"), std::string::npos) << *file.Damage();
    ExpectPattern(file, 0, 16);
    ExpectPattern(file, 16 + kGapCapacity, 5);
    EXPECT_ERRNO(ReadRange(file, 100, 10), EIO);
  });
}

TEST_F(DamagedTest, OverlongGapSegmentIsDamaged) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteGapSegment(16, kGapCapacity, kGapCapacity + 1);
  WriteSegment(16 + kGapCapacity, 16, 5);
  OpenDamaged([&](HPFile& file) {
    EXPECT_NE(file.Damage()->find(SegmentFileName(16, kGapCapacity)), std::string::npos) << *file.Damage();
  });
}

TEST_F(DamagedTest, OverlongSealedSegmentIsDamaged) {
  WriteMeta(16, 0);
  auto overlong = PatternBytes(0, 16);
  overlong.resize(20, std::byte{0xEE});  // bytes past the slot belong to no offset
  testing::WriteFileBytes(Path(SegmentFileName(0, 16)), overlong);
  WriteSegment(16, 16, 5);
  OpenDamaged([&](HPFile& file) {
    EXPECT_NE(file.Damage()->find(SegmentFileName(0, 16)), std::string::npos) << "the reason should name the file";
    ExpectPattern(file, 0, 16);
    ExpectPattern(file, 16, 5);
    ExpectPattern(file, 10, 11);
  });
}

TEST_F(DamagedTest, OverlongTailSegmentIsDamaged) {
  WriteMeta(16, 0);
  auto overlong = PatternBytes(0, 16);
  overlong.resize(20, std::byte{0xEE});
  testing::WriteFileBytes(Path(SegmentFileName(0, 16)), overlong);
  OpenDamaged([&](HPFile& file) {
    EXPECT_NE(file.Damage()->find(SegmentFileName(0, 16)), std::string::npos);
    ExpectPattern(file, 0, 16);
    // Nothing past the slot is ever served.
    std::byte buf[8];
    auto n = file.ReadAt(16, buf);
    if (n.has_value()) {
      EXPECT_EQ(*n, 0u);
    } else {
      EXPECT_EQ(n.error().value(), EIO);
    }
  });
}

TEST_F(DamagedTest, OverlappingSegmentsAreDamaged) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteSegment(8, 16, 16);
  OpenDamaged([&](HPFile& file) { ExpectPattern(file, 0, 8); });
}

TEST_F(DamagedTest, TwoSegmentsWithTheSameBaseAreDamaged) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteSegment(0, 32, 20);
  OpenDamaged([](HPFile&) {});
}

TEST_F(DamagedTest, ShortSealedSegmentNextToAGapIsNotCut) {
  // Looks like a crash signature, but the gap after it is not one: nothing
  // may be cut or deleted.
  WriteMeta(16, 0);
  WriteSegment(0, 16, 10);
  WriteSegment(16, 16, 16);
  WriteSegment(48, 16, 4);
  OpenDamaged([&](HPFile& file) { ExpectPattern(file, 0, 10); });
}

TEST_F(DamagedTest, GarbageMetaIsDamaged) {
  WriteMetaText("this is not a meta file\n\x01\x02\x03\n");
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 5);
  OpenDamaged([&](HPFile& file) {
    EXPECT_NE(file.Damage()->find("meta"), std::string::npos) << "the reason should name the meta file";
    // The segments carry their own slots, so their bytes stay readable.
    ExpectPattern(file, 0, 21);
  });
}

TEST_F(DamagedTest, EmptyMetaIsDamaged) {
  WriteMetaText("");
  WriteSegment(0, 16, 5);
  OpenDamaged([&](HPFile& file) { ExpectPattern(file, 0, 5); });
}

TEST_F(DamagedTest, MetaWithUnsupportedFormatIsDamaged) {
  WriteMetaText("format=3\nsegment_size=16\nhead=0\n");
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 5);
  OpenDamaged([&](HPFile& file) {
    EXPECT_NE(file.Damage()->find("format"), std::string::npos) << "the reason should name the format";
  });
}

TEST_F(DamagedTest, MetaWithInvalidSegmentSizeIsDamaged) {
  WriteMetaText("format=1\nsegment_size=0\nhead=0\n");
  WriteSegment(0, 16, 5);
  OpenDamaged([](HPFile&) {});
}

TEST_F(DamagedTest, MissingMetaNextToSegmentsIsDamaged) {
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 5);
  OpenDamaged([&](HPFile& file) {
    EXPECT_NE(file.Damage()->find("meta"), std::string::npos);
    ExpectPattern(file, 0, 21);
  });
}

TEST_F(DamagedTest, MissingMetaNextToSegmentsIsNeverRecreated) {
  // Even when creation is allowed, an existing run of segments is not adopted
  // by guessing its meta.
  WriteSegment(0, 16, 16);
  auto before = SnapshotDir(Dir());
  auto file = HPFile::Open(Dir());  // create_if_missing = true
  if (file.has_value()) {
    EXPECT_TRUE((*file)->Damage().has_value()) << "segments without meta opened as healthy";
    EXPECT_ERRNO((*file)->Append(PatternBytes(16, 1)), EIO);
    file->reset();
  }
  testing::ExpectSameSnapshot(before, SnapshotDir(Dir()));
}

class UnparseableNameTest : public DamagedTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(UnparseableNameTest, UnparseableEntryIsDamagedAndNamed) {
  const std::string name = GetParam();
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 3);
  testing::WriteFileText(Path(name), "whatever this is");
  OpenDamaged([&](HPFile& file) {
    EXPECT_NE(file.Damage()->find(name), std::string::npos) << "the reason should name " << name;
    ExpectPattern(file, 0, 19);
  });
}

INSTANTIATE_TEST_SUITE_P(Names, UnparseableNameTest,
                         ::testing::Values("junk.seg",
                                           "123-abc.seg",
                                           "0-16.seg",                           // base not 20 digits
                                           "00000000000000000032-0.seg",         // capacity 0
                                           "00000000000000000032-016.seg",       // not the one spelling
                                           "00000000000000000032-16.seg.seg",
                                           "-00000000000000000032-16.seg",
                                           "notes.txt"));                        // nothing of ours

// ---------------------------------------------------------------------------
// Repair (PlanRepair / ApplyRepair): only what an operator asks for

class RepairTest : public RecoveryTest {
 protected:
  Result<RepairPlan> Plan(RepairOptions options = {}) {
    auto scan = ScanStore(PosixIo::Default(), Dir());
    if (!scan) return std::unexpected(scan.error());
    return PlanRepair(PosixIo::Default(), Dir(), *scan, options);
  }

  // Plans, checks the plan changed nothing, applies it and opens the file.
  Result<std::unique_ptr<HPFile>> Repair(RepairOptions options = {}) {
    auto before = SnapshotDir(Dir());
    auto plan = Plan(options);
    if (!plan) return std::unexpected(plan.error());
    testing::ExpectSameSnapshot(before, SnapshotDir(Dir()));
    EXPECT_TRUE(plan->repairs()) << (plan->unrepairable.empty() ? "" : plan->unrepairable.front());
    for (const auto& line : plan->log) std::cout << "repair: " << line << "\n";
    if (auto applied = ApplyRepair(PosixIo::Default(), Dir(), *plan); !applied) {
      return std::unexpected(applied.error());
    }
    return OpenExisting();
  }

  static std::string Joined(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& line : lines) out += line + "\n";
    return out;
  }
};

TEST_F(RepairTest, MissingMetaIsRebuiltFromTheSegments) {
  WriteSegment(32, 16, 16);
  WriteSegment(48, 16, 16);
  WriteSegment(64, 8, 5);  // the newest segment has the segment size in force
  ASSERT_EQ(::chmod(Path(SegmentFileName(32, 16)).c_str(), 0640), 0);
  ASSERT_OK_AND_ASSIGN(auto plan, Plan());
  ASSERT_TRUE(plan.rebuilt_meta);
  EXPECT_EQ(plan.rebuilt_meta->segment_size, 8u);
  EXPECT_EQ(plan.rebuilt_meta->head, 32u) << "the first segment's base";
  EXPECT_EQ(plan.rebuilt_meta->mode, 0640u) << "the segment file's mode";
  EXPECT_EQ(plan.rebuilt_meta->uid, ::geteuid());
  EXPECT_EQ(plan.rebuilt_meta->gid, ::getegid());
  EXPECT_FALSE(plan.rebuilt_meta->retain_bytes);
  const std::string log = Joined(plan.log);
  EXPECT_NE(log.find("missing"), std::string::npos) << log;
  EXPECT_NE(log.find("segment_size=8"), std::string::npos) << log;

  ASSERT_OK_AND_ASSIGN(auto file, Repair());
  EXPECT_FALSE(file->Damage()) << *file->Damage();
  EXPECT_EQ(file->Head(), 32u);
  EXPECT_EQ(file->Size(), 69u);
  ExpectPattern(*file, 32, 37);
  ASSERT_OK(file->Append(PatternBytes(69, 10)));
  EXPECT_EQ(file->Segments().back().capacity, 8u);
}

TEST_F(RepairTest, GarbageMetaIsReplacedByARebuiltOne) {
  WriteMetaText("this is not a meta\n\x01\x02");
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 3);
  ASSERT_OK_AND_ASSIGN(auto plan, Plan());
  EXPECT_NE(Joined(plan.log).find("does not parse"), std::string::npos) << Joined(plan.log);
  ASSERT_OK_AND_ASSIGN(auto file, Repair());
  EXPECT_FALSE(file->Damage());
  ExpectPattern(*file, 0, 19);
  EXPECT_EQ(file->GetMeta().segment_size, 16u);
}

TEST_F(RepairTest, CompleteTempMetaOfAnInterruptedCreationIsUsed) {
  testing::WriteFileText(Path("hpfile.meta.tmp"),
                         "format=1\nsegment_size=16\nhead=0\nmode=0600\nuid=7\ngid=8\nretain_bytes=99\n");
  WriteSegment(0, 16, 4);
  ASSERT_OK_AND_ASSIGN(auto plan, Plan());
  ASSERT_TRUE(plan.rebuilt_meta);
  EXPECT_EQ(plan.rebuilt_meta->mode, 0600u);
  EXPECT_EQ(plan.rebuilt_meta->uid, 7u);
  EXPECT_EQ(plan.rebuilt_meta->retain_bytes, 99u) << "nothing is lost";
  ASSERT_OK_AND_ASSIGN(auto file, Repair());
  EXPECT_FALSE(file->Damage());
  EXPECT_FALSE(FileExists(Path("hpfile.meta.tmp"))) << "recovery removes the temp file";
  ExpectPattern(*file, 0, 4);
}

TEST_F(RepairTest, MetaOfAnotherFormatIsNeverReplaced) {
  WriteMetaText("format=2\nsegment_size=16\nhead=0\n");
  WriteSegment(0, 16, 4);
  auto before = SnapshotDir(Dir());
  ASSERT_OK_AND_ASSIGN(auto plan, Plan());
  EXPECT_FALSE(plan.repairs());
  EXPECT_FALSE(plan.rebuilt_meta);
  EXPECT_NE(Joined(plan.unrepairable).find("format 2"), std::string::npos) << Joined(plan.unrepairable);
  EXPECT_ERRNO(ApplyRepair(PosixIo::Default(), Dir(), plan), EINVAL);
  testing::ExpectSameSnapshot(before, SnapshotDir(Dir()));
}

TEST_F(RepairTest, GapIsOnlyTruncatedWhenAsked) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteSegment(16, 16, 16);
  WriteSegment(48, 16, 16);  // [32, 48) is missing
  WriteSegment(64, 16, 7);
  auto before = SnapshotDir(Dir());
  ASSERT_OK_AND_ASSIGN(auto plan, Plan());
  EXPECT_FALSE(plan.repairs());
  const std::string why = Joined(plan.unrepairable);
  EXPECT_NE(why.find("[32, 48)"), std::string::npos) << why;
  EXPECT_NE(why.find("23 bytes in 2 segments"), std::string::npos) << why;
  EXPECT_NE(why.find("--truncate-at-gap"), std::string::npos) << why;
  testing::ExpectSameSnapshot(before, SnapshotDir(Dir()));

  ASSERT_OK_AND_ASSIGN(auto file, Repair({.truncate_at_gap = true}));
  EXPECT_FALSE(file->Damage());
  EXPECT_EQ(file->Size(), 32u);
  ExpectPattern(*file, 0, 32);
  EXPECT_EQ(SegmentFilesOnDisk(Dir()), (std::vector<std::string>{SegmentFileName(0, 16), SegmentFileName(16, 16)}));
  ASSERT_OK(file->Append(PatternBytes(32, 20)));
  ExpectPattern(*file, 0, 52);
}

TEST_F(RepairTest, GapAndLostMetaAreRepairedTogether) {
  WriteSegment(0, 16, 16);
  WriteSegment(32, 16, 16);
  ASSERT_OK_AND_ASSIGN(auto file, Repair({.truncate_at_gap = true}));
  EXPECT_FALSE(file->Damage());
  EXPECT_EQ(file->Size(), 16u);
  ExpectPattern(*file, 0, 16);
}

TEST_F(RepairTest, DamageBeyondRepairChangesNothing) {
  // A lost meta could be rebuilt, but the overlong segment cannot be fixed:
  // the whole repair is refused.
  WriteSegment(0, 16, 20);
  testing::WriteFileText(Path("notes.txt"), "mine");
  auto before = SnapshotDir(Dir());
  ASSERT_OK_AND_ASSIGN(auto plan, Plan({.truncate_at_gap = true}));
  EXPECT_FALSE(plan.repairs());
  EXPECT_FALSE(plan.rebuilt_meta);
  EXPECT_TRUE(plan.remove.empty());
  const std::string why = Joined(plan.unrepairable);
  EXPECT_NE(why.find("more than its capacity"), std::string::npos) << why;
  EXPECT_NE(why.find("notes.txt"), std::string::npos) << why;
  EXPECT_ERRNO(ApplyRepair(PosixIo::Default(), Dir(), plan), EINVAL);
  testing::ExpectSameSnapshot(before, SnapshotDir(Dir()));
}

TEST_F(RepairTest, OverlongSegmentAfterTheGapGoesWithIt) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 16);
  WriteSegment(32, 16, 30);
  ASSERT_OK_AND_ASSIGN(auto file, Repair({.truncate_at_gap = true}));
  EXPECT_FALSE(file->Damage());
  EXPECT_EQ(file->Size(), 16u);
}

TEST_F(RepairTest, HealthyFileNeedsNoRepair) {
  WriteMeta(16, 0);
  WriteSegment(0, 16, 5);
  ASSERT_OK_AND_ASSIGN(auto plan, Plan({.truncate_at_gap = true}));
  EXPECT_FALSE(plan.repairs());
  EXPECT_TRUE(plan.unrepairable.empty());
  EXPECT_TRUE(plan.log.empty());
}

}  // namespace
}  // namespace hpfile
