// SPDX-License-Identifier: Apache-2.0
// PreReader: same answers as HPFile::ReadAt, whatever it has cached.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "core/hpfile.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::OptionsWithSegmentSize;
using testing::PatternBytes;
using testing::ReadRange;
using testing::SeededBytes;
using testing::TempDir;

class PreReaderTest : public ::testing::Test {
 protected:
  void Open(uint64_t segment_size, size_t write_buffer = 0) {
    Options options = OptionsWithSegmentSize(segment_size, write_buffer);
    auto file = HPFile::Open(tmp_.Sub("file"), options);
    ASSERT_TRUE(file.has_value()) << file.error().message();
    file_ = std::move(*file);
  }

  // PreReader::ReadAt into a vector cut to the count.
  static Result<std::vector<std::byte>> Read(PreReader& reader, uint64_t offset, size_t len) {
    std::vector<std::byte> out(len);
    auto n = reader.ReadAt(offset, out);
    if (!n) return std::unexpected(n.error());
    out.resize(*n);
    return out;
  }

  TempDir tmp_;
  std::unique_ptr<HPFile> file_;
};

// (segment size, PreReader buffer size, read size)
class SequentialScanTest : public PreReaderTest,
                           public ::testing::WithParamInterface<std::tuple<uint64_t, size_t, size_t>> {};

TEST_P(SequentialScanTest, SequentialScanEqualsReadAt) {
  auto [segment_size, buffer_size, read_size] = GetParam();
  ASSERT_NO_FATAL_FAILURE(Open(segment_size));
  // Forty segments and a bit: file creation, not reading, is what costs here.
  const uint64_t kSize = segment_size * 40 + 7;
  ASSERT_OK(file_->Append(PatternBytes(0, kSize)));
  ASSERT_OK(file_->PruneHead(13));
  ASSERT_OK_AND_ASSIGN(auto whole, ReadRange(*file_, 13, kSize));
  ASSERT_EQ(whole.size(), kSize - 13);

  PreReader reader(*file_, buffer_size);
  std::vector<std::byte> scanned;
  uint64_t offset = 13;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(auto piece, Read(reader, offset, read_size));
    ASSERT_LE(piece.size(), read_size);
    if (piece.empty()) break;
    // Short only at the end of the file.
    if (piece.size() < read_size) {
      ASSERT_EQ(offset + piece.size(), kSize) << "short read in the middle at " << offset;
    }
    scanned.insert(scanned.end(), piece.begin(), piece.end());
    offset += piece.size();
  }
  EXPECT_EQ(offset, kSize);
  EXPECT_EQ(scanned, whole);
}

INSTANTIATE_TEST_SUITE_P(Shapes, SequentialScanTest,
                         ::testing::Combine(::testing::Values(16, 1000),
                                            ::testing::Values(1, 64, 1 << 20),
                                            ::testing::Values(1, 7, 64, 333, 5000)));

TEST_F(PreReaderTest, RandomReadsEqualReadAt) {
  ASSERT_NO_FATAL_FAILURE(Open(100));
  ASSERT_OK(file_->Append(PatternBytes(0, 5000)));
  PreReader reader(*file_, 256);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 3000; ++i) {
    uint64_t offset = rng() % 5200;
    size_t len = rng() % 400;
    ASSERT_OK_AND_ASSIGN(auto got, Read(reader, offset, len));
    ASSERT_OK_AND_ASSIGN(auto want, ReadRange(*file_, offset, len));
    ASSERT_EQ(got, want) << "offset " << offset << " len " << len;
  }
}

TEST_F(PreReaderTest, SmallReadsAcrossSegmentBoundaries) {
  ASSERT_NO_FATAL_FAILURE(Open(16));
  ASSERT_OK(file_->Append(PatternBytes(0, 100)));
  PreReader reader(*file_);
  for (uint64_t offset : {14u, 15u, 30u, 31u, 46u, 62u, 94u}) {
    ASSERT_OK_AND_ASSIGN(auto got, Read(reader, offset, 5));
    EXPECT_EQ(got, PatternBytes(offset, std::min<uint64_t>(5, 100 - offset))) << "offset " << offset;
  }
}

