// SPDX-License-Identifier: Apache-2.0
// HPFile's documented contract, method by method, at its boundaries, against
// the real filesystem (PosixIo) in a temporary directory.
#include "core/hpfile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/fault_io.h"
#include "core/format.h"
#include "core/meta.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::FileBlocks;
using testing::FileExists;
using testing::FileSize;
using testing::FirstDifference;
using testing::OptionsWithSegmentSize;
using testing::PatternBytes;
using testing::ReadFileBytes;
using testing::ReadFileText;
using testing::ReadRange;
using testing::RunInChildThatCrashes;
using testing::SeededBytes;
using testing::SegmentFileName;
using testing::SegmentFilesOnDisk;
using testing::TempDir;

class HPFileTest : public ::testing::Test {
 protected:
  std::string Dir() const { return tmp_.Sub("file"); }
  std::string SegPath(uint64_t base, uint64_t capacity) const {
    return Dir() + "/" + SegmentFileName(base, capacity);
  }

  TempDir tmp_;
};

// What a test expects a file to hold: content[i] is byte i (bytes below the
// head are ignored), content.size() is the size.
struct Model {
  uint64_t head = 0;
  std::vector<std::byte> content;

  void Append(std::span<const std::byte> data) { content.insert(content.end(), data.begin(), data.end()); }
};

// Head, size, every byte of [head, size), ENODATA just below the head, and
// nothing past the end.
void ExpectContent(const HPFile& file, const Model& model) {
  SCOPED_TRACE("ExpectContent");
  ASSERT_EQ(file.Head(), model.head);
  ASSERT_EQ(file.Size(), model.content.size());
  uint64_t size = model.content.size();
  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(file, model.head, size - model.head));
  std::span<const std::byte> want(model.content.data() + model.head, size - model.head);
  auto diff = FirstDifference(got, want);
  EXPECT_FALSE(diff.has_value()) << "first difference at offset " << model.head + diff.value_or(0)
                                 << " (read " << got.size() << " bytes, expected " << want.size() << ")";
  if (model.head > 0) {
    std::byte b[1];
    EXPECT_ERRNO(file.ReadAt(model.head - 1, b), ENODATA);
  }
  std::byte b[8];
  auto past = file.ReadAt(size, b);
  ASSERT_OK(past);
  EXPECT_EQ(*past, 0u);
}

// Appends `length` bytes of seed `seed` to both; the append must land at the
// old end of the file.
void AppendSeeded(HPFile& file, Model& model, uint64_t seed, size_t length) {
  auto data = SeededBytes(seed, model.content.size(), length);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file.Append(data));
  EXPECT_EQ(offset, model.content.size());
  model.Append(data);
}

// Closes `file` and opens it again with `options`; the reopened file must
// hold `model` and be well formed.
void ReopenAndExpectContent(std::unique_ptr<HPFile>& file, const std::string& dir, const Options& options,
                            const Model& model) {
  file.reset();
  ASSERT_OK_AND_ASSIGN(file, HPFile::Open(dir, options));
  ExpectContent(*file, model);
  testing::ExpectWellFormed(*file);
}

std::vector<SegmentInfo> Expected(std::initializer_list<std::array<uint64_t, 3>> rows) {
  std::vector<SegmentInfo> out;
  for (auto& r : rows) {
    out.push_back(SegmentInfo{r[0], r[1], r[2], SegmentFileName(r[0], r[1])});
  }
  return out;
}

void ExpectSegments(const std::vector<SegmentInfo>& got, const std::vector<SegmentInfo>& want) {
  ASSERT_EQ(got.size(), want.size()) << "segment count";
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].base, want[i].base) << "segment " << i;
    EXPECT_EQ(got[i].capacity, want[i].capacity) << "segment " << i;
    EXPECT_EQ(got[i].length, want[i].length) << "segment " << i;
    EXPECT_EQ(got[i].file_name, want[i].file_name) << "segment " << i;
  }
}

void ExpectSegments(const HPFile& file, const std::vector<SegmentInfo>& want) {
  ExpectSegments(file.Segments(), want);
}

// A file that has just filled its tail may already have rolled to an empty
// successor; the contract allows both, so drop such a trailing empty segment.
std::vector<SegmentInfo> SegmentsWithoutEmptyTail(const HPFile& file) {
  auto segments = file.Segments();
  if (segments.size() > 1 && segments.back().length == 0) segments.pop_back();
  return segments;
}

// ---------------------------------------------------------------------------
// Open

TEST_F(HPFileTest, NewFileIsEmpty) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir()));
  EXPECT_EQ(file->Size(), 0u);
  EXPECT_EQ(file->Head(), 0u);
  EXPECT_EQ(file->DurableSize(), 0u);
  EXPECT_FALSE(file->Damage().has_value());
  EXPECT_TRUE(FileExists(Dir() + "/" + std::string(format::kMetaName)));

  std::byte buf[16];
  ASSERT_OK_AND_ASSIGN(size_t n, file->ReadAt(0, buf));
  EXPECT_EQ(n, 0u);
  ASSERT_OK_AND_ASSIGN(n, file->ReadAt(12345, buf));
  EXPECT_EQ(n, 0u);
  ASSERT_OK_AND_ASSIGN(n, file->ReadAt(0, std::span<std::byte>()));
  EXPECT_EQ(n, 0u);

  auto segments = file->Segments();
  ASSERT_LE(segments.size(), 1u);
  if (segments.size() == 1) {
    EXPECT_EQ(segments[0].base, 0u);
    EXPECT_EQ(segments[0].length, 0u);
  }
  ASSERT_OK_AND_ASSIGN(auto extents, file->MapRange(0, 100));
  EXPECT_TRUE(extents.empty());
  testing::ExpectWellFormed(*file);
}

TEST_F(HPFileTest, NewFileUsesInitialMeta) {
  Options options = OptionsWithSegmentSize(4096);
  options.initial_meta.mode = 0640;
  options.initial_meta.uid = 1234;
  options.initial_meta.gid = 5678;
  options.initial_meta.retain_bytes = 1 << 20;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  Meta meta = file->GetMeta();
  EXPECT_EQ(meta.segment_size, 4096u);
  EXPECT_EQ(meta.mode, 0640u);
  EXPECT_EQ(meta.uid, 1234u);
  EXPECT_EQ(meta.gid, 5678u);
  EXPECT_EQ(meta.retain_bytes, 1u << 20);
  EXPECT_FALSE(meta.retain_seconds.has_value());

  // Open of an existing file ignores initial_meta.
  file.reset();
  Options other = OptionsWithSegmentSize(999);
  ASSERT_OK_AND_ASSIGN(file, HPFile::Open(Dir(), other));
  EXPECT_EQ(file->GetMeta().segment_size, 4096u);
  EXPECT_EQ(file->GetMeta().uid, 1234u);
}

TEST_F(HPFileTest, OpenCreatesFileInExistingEmptyDirectory) {
  ASSERT_EQ(::mkdir(Dir().c_str(), 0755), 0);
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir()));
  EXPECT_EQ(file->Size(), 0u);
  EXPECT_TRUE(FileExists(Dir() + "/" + std::string(format::kMetaName)));
}

TEST_F(HPFileTest, OpenWithoutCreateOnMissingDirectoryFailsWithENOENT) {
  Options options;
  options.create_if_missing = false;
  EXPECT_ERRNO(HPFile::Open(Dir(), options), ENOENT);
  EXPECT_FALSE(FileExists(Dir()));
}

TEST_F(HPFileTest, OpenWithoutCreateOnDirectoryWithoutMetaFailsWithENOENT) {
  ASSERT_EQ(::mkdir(Dir().c_str(), 0755), 0);
  Options options;
  options.create_if_missing = false;
  EXPECT_ERRNO(HPFile::Open(Dir(), options), ENOENT);
  EXPECT_TRUE(testing::ListDirSorted(Dir()).empty()) << "open must not create anything";
}

TEST_F(HPFileTest, OpenOnRegularFileFails) {
  testing::WriteFileText(Dir(), "not a directory");
  auto file = HPFile::Open(Dir());
  ASSERT_FALSE(file.has_value());
  EXPECT_EQ(file.error().value(), ENOTDIR) << file.error().message();
  EXPECT_EQ(ReadFileText(Dir()), "not a directory");
}

// ---------------------------------------------------------------------------
// Append

TEST_F(HPFileTest, AppendReturnsStartOffsets) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  Model model;
  uint64_t expected_offset = 0;
  for (size_t len : {3u, 10u, 1u, 16u, 40u, 2u}) {
    auto data = SeededBytes(len, expected_offset, len);
    ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(data));
    EXPECT_EQ(offset, expected_offset);
    expected_offset += len;
    EXPECT_EQ(file->Size(), expected_offset);
    model.Append(data);
  }
  ExpectContent(*file, model);
  testing::ExpectWellFormed(*file);
}

TEST_F(HPFileTest, AppendAtTheExpectedEndAppends) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  Model model;
  auto first = SeededBytes(1, 0, 10);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->AppendAt(0, first));
  EXPECT_EQ(offset, 0u);
  model.Append(first);
  auto second = SeededBytes(2, 10, 20);
  ASSERT_OK_AND_ASSIGN(offset, file->AppendAt(10, second));
  EXPECT_EQ(offset, 10u);
  model.Append(second);
  ExpectContent(*file, model);
  testing::ExpectWellFormed(*file);
}

TEST_F(HPFileTest, AppendAtAnotherEndFailsWithESTALEAndWritesNothing) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  Model model;
  auto data = SeededBytes(1, 0, 10);
  ASSERT_OK(file->Append(data));
  model.Append(data);
  for (uint64_t wrong_end : {0u, 9u, 11u, 1000u}) {
    auto r = file->AppendAt(wrong_end, SeededBytes(3, 10, 5));
    ASSERT_FALSE(r.has_value()) << "end " << wrong_end;
    EXPECT_EQ(r.error().value(), ESTALE);
  }
  EXPECT_EQ(file->Size(), 10u);
  ExpectContent(*file, model);
}

TEST_F(HPFileTest, ZeroLengthAppendReturnsEndAndChangesNothing) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append({}));
  EXPECT_EQ(offset, 0u);
  EXPECT_EQ(file->Size(), 0u);

  auto data = PatternBytes(0, 16);
  ASSERT_OK(file->Append(data));
  auto before = file->Segments();
  auto disk_before = SegmentFilesOnDisk(Dir());
  ASSERT_OK_AND_ASSIGN(offset, file->Append({}));
  EXPECT_EQ(offset, 16u);
  EXPECT_EQ(file->Size(), 16u);
  EXPECT_EQ(file->Segments().size(), before.size());
  EXPECT_EQ(SegmentFilesOnDisk(Dir()), disk_before);
  ExpectContent(*file, Model{0, data});
}

