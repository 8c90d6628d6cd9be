// SPDX-License-Identifier: Apache-2.0
// HPFile::AppendAt with Gap::kFillZeros: zeros from the end up to the offset,
// then the data, in one turn of the writer lock; ESTALE and nothing written
// when the end is past the offset. (Failures midway: fault_injection_test.)
#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/format.h"
#include "core/hpfile.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::OptionsWithSegmentSize;
using testing::ReadRange;
using testing::SeededBytes;
using testing::TempDir;
using Gap = HPFile::Gap;

// [0, existing) as SeededBytes(1, ...), then zeros up to `offset`, then `data`.
std::vector<std::byte> WithGap(size_t existing, uint64_t offset, const std::vector<std::byte>& data) {
  std::vector<std::byte> out = SeededBytes(1, 0, existing);
  out.resize(offset, std::byte{0});
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

class AppendAtTest : public ::testing::TestWithParam<size_t> {
 protected:
  void Open(uint64_t segment_size) {
    auto opened = HPFile::Open(tmp_.Sub("file"), OptionsWithSegmentSize(segment_size, GetParam()));
    ASSERT_TRUE(opened.has_value()) << opened.error().message();
    file_ = std::move(*opened);
  }
  void ExpectHolds(const std::vector<std::byte>& content) {
    ASSERT_EQ(file_->Size(), content.size());
    ASSERT_OK_AND_ASSIGN(auto read, ReadRange(*file_, 0, content.size()));
    EXPECT_TRUE(read == content);
    ASSERT_OK(file_->Flush());
    testing::ExpectWellFormed(*file_);
  }

  TempDir tmp_;
  std::unique_ptr<HPFile> file_;
};

TEST_P(AppendAtTest, FillsTheGapWithZerosThenAppends) {
  Open(16);
  ASSERT_OK(file_->Append(SeededBytes(1, 0, 10)));
  const auto data = SeededBytes(2, 40, 5);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file_->AppendAt(40, data, Gap::kFillZeros));
  EXPECT_EQ(offset, 40u);
  ExpectHolds(WithGap(10, 40, data));
}

TEST_P(AppendAtTest, AtTheEndTheGapModeAppendsAsUsual) {
  Open(16);
  ASSERT_OK(file_->Append(SeededBytes(1, 0, 10)));
  const auto data = SeededBytes(2, 10, 30);
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file_->AppendAt(10, data, Gap::kFillZeros));
  EXPECT_EQ(offset, 10u);
  ExpectHolds(WithGap(10, 10, data));
}

TEST_P(AppendAtTest, AWideGapCostsAFewSegments) {
  Open(16);
  ASSERT_OK(file_->Append(SeededBytes(1, 0, 10)));
  const uint64_t offset = 16 * 1000 + 3;
  const auto data = SeededBytes(2, offset, 20);
  ASSERT_OK(file_->AppendAt(offset, data, Gap::kFillZeros));
  EXPECT_EQ(file_->Size(), offset + 20);
  EXPECT_LE(file_->Segments().size(), 5u);
  ExpectHolds(WithGap(10, offset, data));
}

TEST_P(AppendAtTest, EndPastTheOffsetIsESTALEAndWritesNothing) {
  Open(16);
  ASSERT_OK(file_->Append(SeededBytes(1, 0, 10)));
  for (uint64_t offset : {0u, 5u, 9u}) {
    EXPECT_ERRNO(file_->AppendAt(offset, SeededBytes(3, offset, 4), Gap::kFillZeros), ESTALE);
  }
  // Without the gap mode an end below the offset is stale too.
  EXPECT_ERRNO(file_->AppendAt(20, SeededBytes(3, 20, 4)), ESTALE);
  ExpectHolds(SeededBytes(1, 0, 10));
}

TEST_P(AppendAtTest, EmptyDataWritesNoZeros) {
  Open(16);
  ASSERT_OK(file_->Append(SeededBytes(1, 0, 10)));
  ASSERT_OK_AND_ASSIGN(uint64_t offset, file_->AppendAt(50, {}, Gap::kFillZeros));
  EXPECT_EQ(offset, 50u);
  ExpectHolds(SeededBytes(1, 0, 10));
}

TEST_P(AppendAtTest, PastTheLargestFileSizeIsEFBIGAndWritesNothing) {
  Open(16);
  ASSERT_OK(file_->Append(SeededBytes(1, 0, 10)));
  EXPECT_ERRNO(file_->AppendAt(format::kMaxFileSize - 2, SeededBytes(3, 0, 4), Gap::kFillZeros), EFBIG);
  EXPECT_ERRNO(file_->AppendAt(format::kMaxFileSize + 1, SeededBytes(3, 0, 1), Gap::kFillZeros), EFBIG);
  ExpectHolds(SeededBytes(1, 0, 10));
}

TEST_P(AppendAtTest, OfTwoWritersAtOneOffsetExactlyOneLands) {
  Open(16);
  ASSERT_OK(file_->Append(SeededBytes(1, 0, 10)));
  constexpr int kRounds = 200;
  uint64_t offset = 20;
  for (int round = 0; round < kRounds; ++round, offset += 40) {
    std::atomic<int> landed{0};
    std::atomic<int> stale{0};
    auto writer = [&](uint64_t seed) {
      auto r = file_->AppendAt(offset, SeededBytes(seed, offset, 7), Gap::kFillZeros);
      if (r) {
        ++landed;
      } else if (r.error().value() == ESTALE) {
        ++stale;
      } else {
        ADD_FAILURE() << r.error().message();
      }
    };
    std::thread a(writer, 2);
    std::thread b(writer, 3);
    a.join();
    b.join();
    ASSERT_EQ(landed.load(), 1) << "round " << round;
    ASSERT_EQ(stale.load(), 1) << "round " << round;
    ASSERT_EQ(file_->Size(), offset + 7);
  }
}

INSTANTIATE_TEST_SUITE_P(WriteBuffer, AppendAtTest, ::testing::Values(0, 64),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return info.param == 0 ? std::string("WriteThrough") : std::string("Buffered");
                         });

}  // namespace
}  // namespace hpfile