TEST_F(PreReaderTest, NeverReturnsBytesReplacedByTruncateAndAppend) {
  ASSERT_NO_FATAL_FAILURE(Open(16));
  auto old_bytes = SeededBytes(1, 0, 100);
  ASSERT_OK(file_->Append(old_bytes));
  PreReader reader(*file_);
  ASSERT_OK_AND_ASSIGN(auto got, Read(reader, 0, 10));  // caches all 100 bytes
  EXPECT_EQ(got, std::vector<std::byte>(old_bytes.begin(), old_bytes.begin() + 10));

  ASSERT_OK(file_->Truncate(50));
  auto new_bytes = SeededBytes(2, 50, 50);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file_->Append(new_bytes));
  ASSERT_EQ(offset, 50u);

  ASSERT_OK_AND_ASSIGN(got, Read(reader, 60, 10));
  EXPECT_EQ(got, std::vector<std::byte>(new_bytes.begin() + 10, new_bytes.begin() + 20));
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 45, 10));
  std::vector<std::byte> want(old_bytes.begin() + 45, old_bytes.begin() + 50);
  want.insert(want.end(), new_bytes.begin(), new_bytes.begin() + 5);
  EXPECT_EQ(got, want);
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 0, 10));
  EXPECT_EQ(got, std::vector<std::byte>(old_bytes.begin(), old_bytes.begin() + 10));
}

TEST_F(PreReaderTest, NeverReturnsBytesCutByTruncate) {
  ASSERT_NO_FATAL_FAILURE(Open(16));
  auto bytes = SeededBytes(1, 0, 100);
  ASSERT_OK(file_->Append(bytes));
  PreReader reader(*file_);
  ASSERT_OK(Read(reader, 0, 10));
  ASSERT_OK(file_->Truncate(50));
  ASSERT_OK_AND_ASSIGN(auto got, Read(reader, 60, 10));
  EXPECT_TRUE(got.empty()) << "read " << got.size() << " bytes past the truncated end";
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 45, 10));
  EXPECT_EQ(got, std::vector<std::byte>(bytes.begin() + 45, bytes.begin() + 50));
}

// Many rounds of read, truncate, re-append with a new seed: the reader must
// always return the newest bytes.
TEST_F(PreReaderTest, RepeatedTruncateAndReappendNeverShowsStaleBytes) {
  ASSERT_NO_FATAL_FAILURE(Open(16));
  std::vector<std::byte> model = SeededBytes(0, 0, 300);
  ASSERT_OK(file_->Append(model));
  PreReader reader(*file_, 128);
  std::mt19937_64 rng(11);
  for (uint64_t round = 1; round <= 200; ++round) {
    uint64_t read_at = rng() % model.size();
    ASSERT_OK_AND_ASSIGN(auto got, Read(reader, read_at, 1 + rng() % 40));
    ASSERT_EQ(got, std::vector<std::byte>(model.begin() + read_at, model.begin() + read_at + got.size()))
        << "round " << round << " offset " << read_at;
    uint64_t cut = rng() % model.size();
    ASSERT_OK(file_->Truncate(cut));
    model.resize(cut);
    auto fresh = SeededBytes(round, cut, 300 - cut);
    ASSERT_OK(file_->Append(fresh));
    model.insert(model.end(), fresh.begin(), fresh.end());
  }
}

TEST_F(PreReaderTest, ReadsBelowHeadFailWithENODATAEvenWhenCached) {
  ASSERT_NO_FATAL_FAILURE(Open(16));
  ASSERT_OK(file_->Append(PatternBytes(0, 100)));
  PreReader reader(*file_);
  ASSERT_OK(Read(reader, 0, 10));
  ASSERT_OK(file_->PruneHead(50));
  std::byte buf[10];
  EXPECT_ERRNO(reader.ReadAt(10, buf), ENODATA);
  EXPECT_ERRNO(reader.ReadAt(49, buf), ENODATA);
  EXPECT_ERRNO(reader.ReadAt(0, std::span(buf, 1)), ENODATA);
  ASSERT_OK_AND_ASSIGN(auto got, Read(reader, 50, 10));
  EXPECT_EQ(got, PatternBytes(50, 10));
}