TEST_F(HPFileTest, AppendExactlyFillingSegmentRollsOnNextAppend) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  auto first = SeededBytes(1, 0, 16);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(first));
  EXPECT_EQ(offset, 0u);
  EXPECT_EQ(file->Size(), 16u);
  {
    auto segments = file->Segments();
    ASSERT_GE(segments.size(), 1u);
    EXPECT_EQ(segments[0].length, 16u);
    // If the writer rolled eagerly, the new tail is empty and starts at 16.
    if (segments.size() == 2) {
      EXPECT_EQ(segments[1].base, 16u);
      EXPECT_EQ(segments[1].length, 0u);
    }
    EXPECT_LE(segments.size(), 2u);
  }
  testing::ExpectWellFormed(*file);

  auto second = SeededBytes(2, 16, 1);
  ASSERT_OK_AND_ASSIGN(offset, file->Append(second));
  EXPECT_EQ(offset, 16u);
  ExpectSegments(*file, Expected({{0, 16, 16}, {16, 16, 1}}));
  EXPECT_EQ(SegmentFilesOnDisk(Dir()),
            (std::vector<std::string>{SegmentFileName(0, 16), SegmentFileName(16, 16)}));
  EXPECT_EQ(ReadFileBytes(SegPath(0, 16)), first);
  EXPECT_EQ(ReadFileBytes(SegPath(16, 16)), second);
}

TEST_F(HPFileTest, AppendSpanningSeveralSegmentsSplitsAtCapacities) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  auto a = SeededBytes(1, 0, 5);
  auto b = SeededBytes(2, 5, 50);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(a));
  EXPECT_EQ(offset, 0u);
  ASSERT_OK_AND_ASSIGN(offset, file->Append(b));
  EXPECT_EQ(offset, 5u);
  ExpectSegments(*file, Expected({{0, 16, 16}, {16, 16, 16}, {32, 16, 16}, {48, 16, 7}}));

  Model model;
  model.Append(a);
  model.Append(b);
  // Each segment file holds exactly its slot's bytes.
  for (uint64_t base : {0u, 16u, 32u, 48u}) {
    size_t len = std::min<size_t>(16, model.content.size() - base);
    std::vector<std::byte> want(model.content.begin() + base, model.content.begin() + base + len);
    EXPECT_EQ(ReadFileBytes(SegPath(base, 16)), want) << "segment at " << base;
  }
  ExpectContent(*file, model);
  testing::ExpectWellFormed(*file);
}

TEST_F(HPFileTest, AppendSpanningFromExactlyFullTail) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  Model model;
  auto a = SeededBytes(1, 0, 32);
  auto b = SeededBytes(2, 32, 33);
  ASSERT_OK(file->Append(a));
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(b));
  EXPECT_EQ(offset, 32u);
  model.Append(a);
  model.Append(b);
  ExpectSegments(*file, Expected({{0, 16, 16}, {16, 16, 16}, {32, 16, 16}, {48, 16, 16}, {64, 16, 1}}));
  ExpectContent(*file, model);
}

TEST_F(HPFileTest, OneByteSegments) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(1)));
  Model model;
  auto a = SeededBytes(1, 0, 10);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(a));
  EXPECT_EQ(offset, 0u);
  model.Append(a);
  for (uint64_t i = 0; i < 5; ++i) {
    auto one = SeededBytes(2, 10 + i, 1);
    ASSERT_OK_AND_ASSIGN(offset, file->Append(one));
    EXPECT_EQ(offset, 10 + i);
    model.Append(one);
  }
  auto segments = SegmentsWithoutEmptyTail(*file);
  ASSERT_EQ(segments.size(), 15u);
  for (uint64_t i = 0; i < 15; ++i) {
    EXPECT_EQ(segments[i].base, i);
    EXPECT_EQ(segments[i].capacity, 1u);
    EXPECT_EQ(segments[i].length, 1u);
    EXPECT_EQ(segments[i].file_name, SegmentFileName(i, 1));
    EXPECT_EQ(ReadFileBytes(SegPath(i, 1)), std::vector<std::byte>{model.content[i]});
  }
  ExpectContent(*file, model);
  // Single-byte reads at every offset and one read over all of them.
  for (uint64_t i = 0; i < 15; ++i) {
    ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file, i, 1));
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], model.content[i]) << "offset " << i;
  }
  testing::ExpectWellFormed(*file);

  ASSERT_OK(file->PruneHead(7));
  ASSERT_OK(file->Truncate(12));
  model.head = 7;
  model.content.resize(12);
  ExpectContent(*file, model);
  testing::ExpectWellFormed(*file);
}

TEST_F(HPFileTest, SegmentFilesAreNamedByBaseAndCapacityWithMatchingSizes) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(1000)));
  auto data = PatternBytes(0, 2500);
  ASSERT_OK(file->Append(data));
  EXPECT_EQ(SegmentFilesOnDisk(Dir()),
            (std::vector<std::string>{"00000000000000000000-1000.seg", "00000000000000001000-1000.seg",
                                      "00000000000000002000-1000.seg"}));
  EXPECT_EQ(FileSize(Dir() + "/00000000000000000000-1000.seg"), 1000);
  EXPECT_EQ(FileSize(Dir() + "/00000000000000001000-1000.seg"), 1000);
  EXPECT_EQ(FileSize(Dir() + "/00000000000000002000-1000.seg"), 500);
  testing::ExpectWellFormed(*file);
}

// An empty file whose head (and so size) sits just below the largest size
// allowed, as a truncate below the head can leave it.
TEST_F(HPFileTest, AppendPastMaxFileSizeFailsWithEFBIGAndChangesNothing) {
  ASSERT_EQ(::mkdir(Dir().c_str(), 0755), 0);
  const uint64_t start = format::kMaxFileSize - 10;
  testing::WriteFileText(Dir() + "/hpfile.meta",
                         "format=1\nsegment_size=16\nhead=" + std::to_string(start) + "\n");
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir()));
  ASSERT_FALSE(file->Damage().has_value()) << *file->Damage();
  ASSERT_EQ(file->Size(), start);
  EXPECT_ERRNO(file->Append(PatternBytes(start, 11)), EFBIG);
  EXPECT_ERRNO(file->Truncate(format::kMaxFileSize + 1), EFBIG);
  EXPECT_EQ(file->Size(), start);
  EXPECT_TRUE(SegmentFilesOnDisk(Dir()).empty());
}

TEST_F(HPFileTest, OpenWithMissingParentDirectoryFails) {
  auto file = HPFile::Open(tmp_.Sub("no/such/parent"));
  ASSERT_FALSE(file.has_value());
  EXPECT_EQ(file.error().value(), ENOENT) << file.error().message();
}

// ---------------------------------------------------------------------------
// ReadAt

TEST_F(HPFileTest, ReadAtIsShortOnlyAtEnd) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  auto data = PatternBytes(0, 50);
  ASSERT_OK(file->Append(data));
  // Reads crossing every boundary come back whole.
  for (uint64_t offset = 0; offset < 50; ++offset) {
    for (size_t len : {1u, 15u, 16u, 17u, 33u}) {
      ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file, offset, len));
      size_t want = std::min<size_t>(len, 50 - offset);
      ASSERT_EQ(got.size(), want) << "offset " << offset << " len " << len;
      EXPECT_EQ(got, PatternBytes(offset, want)) << "offset " << offset << " len " << len;
    }
  }
  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file, 50, 10));
  EXPECT_TRUE(got.empty());
  ASSERT_OK_AND_ASSIGN(got, ReadRange(*file, 1u << 30, 10));
  EXPECT_TRUE(got.empty());
  ASSERT_OK_AND_ASSIGN(got, ReadRange(*file, UINT64_MAX - 5, 10));
  EXPECT_TRUE(got.empty());
}

// ---------------------------------------------------------------------------
// SetSegmentSize

TEST_F(HPFileTest, SetSegmentSizeAppliesToNewSegmentsOnly) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  Model model;
  auto a = SeededBytes(1, 0, 20);
  ASSERT_OK(file->Append(a));
  model.Append(a);
  ASSERT_OK(file->SetSegmentSize(32));
  EXPECT_EQ(file->GetMeta().segment_size, 32u);
  // The tail keeps its capacity of 16.
  ExpectSegments(*file, Expected({{0, 16, 16}, {16, 16, 4}}));

  auto b = SeededBytes(2, 20, 20);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(b));
  EXPECT_EQ(offset, 20u);
  model.Append(b);
  ExpectSegments(*file, Expected({{0, 16, 16}, {16, 16, 16}, {32, 32, 8}}));

  ASSERT_OK(file->SetSegmentSize(8));
  auto c = SeededBytes(3, 40, 40);
  ASSERT_OK(file->Append(c));
  model.Append(c);
  ExpectSegments(SegmentsWithoutEmptyTail(*file),
                 Expected({{0, 16, 16}, {16, 16, 16}, {32, 32, 32}, {64, 8, 8}, {72, 8, 8}}));
  ExpectContent(*file, model);
  testing::ExpectWellFormed(*file);

  // The new size survives a reopen, and so do the old segments' capacities.
  ASSERT_OK(file->Sync());
  file.reset();
  ASSERT_OK_AND_ASSIGN(file, HPFile::Open(Dir()));
  EXPECT_EQ(file->GetMeta().segment_size, 8u);
  ExpectContent(*file, model);
  auto d = SeededBytes(4, 80, 9);
  ASSERT_OK(file->Append(d));
  model.Append(d);
  ExpectSegments(*file, Expected({{0, 16, 16}, {16, 16, 16}, {32, 32, 32}, {64, 8, 8}, {72, 8, 8}, {80, 8, 8},
                                  {88, 8, 1}}));
  ExpectContent(*file, model);
  testing::ExpectWellFormed(*file);
}

TEST_F(HPFileTest, SetSegmentSizeRejectsInvalidSizes) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  EXPECT_ERRNO(file->SetSegmentSize(0), EINVAL);
  EXPECT_ERRNO(file->SetSegmentSize(format::kMaxSegmentSize + 1), EINVAL);
  EXPECT_EQ(file->GetMeta().segment_size, 16u);
  EXPECT_OK(file->SetSegmentSize(format::kMaxSegmentSize));
  EXPECT_EQ(file->GetMeta().segment_size, format::kMaxSegmentSize);
}

// ---------------------------------------------------------------------------
// Truncate

class TruncateTest : public HPFileTest {
 protected:
  void SetUp() override {
    auto opened = HPFile::Open(Dir(), OptionsWithSegmentSize(16));
    ASSERT_TRUE(opened.has_value()) << opened.error().message();
    file_ = std::move(*opened);
    model_.content = SeededBytes(1, 0, 40);  // segments [0,16) [16,32) [32,40)
    auto offset = file_->Append(model_.content);
    ASSERT_TRUE(offset.has_value()) << offset.error().message();
  }

  void AppendAndCheck(uint64_t seed, size_t len) {
    auto data = SeededBytes(seed, model_.content.size(), len);
    auto offset = file_->Append(data);
    ASSERT_TRUE(offset.has_value()) << offset.error().message();
    EXPECT_EQ(*offset, model_.content.size());
    model_.Append(data);
    ExpectContent(*file_, model_);
    testing::ExpectWellFormed(*file_);
  }

