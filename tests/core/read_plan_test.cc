// SPDX-License-Identifier: Apache-2.0
// HPFile::PlanRead: zeros below the head, backing extents, buffered bytes and
// the end of file, each planned for one state of the file; and the plan made
// while a prune or a truncate deletes a segment the plan still has to open.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/format.h"
#include "core/hpfile.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::OptionsWithSegmentSize;
using testing::PatternBytes;
using testing::TempDir;

// The bytes a plan stands for, read through its extents with pread.
std::vector<std::byte> Materialize(const ReadPlan& plan) {
  std::vector<std::byte> out(plan.zeros, std::byte{0});
  for (const Extent& extent : plan.extents) {
    std::vector<std::byte> piece(extent.length);
    const ssize_t n = ::pread(extent.fd->get(), piece.data(), piece.size(), static_cast<off_t>(extent.file_offset));
    EXPECT_EQ(n, static_cast<ssize_t>(piece.size()));
    out.insert(out.end(), piece.begin(), piece.end());
  }
  out.insert(out.end(), plan.buffered.begin(), plan.buffered.end());
  return out;
}

// The file's bytes [offset, offset + length) with zeros below `head`.
std::vector<std::byte> Expected(uint64_t head, uint64_t offset, size_t length) {
  std::vector<std::byte> out = PatternBytes(offset, length);
  for (uint64_t i = offset; i < std::min<uint64_t>(head, offset + length); ++i) out[i - offset] = std::byte{0};
  return out;
}

TEST(ReadPlanTest, ZerosBelowTheHeadThenExtentsUpToTheEnd) {
  TempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(tmp.Sub("file"), OptionsWithSegmentSize(64)));
  ASSERT_OK(file->Append(PatternBytes(0, 300)));
  ASSERT_OK(file->PruneHead(100));

  ASSERT_OK_AND_ASSIGN(ReadPlan plan, file->PlanRead(40, 1000));
  EXPECT_EQ(plan.zeros, 60u);
  EXPECT_EQ(plan.eof, 300u);
  EXPECT_EQ(plan.size(), 260u);  // clipped at the end of file
  // [100, 128) in the segment at 64, then [128, 192), [192, 256), [256, 300).
  ASSERT_EQ(plan.extents.size(), 4u);
  EXPECT_EQ(plan.extents[0].file_offset, 36u);
  EXPECT_EQ(plan.extents[0].length, 28u);
  EXPECT_EQ(plan.extents[3].length, 44u);
  EXPECT_TRUE(plan.buffered.empty());
  EXPECT_EQ(Materialize(plan), Expected(100, 40, 260));
}

TEST(ReadPlanTest, WhollyBelowTheHeadIsZerosWithoutError) {
  TempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(tmp.Sub("file"), OptionsWithSegmentSize(64)));
  ASSERT_OK(file->Append(PatternBytes(0, 300)));
  ASSERT_OK(file->PruneHead(200));
  ASSERT_OK_AND_ASSIGN(ReadPlan plan, file->PlanRead(10, 50));
  EXPECT_EQ(plan.zeros, 50u);
  EXPECT_TRUE(plan.extents.empty());
  EXPECT_EQ(plan.size(), 50u);
  // ReadAt keeps its own contract there.
  std::vector<std::byte> buf(50);
  EXPECT_ERRNO(file->ReadAt(10, buf), ENODATA);
}

TEST(ReadPlanTest, AtOrPastTheEndPlansNothingAndSaysWhereTheEndIs) {
  TempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(tmp.Sub("file"), OptionsWithSegmentSize(64)));
  ASSERT_OK(file->Append(PatternBytes(0, 70)));
  for (uint64_t offset : {70u, 71u, 1000u}) {
    ASSERT_OK_AND_ASSIGN(ReadPlan plan, file->PlanRead(offset, 10));
    EXPECT_EQ(plan.size(), 0u) << offset;
    EXPECT_EQ(plan.eof, 70u) << offset;
  }
  ASSERT_OK_AND_ASSIGN(ReadPlan empty, file->PlanRead(5, 0));
  EXPECT_EQ(empty.size(), 0u);
}

TEST(ReadPlanTest, BytesInTheWriteBufferFollowTheExtents) {
  TempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(tmp.Sub("file"), OptionsWithSegmentSize(64, 1024)));
  ASSERT_OK(file->Append(PatternBytes(0, 100)));
  ASSERT_OK(file->Flush());
  ASSERT_OK(file->Append(PatternBytes(100, 30)));  // stays in the buffer
  ASSERT_OK_AND_ASSIGN(ReadPlan plan, file->PlanRead(90, 100));
  EXPECT_EQ(plan.eof, 130u);
  EXPECT_EQ(plan.buffered.size(), 30u);
  EXPECT_EQ(Materialize(plan), PatternBytes(90, 40));
  // MapRange leaves the buffered bytes out, as documented.
  ASSERT_OK_AND_ASSIGN(auto extents, file->MapRange(90, 100));
  ASSERT_EQ(extents.size(), 1u);
  EXPECT_EQ(extents[0].length, 10u);
}