TEST_F(PreReaderTest, ReadsPastEndReturnZero) {
  ASSERT_NO_FATAL_FAILURE(Open(16));
  ASSERT_OK(file_->Append(PatternBytes(0, 40)));
  PreReader reader(*file_);
  ASSERT_OK_AND_ASSIGN(auto got, Read(reader, 40, 10));
  EXPECT_TRUE(got.empty());
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 4000, 10));
  EXPECT_TRUE(got.empty());
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 37, 10));
  EXPECT_EQ(got, PatternBytes(37, 3));
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 10, 0));
  EXPECT_TRUE(got.empty());
}

TEST_F(PreReaderTest, EmptyFileReadsReturnZero) {
  ASSERT_NO_FATAL_FAILURE(Open(16));
  PreReader reader(*file_);
  ASSERT_OK_AND_ASSIGN(auto got, Read(reader, 0, 10));
  EXPECT_TRUE(got.empty());
  // ... and then sees what is appended.
  ASSERT_OK(file_->Append(PatternBytes(0, 5)));
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 0, 10));
  EXPECT_EQ(got, PatternBytes(0, 5));
}

TEST_F(PreReaderTest, SeesBytesAppendedAfterItFilledItsBuffer) {
  ASSERT_NO_FATAL_FAILURE(Open(16));
  ASSERT_OK(file_->Append(PatternBytes(0, 10)));
  PreReader reader(*file_);
  ASSERT_OK_AND_ASSIGN(auto got, Read(reader, 0, 5));  // the buffer holds all 10
  EXPECT_EQ(got, PatternBytes(0, 5));
  ASSERT_OK(file_->Append(PatternBytes(10, 30)));
  // Straddling the end of what was cached.
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 5, 10));
  EXPECT_EQ(got, PatternBytes(5, 10));
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 10, 5));
  EXPECT_EQ(got, PatternBytes(10, 5));
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 0, 100));
  EXPECT_EQ(got, PatternBytes(0, 40));
  // A short read at the end, then more appended: the next read sees it.
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 35, 10));
  EXPECT_EQ(got, PatternBytes(35, 5));
  ASSERT_OK(file_->Append(PatternBytes(40, 10)));
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 35, 10));
  EXPECT_EQ(got, PatternBytes(35, 10));
}

TEST_F(PreReaderTest, ReadsLargerThanItsBufferEqualReadAt) {
  ASSERT_NO_FATAL_FAILURE(Open(16));
  ASSERT_OK(file_->Append(PatternBytes(0, 1000)));
  PreReader reader(*file_, 32);
  for (uint64_t offset : {0u, 5u, 500u, 990u}) {
    ASSERT_OK_AND_ASSIGN(auto got, Read(reader, offset, 100));
    EXPECT_EQ(got, PatternBytes(offset, std::min<uint64_t>(100, 1000 - offset))) << "offset " << offset;
  }
}

TEST_F(PreReaderTest, SeesBufferedAppends) {
  ASSERT_NO_FATAL_FAILURE(Open(16, /*write_buffer=*/4096));
  ASSERT_OK(file_->Append(PatternBytes(0, 30)));
  PreReader reader(*file_);
  ASSERT_OK_AND_ASSIGN(auto got, Read(reader, 0, 10));
  EXPECT_EQ(got, PatternBytes(0, 10));
  ASSERT_OK(file_->Append(PatternBytes(30, 30)));
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 20, 40));
  EXPECT_EQ(got, PatternBytes(20, 40));
  ASSERT_OK(file_->Truncate(45));
  ASSERT_OK(file_->Append(SeededBytes(9, 45, 5)));
  ASSERT_OK_AND_ASSIGN(got, Read(reader, 40, 10));
  std::vector<std::byte> want = PatternBytes(40, 5);
  auto tail = SeededBytes(9, 45, 5);
  want.insert(want.end(), tail.begin(), tail.end());
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace hpfile