  std::unique_ptr<HPFile> file_;
  Model model_;
};

TEST_F(TruncateTest, TruncateToZeroEmptiesFile) {
  ASSERT_OK(file_->Truncate(0));
  EXPECT_EQ(file_->Size(), 0u);
  EXPECT_EQ(file_->Head(), 0u);
  EXPECT_LE(file_->DurableSize(), file_->Size());
  auto segments = file_->Segments();
  ASSERT_LE(segments.size(), 1u);
  if (!segments.empty()) {
    EXPECT_EQ(segments[0].length, 0u);
  }
  model_.content.clear();
  ExpectContent(*file_, model_);
  testing::ExpectWellFormed(*file_);
  AppendAndCheck(2, 20);
}

TEST_F(TruncateTest, TruncateToSizeChangesNothing) {
  auto before = file_->Segments();
  ASSERT_OK(file_->Truncate(40));
  ExpectSegments(*file_, before);
  ExpectContent(*file_, model_);
}

TEST_F(TruncateTest, TruncateWithinTailCutsTail) {
  ASSERT_OK(file_->Truncate(37));
  model_.content.resize(37);
  ExpectSegments(*file_, Expected({{0, 16, 16}, {16, 16, 16}, {32, 16, 5}}));
  EXPECT_EQ(FileSize(SegPath(32, 16)), 5);
  ExpectContent(*file_, model_);
  AppendAndCheck(2, 20);
}

TEST_F(TruncateTest, TruncateAtSegmentBoundaryDropsWholeSegment) {
  ASSERT_OK(file_->Truncate(32));
  model_.content.resize(32);
  ExpectSegments(*file_, Expected({{0, 16, 16}, {16, 16, 16}}));
  EXPECT_FALSE(FileExists(SegPath(32, 16)));
  ExpectContent(*file_, model_);
  testing::ExpectWellFormed(*file_);

  ASSERT_OK(file_->Truncate(16));
  model_.content.resize(16);
  ExpectSegments(*file_, Expected({{0, 16, 16}}));
  EXPECT_FALSE(FileExists(SegPath(16, 16)));
  ExpectContent(*file_, model_);
  AppendAndCheck(2, 3);
  ExpectSegments(*file_, Expected({{0, 16, 16}, {16, 16, 3}}));
}

TEST_F(TruncateTest, TruncateIntoSealedSegmentDeletesLaterSegmentsAndCutsIt) {
  AppendAndCheck(2, 20);  // now 60 bytes: segments at 0, 16, 32, 48
  ASSERT_OK(file_->Truncate(20));
  model_.content.resize(20);
  ExpectSegments(*file_, Expected({{0, 16, 16}, {16, 16, 4}}));
  EXPECT_FALSE(FileExists(SegPath(32, 16)));
  EXPECT_FALSE(FileExists(SegPath(48, 16)));
  EXPECT_EQ(FileSize(SegPath(16, 16)), 4);
  ExpectContent(*file_, model_);
  AppendAndCheck(3, 20);
  ExpectSegments(*file_, Expected({{0, 16, 16}, {16, 16, 16}, {32, 16, 8}}));
}

TEST_F(TruncateTest, TruncateToHeadLeavesEmptyFileAtHead) {
  ASSERT_OK(file_->PruneHead(20));
  ASSERT_OK(file_->Truncate(20));
  model_.head = 20;
  model_.content.resize(20);
  EXPECT_EQ(file_->Head(), 20u);
  EXPECT_EQ(file_->Size(), 20u);
  ExpectContent(*file_, model_);
  testing::ExpectWellFormed(*file_);
  AppendAndCheck(2, 30);
}

TEST_F(TruncateTest, TruncateBelowHeadLeavesEmptyFileWithHeadAndSizeAtN) {
  ASSERT_OK(file_->PruneHead(36));
  ASSERT_OK(file_->Truncate(10));
  EXPECT_EQ(file_->Head(), 10u);
  EXPECT_EQ(file_->Size(), 10u);
  model_.head = 10;
  model_.content.resize(10);
  ExpectContent(*file_, model_);
  testing::ExpectWellFormed(*file_);
  AppendAndCheck(2, 30);
  std::byte b[1];
  EXPECT_ERRNO(file_->ReadAt(9, b), ENODATA);
  EXPECT_ERRNO(file_->ReadAt(0, b), ENODATA);

  // The state survives a reopen.
  ASSERT_OK(file_->Sync());
  file_.reset();
  ASSERT_OK_AND_ASSIGN(file_, HPFile::Open(Dir()));
  ExpectContent(*file_, model_);
  testing::ExpectWellFormed(*file_);
}

TEST_F(TruncateTest, TruncateBelowHeadOfFileWithoutSegmentsBelowN) {
  // Head past the first two segments: they are gone, and n lies below the
  // first remaining segment's base.
  ASSERT_OK(file_->PruneHead(38));
  ASSERT_OK(file_->Truncate(5));
  EXPECT_EQ(file_->Head(), 5u);
  EXPECT_EQ(file_->Size(), 5u);
  model_.head = 5;
  model_.content.resize(5);
  ExpectContent(*file_, model_);
  AppendAndCheck(2, 50);
}

TEST_F(TruncateTest, TruncateGrowingAppendsZeros) {
  ASSERT_OK(file_->Truncate(37));
  ASSERT_OK(file_->Truncate(70));
  model_.content.resize(37);
  model_.content.resize(70, std::byte{0});
  ExpectContent(*file_, model_);
  ExpectSegments(*file_, Expected({{0, 16, 16}, {16, 16, 16}, {32, 16, 16}, {48, 16, 16}, {64, 16, 6}}));
  testing::ExpectWellFormed(*file_);
  AppendAndCheck(2, 11);
}

TEST_F(HPFileTest, TruncateGrowingIsSparse) {
  constexpr uint64_t kSeg = 64ull << 20;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(kSeg)));
  auto a = SeededBytes(1, 0, 10);
  ASSERT_OK(file->Append(a));
  const uint64_t n = 3 * kSeg + 12345;
  ASSERT_OK(file->Truncate(n));
  EXPECT_EQ(file->Size(), n);
  ASSERT_OK(file->Sync());
  EXPECT_EQ(file->DurableSize(), n);
  // The two whole slots of zeros are one sparse segment; the tail is an
  // ordinary one.
  ExpectSegments(*file, Expected({{0, kSeg, kSeg}, {kSeg, 2 * kSeg, 2 * kSeg}, {3 * kSeg, kSeg, 12345}}));
  EXPECT_TRUE(FileExists(Dir() + "/00000000000067108864-134217728.seg"));
  int64_t blocks = 0;
  for (auto& name : SegmentFilesOnDisk(Dir())) blocks += FileBlocks(Dir() + "/" + name);
  // 192 MiB of zeros written out would be 393216 blocks; a sparse grow costs
  // a few blocks for the 10 data bytes and metadata.
  EXPECT_LT(blocks, 2048) << "grown zeros were written out instead of left sparse";

  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file, 0, 10));
  EXPECT_EQ(got, a);
  for (uint64_t offset : std::initializer_list<uint64_t>{10, kSeg - 1, kSeg, 2 * kSeg + 7, n - 100}) {
    ASSERT_OK_AND_ASSIGN(got, ReadRange(*file, offset, 100));
    EXPECT_EQ(got, std::vector<std::byte>(100)) << "offset " << offset;
  }
  auto b = SeededBytes(2, n, 10);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(b));
  EXPECT_EQ(offset, n);
  ASSERT_OK_AND_ASSIGN(got, ReadRange(*file, n - 5, 100));
  std::vector<std::byte> want(5);
  want.insert(want.end(), b.begin(), b.end());
  EXPECT_EQ(got, want);
}

// ---------------------------------------------------------------------------
// Grows of any size: a gap of zeros costs a few sparse segment files.

class GrowTest : public HPFileTest {
 protected:
  static constexpr uint64_t kSeg = 1 << 20;
  // A standard conformance test grows a file to this size.
  static constexpr uint64_t kHuge = 999999999999999;
  // Gap segments on a backing filesystem that caps files at 16 TiB (ext4),
  // plus the grown old tail and the new tail; one gap segment elsewhere.
  static constexpr size_t kMostSegmentsForAGrow = format::kMaxFileSize / (8ull << 40) + 2;

  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(file_, HPFile::Open(Dir(), OptionsWithSegmentSize(kSeg)));
    data_ = SeededBytes(1, 0, 1000);
    ASSERT_OK(file_->Append(data_));
  }

  // [offset, offset + length) reads as zeros.
  void ExpectZeros(uint64_t offset, size_t length) {
    ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file_, offset, length));
    EXPECT_EQ(got, std::vector<std::byte>(length)) << "at " << offset;
  }

  std::unique_ptr<HPFile> file_;
  std::vector<std::byte> data_;
};

TEST_F(GrowTest, GrowToAPetabyteCreatesFewSparseSegmentsInMilliseconds) {
  const auto started = std::chrono::steady_clock::now();
  ASSERT_OK(file_->Truncate(kHuge));
  ASSERT_OK(file_->Sync());
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(file_->Size(), kHuge);
  EXPECT_EQ(file_->DurableSize(), kHuge);
  // Milliseconds on an idle machine; the bound leaves room for a loaded one.
  EXPECT_LT(took, std::chrono::seconds(10));
  const auto segments = SegmentFilesOnDisk(Dir());
  EXPECT_LE(segments.size(), kMostSegmentsForAGrow);
  int64_t blocks = 0;
  for (const auto& name : segments) blocks += FileBlocks(Dir() + "/" + name);
  EXPECT_LT(blocks, 2048) << "the zeros were written out";
  testing::ExpectWellFormed(*file_);
  // The tail after the gap is an ordinary segment.
  EXPECT_EQ(file_->Segments().back().capacity, kSeg);
}

TEST_F(GrowTest, GapReadsAsZerosAndAppendsLandAfterIt) {
  ASSERT_OK(file_->Truncate(kHuge));
  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file_, 0, 1000));
  EXPECT_EQ(got, data_);
  for (uint64_t offset : {uint64_t{1000}, kSeg - 10, kSeg, kHuge / 2, kHuge - kSeg - 5, kHuge - 100}) {
    ExpectZeros(offset, 100);
  }
  auto more = SeededBytes(2, kHuge, 3 * kSeg);  // rolls through two more segments
  ASSERT_OK_AND_ASSIGN(uint64_t at, file_->Append(more));
  EXPECT_EQ(at, kHuge);
  ASSERT_OK_AND_ASSIGN(got, ReadRange(*file_, kHuge, more.size()));
  EXPECT_EQ(got, more);
  testing::ExpectWellFormed(*file_);

  // Reopened, the file is the same.
  const auto segments = file_->Segments();
  file_.reset();
  ASSERT_OK_AND_ASSIGN(file_, HPFile::Open(Dir(), OptionsWithSegmentSize(kSeg)));
  EXPECT_FALSE(file_->Damage().has_value()) << *file_->Damage();
  EXPECT_TRUE(file_->RecoveryLog().empty()) << file_->RecoveryLog().front();
  EXPECT_EQ(file_->Size(), kHuge + more.size());
  ExpectSegments(*file_, segments);
  ExpectZeros(kHuge / 3, 100);
  ASSERT_OK_AND_ASSIGN(got, ReadRange(*file_, kHuge, more.size()));
  EXPECT_EQ(got, more);
}