TEST(ReadPlanTest, ExtentsKeepTheirDescriptorsAfterTheSegmentIsPruned) {
  TempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(tmp.Sub("file"), OptionsWithSegmentSize(64)));
  ASSERT_OK(file->Append(PatternBytes(0, 200)));
  ASSERT_OK_AND_ASSIGN(ReadPlan plan, file->PlanRead(0, 64));
  ASSERT_OK(file->PruneHead(128));
  ASSERT_OK(file->CloseDescriptors());
  EXPECT_EQ(Materialize(plan), PatternBytes(0, 64));
}

// Holds the first read-only Open of a segment file until the test lets it
// go: the moment between the plan's turn of the lock and the descriptor it
// opens outside the lock.
class GatedOpenIo final : public testing::ForwardingIo {
 public:
  void Arm() {
    std::lock_guard lock(mu_);
    armed_ = true;
  }
  bool WaitUntilEntered() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return entered_; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  Result<int> Open(const std::string& path, int flags, mode_t mode) override {
    if ((flags & O_ACCMODE) == O_RDONLY && path.ends_with(format::kSegmentSuffix)) {
      std::unique_lock lock(mu_);
      if (armed_) {
        armed_ = false;
        entered_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return released_; });
      }
    }
    return ForwardingIo::Open(path, flags, mode);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool entered_ = false;
  bool released_ = false;
};

class ReadPlanRaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Options options = OptionsWithSegmentSize(64);
    options.io = &io_;
    auto opened = HPFile::Open(tmp_.Sub("file"), options);
    ASSERT_TRUE(opened.has_value()) << opened.error().message();
    file_ = std::move(*opened);
    ASSERT_OK(file_->Append(PatternBytes(0, 256)));
    // Nothing cached: the plan has to open every segment it maps.
    ASSERT_OK(file_->CloseDescriptors());
  }

  // Plans [offset, offset + length) on another thread, runs `change` while
  // the plan waits to open its first segment, then lets the plan finish.
  Result<ReadPlan> PlanAround(uint64_t offset, size_t length, const std::function<void()>& change) {
    io_.Arm();
    Result<ReadPlan> plan = Errno(EINVAL);
    std::thread planner([&] { plan = file_->PlanRead(offset, length); });
    const bool entered = io_.WaitUntilEntered();
    EXPECT_TRUE(entered) << "the plan never opened a segment";
    if (entered) change();
    io_.Release();
    planner.join();
    return plan;
  }

  TempDir tmp_;
  GatedOpenIo io_;
  std::unique_ptr<HPFile> file_;
};

TEST_F(ReadPlanRaceTest, PruneDeletingAPlannedSegmentTurnsItIntoZeros) {
  auto plan = PlanAround(10, 200, [&] {
    EXPECT_OK(file_->PruneHead(128));
    testing::DeleteAllPruned(*file_);
  });
  ASSERT_TRUE(plan.has_value()) << "a plan racing a prune failed: " << plan.error().message();
  // Either state is consistent: before the prune (the bytes) or after it
  // (zeros up to the new head, the bytes above it).
  const std::vector<std::byte> got = Materialize(*plan);
  ASSERT_EQ(got.size(), 200u);
  EXPECT_TRUE(got == Expected(128, 10, 200) || got == PatternBytes(10, 200));
  EXPECT_GE(plan->zeros, 118u) << "the deleted segments were planned as extents";
}

TEST_F(ReadPlanRaceTest, TruncateDeletingAPlannedSegmentEndsThePlanThere) {
  auto plan = PlanAround(70, 150, [&] { EXPECT_OK(file_->Truncate(50)); });
  ASSERT_TRUE(plan.has_value()) << "a plan racing a truncate failed: " << plan.error().message();
  EXPECT_EQ(plan->size(), 0u);
  EXPECT_LE(plan->eof, 70u);
}

TEST_F(ReadPlanRaceTest, PlansRacingPrunesAlwaysSucceed) {
  // Unsynchronised: prunes of one segment at a time while plans run over
  // the head; every plan is whole and reads as zeros below some head and
  // the pattern above it.
  ASSERT_OK(file_->Append(PatternBytes(256, 64 * 60)));
  const uint64_t size = file_->Size();
  std::atomic<bool> done{false};
  std::thread pruner([&] {
    for (uint64_t head = 64; head + 64 < size; head += 64) {
      EXPECT_OK(file_->PruneHead(head));
      EXPECT_OK(file_->CloseDescriptors());
    }
    done = true;
  });
  int plans = 0;
  while (!done.load() || plans == 0) {
    const uint64_t offset = file_->Head();
    auto plan = file_->PlanRead(offset, 300);
    ASSERT_TRUE(plan.has_value()) << plan.error().message();
    ASSERT_EQ(plan->size(), std::min<uint64_t>(300, size - offset));
    const std::vector<std::byte> got = Materialize(*plan);
    EXPECT_EQ(got, Expected(offset + plan->zeros, offset, got.size()));
    ++plans;
  }
  pruner.join();
}

}  // namespace
}  // namespace hpfile