TEST_F(GrowTest, TruncateBackIntoTheGapKeepsZerosAndTakesAppends) {
  ASSERT_OK(file_->Truncate(kHuge));
  const uint64_t n = kHuge / 2 + 12345;
  ASSERT_OK(file_->Truncate(n));
  EXPECT_EQ(file_->Size(), n);
  ExpectZeros(n - 200, 200);
  testing::ExpectWellFormed(*file_);
  auto more = SeededBytes(3, n, 2 * kSeg);
  ASSERT_OK_AND_ASSIGN(uint64_t at, file_->Append(more));
  EXPECT_EQ(at, n);
  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file_, n - 10, more.size() + 10));
  std::vector<std::byte> want(10);
  want.insert(want.end(), more.begin(), more.end());
  EXPECT_EQ(got, want);
  testing::ExpectWellFormed(*file_);
  ASSERT_OK(file_->Truncate(500));
  ASSERT_OK_AND_ASSIGN(got, ReadRange(*file_, 0, 1000));
  EXPECT_EQ(got, std::vector<std::byte>(data_.begin(), data_.begin() + 500));
  EXPECT_EQ(SegmentFilesOnDisk(Dir()).size(), 1u);
}

TEST_F(GrowTest, PruneThroughTheGapDropsItsSegments) {
  ASSERT_OK(file_->Truncate(kHuge));
  ASSERT_OK(file_->Append(SeededBytes(4, kHuge, 100)));
  const uint64_t head = kHuge - kSeg / 2;
  ASSERT_OK(file_->PruneHead(head));
  EXPECT_EQ(file_->Head(), head);
  EXPECT_ERRNO(file_->ReadAt(kHuge / 2, std::as_writable_bytes(std::span(data_))), ENODATA);
  ExpectZeros(head, 100);
  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file_, kHuge, 100));
  EXPECT_EQ(got, SeededBytes(4, kHuge, 100));
  testing::ExpectWellFormed(*file_);
  testing::DeleteAllPruned(*file_);
  EXPECT_LE(SegmentFilesOnDisk(Dir()).size(), 2u);
  ASSERT_OK(file_->Sync());
}

TEST_F(GrowTest, GrowToTheMaximumSucceedsAndPastItFailsWithEfbig) {
  ASSERT_OK(file_->Truncate(format::kMaxFileSize));
  EXPECT_EQ(file_->Size(), format::kMaxFileSize);
  EXPECT_LE(SegmentFilesOnDisk(Dir()).size(), kMostSegmentsForAGrow);
  EXPECT_ERRNO(file_->Append(SeededBytes(5, 0, 1)), EFBIG);
  EXPECT_ERRNO(file_->Truncate(format::kMaxFileSize + 1), EFBIG);
  EXPECT_EQ(file_->Size(), format::kMaxFileSize);
  testing::ExpectWellFormed(*file_);
  ASSERT_OK(file_->Truncate(kSeg + 1));
  ASSERT_OK(file_->Append(SeededBytes(5, kSeg + 1, 10)));
  testing::ExpectWellFormed(*file_);
}

// Where the backing filesystem refuses a file as large as the gap (ext4 caps
// files at 16 TiB), the gap is covered by smaller segments instead.
TEST_F(HPFileTest, GrowCoversTheGapWithSmallerSegmentsWhereTheFilesystemRefusesOneThatLarge) {
  FaultIo io;
  Options options = OptionsWithSegmentSize(16);
  options.io = &io;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  ASSERT_OK(file->Append(SeededBytes(1, 0, 40)));
  // Call 1 sizes the old tail to its slot's end; call 2 the gap segment.
  io.FailNthCall(2, EFBIG, static_cast<IoOpMask>(IoOp::kFtruncate));
  ASSERT_OK(file->Truncate(1605));
  EXPECT_TRUE(io.Fired());
  EXPECT_EQ(file->Size(), 1605u);
  // [48, 1600) did not fit in one: it takes two of half the size, the rest
  // an ordinary segment.
  ExpectSegments(*file, Expected({{0, 16, 16}, {16, 16, 16}, {32, 16, 16}, {48, 768, 768}, {816, 768, 768},
                                  {1584, 16, 16}, {1600, 16, 5}}));
  testing::ExpectWellFormed(*file);
  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file, 40, 1565));
  EXPECT_EQ(got, std::vector<std::byte>(1565));

  // Refused even at one segment, the grow fails and changes nothing.
  io.FailAlways(EFBIG, static_cast<IoOpMask>(IoOp::kFtruncate));
  EXPECT_ERRNO(file->Truncate(5000), EFBIG);
  io.Heal();
  EXPECT_EQ(file->Size(), 1605u);
  testing::ExpectWellFormed(*file);
}

// A grow stopped between creating a gap segment and sizing it (a crash)
// leaves it as an empty tail; appends must not go into its wide slot.
TEST_F(HPFileTest, EmptyWideTailLeftByAnInterruptedGrowIsReplacedByAnOrdinaryOne) {
  ASSERT_EQ(::mkdir(Dir().c_str(), 0755), 0);
  testing::WriteFileText(Dir() + "/hpfile.meta", "format=1\nsegment_size=16\nhead=0\n");
  testing::WriteFileBytes(Dir() + "/" + SegmentFileName(0, 16), SeededBytes(1, 0, 16));
  testing::WriteFileBytes(Dir() + "/" + SegmentFileName(16, 1600), {});
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir()));
  ASSERT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_EQ(file->Size(), 16u);
  ASSERT_OK(file->Append(SeededBytes(2, 16, 20)));
  ExpectSegments(*file, Expected({{0, 16, 16}, {16, 16, 16}, {32, 16, 4}}));
  testing::ExpectWellFormed(*file);
  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file, 16, 20));
  EXPECT_EQ(got, SeededBytes(2, 16, 20));
}

TEST_F(TruncateTest, TruncatePastMaxFileSizeFailsWithEFBIG) {
  EXPECT_ERRNO(file_->Truncate(format::kMaxFileSize + 1), EFBIG);
  EXPECT_ERRNO(file_->Truncate(UINT64_MAX), EFBIG);
  ExpectContent(*file_, model_);
}

TEST_F(TruncateTest, DurableSizeNeverExceedsSizeAfterTruncate) {
  ASSERT_OK(file_->Sync());
  EXPECT_EQ(file_->DurableSize(), 40u);
  ASSERT_OK(file_->Truncate(20));
  EXPECT_LE(file_->DurableSize(), 20u);
  ASSERT_OK(file_->Sync());
  EXPECT_EQ(file_->DurableSize(), 20u);
}

// ---------------------------------------------------------------------------
// PruneHead

class PruneTest : public TruncateTest {};

TEST_F(PruneTest, PruneHeadToZeroIsNoOp) {
  auto before = file_->Segments();
  ASSERT_OK(file_->PruneHead(0));
  EXPECT_EQ(file_->Head(), 0u);
  ExpectSegments(*file_, before);
  ExpectContent(*file_, model_);
}

TEST_F(PruneTest, PruneHeadMidSegmentHidesBytesBelowHead) {
  ASSERT_OK(file_->PruneHead(5));
  model_.head = 5;
  EXPECT_EQ(file_->Head(), 5u);
  ExpectContent(*file_, model_);
  // The segment still holds bytes at and above the head.
  ExpectSegments(*file_, Expected({{0, 16, 16}, {16, 16, 16}, {32, 16, 8}}));
  EXPECT_TRUE(FileExists(SegPath(0, 16)));
  std::byte buf[10];
  EXPECT_ERRNO(file_->ReadAt(0, buf), ENODATA);
  EXPECT_ERRNO(file_->ReadAt(4, buf), ENODATA);  // straddles the head
  EXPECT_ERRNO(file_->MapRange(4, 10), ENODATA);
  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file_, 5, 10));
  EXPECT_EQ(got, std::vector<std::byte>(model_.content.begin() + 5, model_.content.begin() + 15));
  testing::ExpectWellFormed(*file_);
  AppendAndCheck(2, 9);
}

TEST_F(PruneTest, PruneHeadAtSegmentBoundaryDeletesSegmentFile) {
  ASSERT_OK(file_->PruneHead(16));
  model_.head = 16;
  EXPECT_TRUE(FileExists(SegPath(0, 16))) << "deleted in the prune, not by DeletePrunedSegments";
  EXPECT_EQ(file_->PrunedSegments().segments, 1u);
  testing::DeleteAllPruned(*file_);
  EXPECT_FALSE(FileExists(SegPath(0, 16)));
  ExpectSegments(*file_, Expected({{16, 16, 16}, {32, 16, 8}}));
  ExpectContent(*file_, model_);
  testing::ExpectWellFormed(*file_);

  ASSERT_OK(file_->PruneHead(32));
  model_.head = 32;
  testing::DeleteAllPruned(*file_);
  EXPECT_FALSE(FileExists(SegPath(16, 16)));
  ExpectSegments(*file_, Expected({{32, 16, 8}}));
  ExpectContent(*file_, model_);
  testing::ExpectWellFormed(*file_);
  AppendAndCheck(2, 30);
}

TEST_F(PruneTest, PruneHeadDeletesEverySegmentWhollyBelowHead) {
  AppendAndCheck(2, 1600 - 40);  // 100 segments
  ASSERT_OK(file_->PruneHead(1000));
  model_.head = 1000;
  auto segments = file_->Segments();
  ASSERT_FALSE(segments.empty());
  EXPECT_EQ(segments.front().base, 992u);  // the slot holding byte 1000
  EXPECT_EQ(segments.size(), (1600u - 992u) / 16u);
  EXPECT_EQ(file_->PrunedSegments().segments, 992u / 16u);
  EXPECT_EQ(file_->PrunedSegments().bytes, 992u);
  // Bounded steps, oldest first, each saying how many are left.
  ASSERT_OK_AND_ASSIGN(uint64_t left, file_->DeletePrunedSegments(10));
  EXPECT_EQ(left, 992u / 16u - 10u);
  EXPECT_FALSE(FileExists(SegPath(144, 16)));
  EXPECT_TRUE(FileExists(SegPath(160, 16)));
  testing::ExpectWellFormed(*file_);
  testing::DeleteAllPruned(*file_);
  EXPECT_EQ(SegmentFilesOnDisk(Dir()).size(), segments.size());
  ExpectContent(*file_, model_);
  testing::ExpectWellFormed(*file_);
}

TEST_F(PruneTest, PruneHeadBeyondSizeStopsAtSize) {
  ASSERT_OK(file_->PruneHead(1000));
  EXPECT_EQ(file_->Head(), 40u);
  EXPECT_EQ(file_->Size(), 40u);
  model_.head = 40;
  ExpectContent(*file_, model_);
  testing::DeleteAllPruned(*file_);
  EXPECT_FALSE(FileExists(SegPath(0, 16)));
  EXPECT_FALSE(FileExists(SegPath(16, 16)));
  testing::ExpectWellFormed(*file_);
  AppendAndCheck(2, 30);
}

TEST_F(PruneTest, PruneHeadExactlyToSizeOfFullTail) {
  ASSERT_OK(file_->Truncate(32));
  model_.content.resize(32);
  ASSERT_OK(file_->PruneHead(32));
  model_.head = 32;
  ExpectContent(*file_, model_);
  testing::ExpectWellFormed(*file_);
  AppendAndCheck(2, 20);
  ASSERT_OK(file_->Sync());
  file_.reset();
  ASSERT_OK_AND_ASSIGN(file_, HPFile::Open(Dir()));
  ExpectContent(*file_, model_);
}

TEST_F(PruneTest, PruneHeadRepeatedAndBelowCurrentHeadIsNoOp) {
  ASSERT_OK(file_->PruneHead(20));
  EXPECT_EQ(file_->Head(), 20u);
  ASSERT_OK(file_->PruneHead(20));
  EXPECT_EQ(file_->Head(), 20u);
  ASSERT_OK(file_->PruneHead(5));
  EXPECT_EQ(file_->Head(), 20u);
  ASSERT_OK(file_->PruneHead(0));
  EXPECT_EQ(file_->Head(), 20u);
  ASSERT_OK(file_->PruneHead(25));
  EXPECT_EQ(file_->Head(), 25u);
  model_.head = 25;
  ExpectContent(*file_, model_);
  testing::ExpectWellFormed(*file_);
}

TEST_F(HPFileTest, PruneHeadOnEmptyFileKeepsHeadAtSize) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  ASSERT_OK(file->PruneHead(10));
  EXPECT_EQ(file->Head(), 0u);
  EXPECT_EQ(file->Size(), 0u);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(PatternBytes(0, 3)));
  EXPECT_EQ(offset, 0u);
}

TEST_F(HPFileTest, PruneHeadReleasesBlocksBelowHeadInFirstSegment) {
  if (!testing::PunchHoleReleasesBlocks(tmp_.path())) {
    GTEST_SKIP() << "the filesystem under /tmp does not release blocks for punched holes";
  }
  constexpr uint64_t kSeg = 4 << 20;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(kSeg)));
  auto data = SeededBytes(1, 0, 6 << 20);
  ASSERT_OK(file->Append(data));
  ASSERT_OK(file->Sync());  // allocate the blocks (ext4 allocates lazily)
  int64_t before = FileBlocks(SegPath(0, kSeg));
  ASSERT_GE(before, int64_t{kSeg / 512});

  ASSERT_OK(file->PruneHead(3 << 20));
  int64_t after = FileBlocks(SegPath(0, kSeg));
  // 3 MiB below the head are released; 1 MiB above it stays.
  EXPECT_LE(after, before - int64_t{(3 << 20) / 512} + 64) << "before " << before << " after " << after;
  EXPECT_EQ(FileSize(SegPath(0, kSeg)), int64_t{kSeg}) << "punching must keep the file's size";
  Model model{3 << 20, data};
  ExpectContent(*file, model);
}

TEST_F(HPFileTest, DeferredHeadPunchReleasesBlocksOnlyAtPunchBelowHead) {
  if (!testing::PunchHoleReleasesBlocks(tmp_.path())) {
    GTEST_SKIP() << "the filesystem under /tmp does not release blocks for punched holes";
  }
  constexpr uint64_t kSeg = 4 << 20;
  Options options = OptionsWithSegmentSize(kSeg);
  options.defer_head_punch = true;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  auto data = SeededBytes(2, 0, 10 << 20);
  ASSERT_OK(file->Append(data));
  ASSERT_OK(file->Sync());
  const int64_t before = FileBlocks(SegPath(kSeg, kSeg));
  ASSERT_GE(before, int64_t{kSeg / 512});

  // The whole first segment goes at once; the second keeps its blocks, but
  // its bytes below the head already read as gone.
  ASSERT_OK(file->PruneHead(kSeg + (3 << 20)));
  testing::DeleteAllPruned(*file);
  EXPECT_FALSE(FileExists(SegPath(0, kSeg)));
  EXPECT_EQ(FileBlocks(SegPath(kSeg, kSeg)), before);
  Model model{kSeg + (3 << 20), data};
  ExpectContent(*file, model);

  ASSERT_OK(file->PunchBelowHead());
  const int64_t after = FileBlocks(SegPath(kSeg, kSeg));
  EXPECT_LE(after, before - int64_t{(3 << 20) / 512} + 64) << "before " << before << " after " << after;
  ExpectContent(*file, model);
  // Nothing is due any more: a second call changes nothing.
  ASSERT_OK(file->PunchBelowHead());
  EXPECT_EQ(FileBlocks(SegPath(kSeg, kSeg)), after);
}

// An Io that holds every fallocate until released, to catch a deferred
// punch in the middle.
class PausingPunchIo final : public Io {
 public:
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  bool punching() const { return punching_.load(); }

  Result<void> Fallocate(int fd, int mode, uint64_t offset, uint64_t length) override {
    punching_ = true;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return released_; });
    }
    auto r = base_.Fallocate(fd, mode, offset, length);
    punching_ = false;
    return r;
  }
  Result<int> Open(const std::string& path, int flags, mode_t mode) override { return base_.Open(path, flags, mode); }
  void Close(int fd) override { base_.Close(fd); }
  Result<size_t> Pread(int fd, std::span<std::byte> buf, uint64_t offset) override {
    return base_.Pread(fd, buf, offset);
  }
  Result<size_t> Pwrite(int fd, std::span<const std::byte> buf, uint64_t offset) override {
    return base_.Pwrite(fd, buf, offset);
  }
  Result<void> Fdatasync(int fd) override { return base_.Fdatasync(fd); }
  Result<void> Fsync(int fd) override { return base_.Fsync(fd); }
  Result<void> Syncfs(int fd) override { return base_.Syncfs(fd); }
  Result<void> Ftruncate(int fd, uint64_t length) override { return base_.Ftruncate(fd, length); }
  Result<struct stat> Fstat(int fd) override { return base_.Fstat(fd); }
  Result<struct stat> Stat(const std::string& path) override { return base_.Stat(path); }
  Result<void> Unlink(const std::string& path) override { return base_.Unlink(path); }
  Result<void> Rename(const std::string& from, const std::string& to) override { return base_.Rename(from, to); }
  Result<void> Mkdir(const std::string& path, mode_t mode) override { return base_.Mkdir(path, mode); }
  Result<void> Rmdir(const std::string& path) override { return base_.Rmdir(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override { return base_.ListDir(path); }
  Result<void> TryLockExclusive(int fd) override { return base_.TryLockExclusive(fd); }

 private:
  Io& base_ = PosixIo::Default();
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  std::atomic<bool> punching_{false};
};

// A deferred punch works out its range from the head when it starts. A
// truncate below that head lets appends land where the punch is about to
// zero, so it must wait for the punch; appends alone never do.
TEST_F(HPFileTest, TruncateBelowTheHeadWaitsForADeferredPunchInFlight) {
  constexpr uint64_t kSeg = 1 << 20;
  PausingPunchIo io;
  Options options = OptionsWithSegmentSize(kSeg);
  options.defer_head_punch = true;
  options.io = &io;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  ASSERT_OK(file->Append(SeededBytes(3, 0, 512 << 10)));
  ASSERT_OK(file->PruneHead(256 << 10));

  std::thread puncher([&] { ASSERT_OK(file->PunchBelowHead()); });
  while (!io.punching()) std::this_thread::yield();
  // The writer lock is free while the punch runs.
  ASSERT_OK(file->Append(SeededBytes(3, 512 << 10, 1000)));

  std::atomic<bool> truncated{false};
  std::thread truncater([&] {
    ASSERT_OK(file->Truncate(100 << 10));
    truncated = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(truncated.load()) << "a truncate below the head ran beside a punch computed with the old head";
  io.Release();
  puncher.join();
  truncater.join();
  ASSERT_TRUE(truncated.load());

  // Appends now land below the old head and must survive: nothing punches them.
  auto more = SeededBytes(4, 100 << 10, 300 << 10);
  ASSERT_OK(file->Append(more));
  ASSERT_OK(file->PunchBelowHead());
  Model model{100 << 10, std::vector<std::byte>(100 << 10)};
  model.Append(more);
  ExpectContent(*file, model);
}

// ---------------------------------------------------------------------------
// Reopen

// Every kind of operation, each followed by Sync, close and reopen; the
// reopened file must hold exactly what the model says.
TEST_F(HPFileTest, ReopenAfterEveryOperationPreservesState) {
  Options options = OptionsWithSegmentSize(16);
  options.initial_meta.mode = 0600;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  Model model;
  uint64_t segment_size = 16;
  Meta attributes = file->GetMeta();
  uint64_t seed = 0;

  auto reopen_and_check = [&](const std::string& step) {
    SCOPED_TRACE("after " + step);
    ASSERT_OK(file->Sync());
    EXPECT_EQ(file->DurableSize(), file->Size());
    file.reset();
    ASSERT_OK_AND_ASSIGN(file, HPFile::Open(Dir(), options));
    EXPECT_FALSE(file->Damage().has_value());
    ExpectContent(*file, model);
    testing::ExpectWellFormed(*file);
    Meta meta = file->GetMeta();
    EXPECT_EQ(meta.segment_size, segment_size);
    EXPECT_EQ(meta.mode, attributes.mode);
    EXPECT_EQ(meta.uid, attributes.uid);
    EXPECT_EQ(meta.gid, attributes.gid);
    EXPECT_EQ(meta.retain_bytes, attributes.retain_bytes);
    EXPECT_EQ(meta.retain_seconds, attributes.retain_seconds);
    EXPECT_EQ(meta.unknown, attributes.unknown);
  };
  auto append = [&](size_t len) {
    auto data = SeededBytes(++seed, model.content.size(), len);
    auto offset = file->Append(data);
    ASSERT_TRUE(offset.has_value()) << offset.error().message();
    EXPECT_EQ(*offset, model.content.size());
    model.Append(data);
  };

  reopen_and_check("create");
  append(10);
  reopen_and_check("append within a segment");
  append(6);
  reopen_and_check("append filling the tail");
  append(45);
  reopen_and_check("append spanning segments");
  ASSERT_OK(file->SetSegmentSize(24));
  segment_size = 24;
  reopen_and_check("SetSegmentSize");
  append(50);
  reopen_and_check("append with the new segment size");
  ASSERT_OK(file->PruneHead(7));
  model.head = 7;
  reopen_and_check("PruneHead mid-segment");
  ASSERT_OK(file->PruneHead(32));
  model.head = 32;
  reopen_and_check("PruneHead at a segment boundary");
  ASSERT_OK(file->Truncate(100));
  model.content.resize(100);
  reopen_and_check("Truncate within a segment");
  ASSERT_OK(file->Truncate(88));
  model.content.resize(88);
  reopen_and_check("Truncate at a segment boundary");
  ASSERT_OK(file->Truncate(150));
  model.content.resize(150, std::byte{0});
  reopen_and_check("Truncate growing");
  ASSERT_OK(file->UpdateMeta([](Meta& m) {
    m.mode = 0644;
    m.uid = 42;
    m.gid = 43;
    m.retain_bytes = 4096;
    m.retain_seconds = 86400;
  }));
  attributes = file->GetMeta();
  EXPECT_EQ(attributes.uid, 42u);
  reopen_and_check("UpdateMeta");
  ASSERT_OK(file->PruneHead(140));
  model.head = 140;
  reopen_and_check("PruneHead into the tail");
  ASSERT_OK(file->Truncate(60));
  model.head = 60;
  model.content.resize(60);
  reopen_and_check("Truncate below head");
  append(70);
  reopen_and_check("append after truncate below head");
  ASSERT_OK(file->Truncate(0));
  model.head = 0;
  model.content.clear();
  reopen_and_check("Truncate to zero");
  append(33);
  reopen_and_check("append after truncate to zero");
}

// A clean close without Sync loses no appended byte: write-through appends are
// in the backing filesystem already.
TEST_F(HPFileTest, ReopenWithoutSyncKeepsAppendedBytes) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  Model model;
  AppendSeeded(*file, model, 1, 50);
  ReopenAndExpectContent(file, Dir(), Options{}, model);
}

// Write, reopen, append, check both records byte for byte: the second record
// must land exactly at the old end, wherever that falls in its segment.
class AppendAfterReopenTest : public HPFileTest,
                              public ::testing::WithParamInterface<std::tuple<size_t, bool, size_t>> {};

TEST_P(AppendAfterReopenTest, AppendAfterReopenContinuesExactlyAtEnd) {
  auto [first_len, sync_before_close, write_buffer] = GetParam();
  Options options = OptionsWithSegmentSize(16, write_buffer);
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  auto first = SeededBytes(1, 0, first_len);
  ASSERT_OK(file->Append(first));
  if (sync_before_close || write_buffer > 0) ASSERT_OK(file->Sync());
  file.reset();

  ASSERT_OK_AND_ASSIGN(file, HPFile::Open(Dir(), options));
  ASSERT_EQ(file->Size(), first_len);
  auto second = SeededBytes(2, first_len, 21);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(second));
  EXPECT_EQ(offset, first_len);
  Model model;
  model.Append(first);
  model.Append(second);
  ExpectContent(*file, model);
  ASSERT_OK(file->Sync());

  ReopenAndExpectContent(file, Dir(), options, model);
  // And on disk, each segment file holds its slot's bytes.
  for (auto& s : file->Segments()) {
    std::vector<std::byte> want(model.content.begin() + s.base, model.content.begin() + s.base + s.length);
    EXPECT_EQ(ReadFileBytes(Dir() + "/" + s.file_name), want) << s.file_name;
  }
}

INSTANTIATE_TEST_SUITE_P(TailShapes, AppendAfterReopenTest,
                         ::testing::Combine(::testing::Values(1, 10, 16, 40, 48),
                                            ::testing::Bool(),
                                            ::testing::Values(0, 4096)));

// ---------------------------------------------------------------------------
// Sync and meta

TEST_F(HPFileTest, SyncMakesDurableSizeEqualSize) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  ASSERT_OK(file->Append(PatternBytes(0, 50)));
  EXPECT_LE(file->DurableSize(), file->Size());
  ASSERT_OK(file->Sync());
  EXPECT_EQ(file->DurableSize(), 50u);
  ASSERT_OK(file->Append(PatternBytes(50, 3)));
  EXPECT_LE(file->DurableSize(), 53u);
  EXPECT_GE(file->DurableSize(), 50u);
  ASSERT_OK(file->Sync());
  EXPECT_EQ(file->DurableSize(), 53u);
  // A Sync with nothing new is fine too.
  ASSERT_OK(file->Sync());
  EXPECT_EQ(file->DurableSize(), 53u);
}

// The caller's syncfs stands in for the fdatasyncs; the meta is still the
// file's to write.
TEST_F(HPFileTest, SyncInHalvesMakesDurableWithoutAFdatasync) {
  FaultIo io;
  Options options = OptionsWithSegmentSize(16, /*write_buffer_size=*/64);
  options.io = &io;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  ASSERT_OK(file->Append(PatternBytes(0, 50)));
  ASSERT_OK(file->PruneHead(20));
  io.ResetCounts();
  ASSERT_OK_AND_ASSIGN(auto pending, file->BeginSync());
  {
    const int dir_fd = ::open(Dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(dir_fd, 0);
    EXPECT_EQ(::syncfs(dir_fd), 0);
    ::close(dir_fd);
  }
  ASSERT_OK(file->FinishSync(std::move(pending), {}));
  EXPECT_EQ(io.Calls(static_cast<IoOpMask>(IoOp::kFdatasync)), 0u);
  EXPECT_EQ(file->DurableSize(), 50u);
  // The write buffer reached the backing files, and the prune wrote the head
  // to the meta itself, so a reopen that does not get to write them finds
  // both.
  EXPECT_EQ(io.Calls(static_cast<IoOpMask>(IoOp::kFsync)), 0u) << "the meta was written again";
  file.reset();
  ASSERT_OK_AND_ASSIGN(auto reopened, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  EXPECT_EQ(reopened->Size(), 50u);
  EXPECT_EQ(reopened->Head(), 20u);
}

// A failed syncfs, or a pending sync never finished: nothing is known
// durable, and the next Sync covers every segment again.
TEST_F(HPFileTest, SyncInHalvesThatFailedOrWasDroppedLeavesEverythingToTheNextSync) {
  for (const bool dropped : {false, true}) {
    SCOPED_TRACE(dropped ? "dropped" : "failed");
    FaultIo io;
    Options options = OptionsWithSegmentSize(16);
    options.io = &io;
    ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(tmp_.Sub(dropped ? "dropped" : "failed"), options));
    ASSERT_OK(file->Append(PatternBytes(0, 50)));  // four segments
    {
      ASSERT_OK_AND_ASSIGN(auto pending, file->BeginSync());
      if (!dropped) {
        auto finished = file->FinishSync(std::move(pending), std::unexpected(std::error_code(EIO, std::generic_category())));
        ASSERT_FALSE(finished);
        EXPECT_EQ(finished.error().value(), EIO);
      }
    }
    EXPECT_EQ(file->DurableSize(), 0u);
    io.ResetCounts();
    ASSERT_OK(file->Sync());
    EXPECT_EQ(io.Calls(static_cast<IoOpMask>(IoOp::kFdatasync)), 4u);
    EXPECT_EQ(file->DurableSize(), 50u);
  }
}

TEST_F(HPFileTest, BeginSyncOfADamagedFileFailsWithEio) {
  {
    ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
    ASSERT_OK(file->Append(PatternBytes(0, 50)));
  }
  ASSERT_EQ(::unlink(SegPath(16, 16).c_str()), 0);
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  ASSERT_TRUE(file->Damage().has_value());
  auto pending = file->BeginSync();
  ASSERT_FALSE(pending);
  EXPECT_EQ(pending.error().value(), EIO);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

bool HasLine(const std::string& text, const std::string& line) {
  auto lines = Lines(text);
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

TEST_F(HPFileTest, SyncWritesHeadAndSegmentSizeToMeta) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  ASSERT_OK(file->Append(PatternBytes(0, 50)));
  ASSERT_OK(file->PruneHead(20));
  ASSERT_OK(file->SetSegmentSize(32));
  ASSERT_OK(file->Sync());
  std::string text = ReadFileText(Dir() + "/" + std::string(format::kMetaName));
  EXPECT_TRUE(HasLine(text, "format=1")) << text;
  EXPECT_TRUE(HasLine(text, "head=20")) << text;
  EXPECT_TRUE(HasLine(text, "segment_size=32")) << text;
  EXPECT_FALSE(FileExists(Dir() + "/" + std::string(format::kMetaTempName)));
}

TEST_F(HPFileTest, ModeIsTheMetasModeAsItChanges) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  EXPECT_FALSE(file->Mode().has_value());
  ASSERT_OK(file->UpdateMeta([](Meta& m) { m.mode = 06755; }));
  EXPECT_EQ(file->Mode(), 06755u);
  ASSERT_OK(file->UpdateMeta([](Meta& m) { m.mode = 0644; }));
  EXPECT_EQ(file->Mode(), 0644u);
  file.reset();
  ASSERT_OK_AND_ASSIGN(file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  EXPECT_EQ(file->Mode(), 0644u);
  EXPECT_EQ(file->Mode(), file->GetMeta().mode);
}

TEST_F(HPFileTest, UpdateMetaPersistsAttributesAndKeepsUnknownKeys) {
  ASSERT_EQ(::mkdir(Dir().c_str(), 0755), 0);
  testing::WriteFileText(Dir() + "/hpfile.meta",
                         "format=1\nsegment_size=16\nhead=0\nx_future_key=some value\n");
  Options options;
  options.create_if_missing = false;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  ASSERT_FALSE(file->Damage().has_value()) << *file->Damage();
  using KeyValues = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(file->GetMeta().unknown, (KeyValues{{"x_future_key", "some value"}}));
  EXPECT_EQ(file->GetMeta().segment_size, 16u);

  ASSERT_OK(file->UpdateMeta([](Meta& m) {
    m.mode = 0640;
    m.uid = 1234;
    m.gid = 5678;
    m.retain_bytes = 1 << 20;
    m.retain_seconds = 3600;
  }));
  // Durable before returning: the file on disk has it already, unknown key included.
  std::string text = ReadFileText(Dir() + "/hpfile.meta");
  EXPECT_TRUE(HasLine(text, "x_future_key=some value")) << text;
  auto parsed = ParseMeta(text);
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  EXPECT_EQ(parsed->mode, 0640u);
  EXPECT_EQ(parsed->uid, 1234u);
  EXPECT_EQ(parsed->gid, 5678u);
  EXPECT_EQ(parsed->retain_bytes, 1u << 20);
  EXPECT_EQ(parsed->retain_seconds, 3600u);
  EXPECT_EQ(parsed->unknown, (KeyValues{{"x_future_key", "some value"}}));
  Meta expected = file->GetMeta();
  EXPECT_EQ(expected.uid, 1234u);

  file.reset();
  ASSERT_OK_AND_ASSIGN(file, HPFile::Open(Dir(), options));
  EXPECT_EQ(file->GetMeta(), expected);

  // Clearing an optional attribute persists as well.
  ASSERT_OK(file->UpdateMeta([](Meta& m) { m.retain_bytes.reset(); }));
  file.reset();
  ASSERT_OK_AND_ASSIGN(file, HPFile::Open(Dir(), options));
  EXPECT_FALSE(file->GetMeta().retain_bytes.has_value());
  EXPECT_EQ(file->GetMeta().retain_seconds, 3600u);
  EXPECT_EQ(file->GetMeta().unknown, (KeyValues{{"x_future_key", "some value"}}));
}

// Whatever UpdateMeta accepts, the next Open must read back: an attribute the
// meta format cannot hold has to be refused, not written and then found bad.
TEST_F(HPFileTest, UpdateMetaNeverWritesAMetaThatReopensDamaged) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  ASSERT_OK(file->Append(PatternBytes(0, 20)));
  // st_mode with the file-type bits, as a filesystem layer might pass it.
  auto updated = file->UpdateMeta([](Meta& m) { m.mode = 0100644; });
  Meta expected = file->GetMeta();
  ASSERT_OK(file->Sync());
  file.reset();
  ASSERT_OK_AND_ASSIGN(file, HPFile::Open(Dir()));
  EXPECT_FALSE(file->Damage().has_value()) << "UpdateMeta " << (updated ? "succeeded" : "failed")
                                           << ", then the file reopened damaged: " << *file->Damage();
  if (updated) {
    EXPECT_EQ(file->GetMeta(), expected);
  }
}

// ---------------------------------------------------------------------------
// Write buffer

TEST_F(HPFileTest, BufferedAppendsAreReadableBeforeFlushAndWrittenByFlush) {
  Options options = OptionsWithSegmentSize(1024, 4096);
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  auto data = SeededBytes(1, 0, 100);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file->Append(data));
  EXPECT_EQ(offset, 0u);
  EXPECT_EQ(file->Size(), 100u);
  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file, 0, 200));
  EXPECT_EQ(got, data);
  ASSERT_OK_AND_ASSIGN(got, ReadRange(*file, 30, 20));
  EXPECT_EQ(got, std::vector<std::byte>(data.begin() + 30, data.begin() + 50));
  // Still in memory: the backing file has not grown.
  int64_t on_disk = FileSize(SegPath(0, 1024));
  EXPECT_LT(on_disk, 100) << "a 100-byte append should stay in a 4096-byte write buffer";

  ASSERT_OK(file->Flush());
  EXPECT_EQ(ReadFileBytes(SegPath(0, 1024)), data);
  ExpectContent(*file, Model{0, data});
}

TEST_F(HPFileTest, BufferedAppendsSpanningSegmentsSurviveSyncAndReopen) {
  Options options = OptionsWithSegmentSize(64, 100);
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  Model model;
  uint64_t seed = 0;
  for (size_t len : {10u, 50u, 7u, 150u, 1u, 64u, 99u, 100u, 101u}) {
    AppendSeeded(*file, model, ++seed, len);
    ExpectContent(*file, model);
  }
  ASSERT_OK(file->Sync());
  EXPECT_EQ(file->DurableSize(), model.content.size());
  ReopenAndExpectContent(file, Dir(), options, model);
}

TEST_F(HPFileTest, BufferedAppendThenTruncateAndPrune) {
  Options options = OptionsWithSegmentSize(16, 64);
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  Model model;
  AppendSeeded(*file, model, 1, 40);
  ASSERT_OK(file->Truncate(30));
  model.content.resize(30);
  ExpectContent(*file, model);
  AppendSeeded(*file, model, 2, 20);
  ASSERT_OK(file->PruneHead(20));
  model.head = 20;
  ExpectContent(*file, model);
  ASSERT_OK(file->Sync());
  ReopenAndExpectContent(file, Dir(), options, model);
}

// The same edge cases as the write-through tests, with the bytes involved
// still in the write buffer.
TEST_F(HPFileTest, BufferedTruncateBelowHeadLeavesEmptyFileAtN) {
  Options options = OptionsWithSegmentSize(16, 4096);
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  Model model;
  AppendSeeded(*file, model, 1, 100);
  ASSERT_OK(file->PruneHead(80));
  EXPECT_EQ(file->Head(), 80u);
  ASSERT_OK(file->Truncate(50));
  EXPECT_EQ(file->Head(), 50u);
  EXPECT_EQ(file->Size(), 50u);
  model.head = 50;
  model.content.resize(50);
  ExpectContent(*file, model);
  AppendSeeded(*file, model, 2, 40);
  ExpectContent(*file, model);
  ASSERT_OK(file->Sync());
  ReopenAndExpectContent(file, Dir(), options, model);
}

TEST_F(HPFileTest, BufferedPruneHeadIntoBufferedBytes) {
  Options options = OptionsWithSegmentSize(16, 4096);
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  Model model;
  AppendSeeded(*file, model, 1, 100);
  ASSERT_OK(file->PruneHead(70));
  model.head = 70;
  ExpectContent(*file, model);
  AppendSeeded(*file, model, 2, 30);
  ASSERT_OK(file->Sync());
  ExpectContent(*file, model);
  testing::ExpectWellFormed(*file);
  ReopenAndExpectContent(file, Dir(), options, model);
}

// ---------------------------------------------------------------------------
// MapRange

// Reads an extent list back through its descriptors.
std::vector<std::byte> PreadExtents(const std::vector<Extent>& extents) {
  std::vector<std::byte> out;
  for (const Extent& e : extents) {
    std::vector<std::byte> piece(e.length);
    size_t done = 0;
    while (done < e.length) {
      ssize_t n = ::pread(e.fd->get(), piece.data() + done, e.length - done, e.file_offset + done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    piece.resize(done);
    out.insert(out.end(), piece.begin(), piece.end());
  }
  return out;
}

TEST_F(HPFileTest, MapRangeExtentsPreadToTheRange) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  auto data = SeededBytes(1, 0, 100);
  ASSERT_OK(file->Append(data));
  for (uint64_t offset : {0u, 1u, 15u, 16u, 17u, 40u, 90u, 99u}) {
    for (size_t len : {1u, 15u, 16u, 17u, 48u, 200u}) {
      SCOPED_TRACE("offset " + std::to_string(offset) + " len " + std::to_string(len));
      ASSERT_OK_AND_ASSIGN(auto extents, file->MapRange(offset, len));
      size_t want_len = std::min<size_t>(len, 100 - offset);
      size_t total = 0;
      for (const Extent& e : extents) {
        ASSERT_NE(e.fd, nullptr);
        EXPECT_TRUE(e.fd->valid());
        EXPECT_GT(e.length, 0u);
        EXPECT_LE(e.file_offset + e.length, 16u) << "an extent never leaves its segment";
        total += e.length;
      }
      EXPECT_EQ(total, want_len);
      EXPECT_EQ(extents.size(), (offset + want_len - 1) / 16 - offset / 16 + 1);
      if (!extents.empty()) {
        EXPECT_EQ(extents[0].file_offset, offset % 16);
      }
      EXPECT_EQ(PreadExtents(extents),
                std::vector<std::byte>(data.begin() + offset, data.begin() + offset + want_len));
    }
  }
}

TEST_F(HPFileTest, MapRangeBelowHeadFailsAndPastEndIsEmpty) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  auto data = SeededBytes(1, 0, 50);
  ASSERT_OK(file->Append(data));
  ASSERT_OK(file->PruneHead(20));
  EXPECT_ERRNO(file->MapRange(0, 10), ENODATA);
  EXPECT_ERRNO(file->MapRange(19, 10), ENODATA);
  ASSERT_OK_AND_ASSIGN(auto extents, file->MapRange(20, 10));
  EXPECT_EQ(PreadExtents(extents), std::vector<std::byte>(data.begin() + 20, data.begin() + 30));
  ASSERT_OK_AND_ASSIGN(extents, file->MapRange(50, 10));
  EXPECT_TRUE(extents.empty());
  ASSERT_OK_AND_ASSIGN(extents, file->MapRange(1000, 10));
  EXPECT_TRUE(extents.empty());
  ASSERT_OK_AND_ASSIGN(extents, file->MapRange(45, 10));
  EXPECT_EQ(PreadExtents(extents), std::vector<std::byte>(data.begin() + 45, data.end()));
  ASSERT_OK_AND_ASSIGN(extents, file->MapRange(21, SIZE_MAX));
  EXPECT_EQ(PreadExtents(extents), std::vector<std::byte>(data.begin() + 21, data.end()));
  ASSERT_OK_AND_ASSIGN(extents, file->MapRange(UINT64_MAX - 3, 10));
  EXPECT_TRUE(extents.empty());
  ASSERT_OK_AND_ASSIGN(extents, file->MapRange(30, 0));
  EXPECT_TRUE(extents.empty());
}

TEST_F(HPFileTest, MapRangeStopsWhereTheWriteBufferBegins) {
  Options options = OptionsWithSegmentSize(16, 4096);
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  auto data = SeededBytes(1, 0, 40);
  ASSERT_OK(file->Append(std::span(data).first(20)));
  ASSERT_OK(file->Flush());
  ASSERT_OK(file->Append(std::span(data).subspan(20)));
  ASSERT_OK_AND_ASSIGN(auto extents, file->MapRange(10, 30));
  EXPECT_EQ(PreadExtents(extents), std::vector<std::byte>(data.begin() + 10, data.begin() + 20));
  ASSERT_OK(file->Flush());
  ASSERT_OK_AND_ASSIGN(auto flushed, file->MapRange(10, 30));
  EXPECT_EQ(PreadExtents(flushed), std::vector<std::byte>(data.begin() + 10, data.end()));
}

TEST_F(HPFileTest, MapRangeExtentOutlivesDeletedSegment) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(16)));
  auto data = SeededBytes(1, 0, 50);
  ASSERT_OK(file->Append(data));
  ASSERT_OK_AND_ASSIGN(auto extents, file->MapRange(0, 32));
  ASSERT_OK(file->PruneHead(32));
  testing::DeleteAllPruned(*file);
  EXPECT_FALSE(FileExists(SegPath(0, 16)));
  EXPECT_EQ(PreadExtents(extents), std::vector<std::byte>(data.begin(), data.begin() + 32));
}

}  // namespace
}  // namespace hpfile

namespace hpfile {
namespace {

TEST_F(HPFileTest, DiscardHookReceivesEveryTruncatedSegmentAndNoPrunedOne) {
  std::vector<std::string> discarded;
  Options options = OptionsWithSegmentSize(10);
  const std::string aside = Dir() + ".aside";
  ASSERT_EQ(::mkdir(aside.c_str(), 0755), 0);
  options.discard_segment = [&](const std::string& path) -> Result<void> {
    discarded.push_back(path.substr(path.rfind('/') + 1));
    // Moved aside, as the filesystem layer does with its trash.
    if (::rename(path.c_str(), (aside + "/" + discarded.back()).c_str()) != 0) return LastErrno();
    return {};
  };
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  auto data = SeededBytes(3, 0, 60);
  ASSERT_OK(file->Append(data));
  ASSERT_OK(file->PruneHead(25));
  ASSERT_OK(file->Truncate(42));
  // Pruned segments wait for DeletePrunedSegments, which unlinks them.
  EXPECT_EQ(discarded, (std::vector<std::string>{testing::SegmentFileName(50, 10)}));
  testing::DeleteAllPruned(*file);
  EXPECT_EQ(discarded.size(), 1u);
  std::vector<std::byte> got(17);
  ASSERT_OK_AND_ASSIGN(size_t n, file->ReadAt(25, got));
  EXPECT_EQ(n, 17u);
  EXPECT_EQ(got, std::vector<std::byte>(data.begin() + 25, data.begin() + 42));
  file.reset();
  ASSERT_OK_AND_ASSIGN(auto reopened, HPFile::Open(Dir(), options));
  EXPECT_EQ(reopened->Head(), 25u);
  EXPECT_EQ(reopened->Size(), 42u);
  EXPECT_TRUE(reopened->RecoveryLog().empty());
  std::filesystem::remove_all(aside);
}

TEST_F(HPFileTest, FailingDiscardHookFailsTheTruncateAndKeepsTheSegment) {
  Options options = OptionsWithSegmentSize(10);
  options.discard_segment = [](const std::string&) -> Result<void> { return Errno(EIO); };
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  ASSERT_OK(file->Append(SeededBytes(3, 0, 30)));
  auto truncated = file->Truncate(5);
  ASSERT_FALSE(truncated.has_value());
  EXPECT_EQ(file->Size(), 30u);
}

TEST_F(HPFileTest, CloseDescriptorsLeavesNoneOpenAndTheFileKeepsWorking) {
  Options options = OptionsWithSegmentSize(100);
  options.write_buffer_size = 64;
  auto file = HPFile::Open(Dir(), options);
  ASSERT_TRUE(file);
  Model model;
  const auto first = PatternBytes(0, 450);
  ASSERT_TRUE((*file)->Append(first));
  model.Append(first);
  ExpectContent(**file, model);
  ASSERT_GT((*file)->OpenDescriptors(), 1u);

  ASSERT_TRUE((*file)->CloseDescriptors());
  EXPECT_EQ((*file)->OpenDescriptors(), 0u);
  EXPECT_EQ(ReadFileBytes(SegPath(400, 100)).size(), 50u) << "the write buffer went to disk first";

  const auto second = PatternBytes(450, 170);
  ASSERT_TRUE((*file)->Append(second));
  model.Append(second);
  ASSERT_TRUE((*file)->PruneHead(130));
  model.head = 130;
  ASSERT_TRUE((*file)->Sync());
  ExpectContent(**file, model);
  file->reset();

  auto reopened = HPFile::Open(Dir(), options);
  ASSERT_TRUE(reopened);
  ExpectContent(**reopened, model);
}

// ---- offsets across a process crash ----------------------------------------
// The child process dies with _exit after the steps: what it wrote stays in
// the kernel, but nothing is closed or written by a destructor.

// Opens the file in the child and runs `steps` on it; false on any error.
bool CrashAfterSteps(const std::string& dir, uint64_t segment_size,
                     const std::function<bool(HPFile&)>& steps) {
  return RunInChildThatCrashes([&] {
    auto file = HPFile::Open(dir, OptionsWithSegmentSize(segment_size));
    if (!file) return false;
    const bool done = steps(**file);
    // Leaked: a crash runs no destructor (which would write the meta).
    (void)file->release();
    return done;
  });
}

class PruneToTheEndTest : public HPFileTest, public ::testing::WithParamInterface<uint64_t> {};

// With a full tail, the prune deleted every segment and only the meta (not
// yet written) knew where the file ended.
TEST_P(PruneToTheEndTest, TheEndSurvivesACrashAndNoOffsetIsHandedOutTwice) {
  const uint64_t length = GetParam();
  ASSERT_TRUE(CrashAfterSteps(Dir(), 128, [&](HPFile& file) {
    return file.Append(PatternBytes(0, length)) && file.Sync() && file.PruneHead(length) &&
           file.Head() == length;
  }));
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(128)));
  EXPECT_EQ(file->Size(), length);
  EXPECT_LE(file->Head(), length);
  ASSERT_OK_AND_ASSIGN(const uint64_t offset, file->Append(PatternBytes(length, 10)));
  EXPECT_EQ(offset, length);
  testing::ExpectWellFormed(*file);
}

INSTANTIATE_TEST_SUITE_P(Lengths, PruneToTheEndTest, ::testing::Values(256u, 200u, 128u),
                         [](const auto& info) { return "Bytes" + std::to_string(info.param); });

TEST_F(HPFileTest, PruneToTheEndOfAFullTailLeavesAnEmptyTailAtTheHead) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(128)));
  ASSERT_OK(file->Append(PatternBytes(0, 256)));
  ASSERT_OK(file->PruneHead(256));
  testing::DeleteAllPruned(*file);
  EXPECT_EQ(SegmentFilesOnDisk(Dir()), std::vector<std::string>{SegmentFileName(256, 128)});
  testing::ExpectWellFormed(*file);
  ASSERT_OK_AND_ASSIGN(const uint64_t offset, file->Append(PatternBytes(256, 10)));
  EXPECT_EQ(offset, 256u);
  ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file, 256, 10));
  EXPECT_EQ(got, PatternBytes(256, 10));
}

// A truncate to the head deletes every segment: the unsynced head of an
// earlier prune must not be what the file reopens at.
TEST_F(HPFileTest, TruncateToTheHeadKeepsTheEndAcrossACrash) {
  ASSERT_TRUE(CrashAfterSteps(Dir(), 128, [](HPFile& file) {
    return file.Append(PatternBytes(0, 256)) && file.Sync() && file.PruneHead(200) && file.Truncate(200);
  }));
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), OptionsWithSegmentSize(128)));
  EXPECT_EQ(file->Size(), 200u);
  ASSERT_OK_AND_ASSIGN(const uint64_t offset, file->Append(PatternBytes(200, 10)));
  EXPECT_EQ(offset, 200u);
}

// The new head must be in the meta before anything is appended below the old
// one, or the appended bytes reopen below the head (ENODATA). Emptied first,
// the file has no segment left to cut when it is truncated below the head.
TEST_F(HPFileTest, AppendAfterATruncateBelowTheHeadSurvivesACrash) {
  for (const bool emptied_first : {false, true}) {
    SCOPED_TRACE(emptied_first ? "emptied first" : "with segments");
    const std::string dir = tmp_.Sub(emptied_first ? "emptied" : "file");
    ASSERT_TRUE(CrashAfterSteps(dir, 128, [&](HPFile& file) {
      return file.Append(PatternBytes(0, 256)) && file.PruneHead(200) && file.Sync() &&
             (!emptied_first || (file.Truncate(200) && file.Segments().empty())) && file.Truncate(50) &&
             file.Append(SeededBytes(7, 50, 100));
    }));
    ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(dir, OptionsWithSegmentSize(128)));
    EXPECT_EQ(file->Head(), 50u);
    EXPECT_EQ(file->Size(), 150u);
    ASSERT_OK_AND_ASSIGN(auto got, ReadRange(*file, 50, 100));
    EXPECT_EQ(got, SeededBytes(7, 50, 100));
  }
}

// The meta cannot be written: the last segment stays, and keeps the end.
TEST_F(HPFileTest, TruncateBelowTheHeadFailingToWriteTheMetaKeepsTheEndOnDisk) {
  FaultIo io;
  Options options = OptionsWithSegmentSize(128);
  options.io = &io;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir(), options));
  ASSERT_OK(file->Append(PatternBytes(0, 256)));
  ASSERT_OK(file->PruneHead(200));
  io.FailNthCall(1, ENOSPC, static_cast<IoOpMask>(IoOp::kPwrite));
  EXPECT_ERRNO(file->Truncate(50), ENOSPC);
  EXPECT_EQ(file->Size(), 128u) << "cut to the last segment's base";
  EXPECT_EQ(file->Head(), 128u);
  EXPECT_EQ(SegmentFilesOnDisk(Dir()), std::vector<std::string>{SegmentFileName(128, 128)});
  testing::ExpectWellFormed(*file);
  io.Heal();
  ASSERT_OK(file->Truncate(50));
  EXPECT_EQ(file->Size(), 50u);
  ASSERT_OK_AND_ASSIGN(const uint64_t offset, file->Append(PatternBytes(50, 10)));
  EXPECT_EQ(offset, 50u);
}

// ---- ownership ---------------------------------------------------------------

TEST_F(HPFileTest, SecondOpenOfAnOpenFileFailsWithEbusy) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir()));
  ASSERT_OK(file->Append(PatternBytes(0, 10)));
  EXPECT_ERRNO(HPFile::Open(Dir()), EBUSY);
  Result<std::unique_ptr<HPFile>> from_thread = Errno(EINVAL);
  std::thread([&] { from_thread = HPFile::Open(Dir()); }).join();
  EXPECT_ERRNO(from_thread, EBUSY);
  // The refused opens changed nothing, and the file works on.
  ASSERT_OK(file->Append(PatternBytes(10, 10)));
  EXPECT_EQ(file->Size(), 20u);
  file.reset();
  ASSERT_OK_AND_ASSIGN(auto reopened, HPFile::Open(Dir()));
  EXPECT_EQ(reopened->Size(), 20u);
}

TEST_F(HPFileTest, CloseDescriptorsKeepsOwnership) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir()));
  ASSERT_OK(file->Append(PatternBytes(0, 10)));
  ASSERT_OK(file->CloseDescriptors());
  EXPECT_ERRNO(HPFile::Open(Dir()), EBUSY);
}

TEST_F(HPFileTest, AnotherProcessGetsEbusyUntilTheOwnerCloses) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir()));
  const std::string dir = Dir();
  EXPECT_TRUE(RunInChildThatCrashes([&] {
    auto other = HPFile::Open(dir);
    return !other && other.error().value() == EBUSY;
  }));
  file.reset();
  EXPECT_TRUE(RunInChildThatCrashes([&] { return HPFile::Open(dir).has_value(); }));
}

TEST_F(HPFileTest, TheKernelReleasesOwnershipWhenTheOwnerDies) {
  ASSERT_TRUE(CrashAfterSteps(Dir(), 128, [](HPFile& file) { return file.Append(PatternBytes(0, 10)).has_value(); }));
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir()));
  EXPECT_EQ(file->Size(), 10u);
}

// The lock belongs to the directory, not to its name: a file renamed while
// open stays owned, and a new file at the old name is another file.
TEST_F(HPFileTest, OwnershipFollowsARenamedDirectory) {
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(Dir()));
  const std::string moved = tmp_.Sub("moved");
  ASSERT_EQ(::rename(Dir().c_str(), moved.c_str()), 0);
  EXPECT_ERRNO(HPFile::Open(moved), EBUSY);
  ASSERT_OK_AND_ASSIGN(auto fresh, HPFile::Open(Dir()));
  ASSERT_OK(fresh->Append(PatternBytes(0, 5)));
  EXPECT_EQ(fresh->Size(), 5u);
}

}  // namespace
}  // namespace hpfile
