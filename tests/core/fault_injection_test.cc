// SPDX-License-Identifier: Apache-2.0
// Every mutating HPFile operation, with each of its backing-store calls failed
// in turn: for N = 1, 2, ... the Nth mutating call fails (ENOSPC, then EIO)
// until the operation runs without reaching an Nth call. After each failure
// the operation must have returned exactly that errno or succeeded, readers
// must see only bytes that were there before (or that the operation wrote, had
// it succeeded), the file must keep working once the fault is gone, and a
// reopen must show the same file.
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/fault_io.h"
#include "core/format.h"
#include "core/hpfile.h"
#include "core/meta.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::NoFlushIo;
using testing::ReadRange;
using testing::SeededBytes;
using testing::TempDir;

// Far more calls than any operation here makes; reaching it means an
// operation that retries forever.
constexpr uint64_t kMaxCalls = 500;

std::string ErrnoName(int err) { return err == ENOSPC ? "ENOSPC" : err == EIO ? "EIO" : std::to_string(err); }

// One HPFile under a FaultIo, and what the test knows it must hold.
class Env {
 public:
  explicit Env(uint64_t segment_size, size_t write_buffer_size = 0) {
    dir_ = tmp_.Sub("file");
    options_.io = &io_;
    options_.initial_meta.segment_size = segment_size;
    options_.write_buffer_size = write_buffer_size;
    options_.max_open_segments = 4;
  }

  FaultIo& io() { return io_; }
  HPFile& file() { return *file_; }
  const std::string& dir() const { return dir_; }
  const Options& options() const { return options_; }
  std::vector<std::byte>& data() { return data_; }
  uint64_t head() const { return head_; }
  uint64_t size() const { return data_.size(); }

  void Open() {
    auto opened = HPFile::Open(dir_, options_);
    ASSERT_TRUE(opened.has_value()) << "Open: " << opened.error().message();
    file_ = std::move(*opened);
  }
  void Close() { file_.reset(); }
  void SetFile(std::unique_ptr<HPFile> file) { file_ = std::move(file); }

  // Fresh bytes for `length` bytes at the end: never equal to what an
  // earlier write put at the same offsets.
  std::vector<std::byte> NextBytes(size_t length) { return SeededBytes(++generation_, size(), length); }

  // Setup steps; they must succeed.
  void Append(size_t length) {
    auto bytes = NextBytes(length);
    auto offset = file_->Append(bytes);
    ASSERT_TRUE(offset.has_value()) << offset.error().message();
    ASSERT_EQ(*offset, size());
    data_.insert(data_.end(), bytes.begin(), bytes.end());
  }
  void PruneHead(uint64_t n) {
    ASSERT_OK(file_->PruneHead(n));
    SetModel(std::min(std::max(head_, n), size()), size());
  }
  void Sync() { ASSERT_OK(file_->Sync()); }

  // The model after a change: head `head`, size `size` (new bytes are zeros).
  void SetModel(uint64_t head, uint64_t size) {
    data_.resize(size);
    head_ = head;
  }

  // The file holds exactly the model: head, size, and every readable byte.
  void ExpectMatchesModel(const std::string& when) {
    SCOPED_TRACE(when);
    ASSERT_TRUE(file_ != nullptr);
    EXPECT_FALSE(file_->Damage().has_value()) << *file_->Damage();
    EXPECT_EQ(file_->Head(), head_);
    ASSERT_EQ(file_->Size(), size());
    EXPECT_LE(file_->DurableSize(), file_->Size());
    ExpectReadable(head_, size());
    if (options_.write_buffer_size == 0) testing::ExpectWellFormed(*file_);
  }

  // [begin, end) reads back as the model holds it.
  void ExpectReadable(uint64_t begin, uint64_t end) {
    auto read = ReadRange(*file_, begin, end - begin);
    ASSERT_TRUE(read.has_value()) << "ReadAt(" << begin << "): " << read.error().message();
    ASSERT_EQ(read->size(), end - begin) << "short read at " << begin;
    auto diff = testing::FirstDifference(*read, std::span(data_).subspan(begin, end - begin));
    EXPECT_FALSE(diff.has_value()) << "byte " << begin + diff.value_or(0) << " differs from the model";
  }

  // Closes and reopens without a fault; the file must come back as it was.
  // The head is made durable only by Sync, so an unsynced prune may come
  // back lower; the bytes in between then read as zeros (punched) or as they
  // were.
  void ExpectReopenMatches(const std::string& when) {
    SCOPED_TRACE(when);
    const Meta meta_before = file_->GetMeta();
    Close();
    ASSERT_EQ(io_.OpenDescriptors(), 0u) << "a closed HPFile left descriptors open";
    Open();
    ASSERT_FALSE(file_->Damage().has_value()) << *file_->Damage();
    EXPECT_EQ(file_->Size(), size()) << "reopening changed the size";
    Meta meta_after = file_->GetMeta();
    meta_after.head = meta_before.head;
    EXPECT_EQ(meta_after, meta_before) << "reopening changed the meta";
    const uint64_t head = file_->Head();
    EXPECT_LE(head, head_) << "reopening moved the head up";
    if (::testing::Test::HasFailure()) return;
    if (head < head_) {
      auto below = ReadRange(*file_, head, head_ - head);
      ASSERT_TRUE(below.has_value()) << below.error().message();
      ASSERT_EQ(below->size(), head_ - head);
      for (uint64_t i = 0; i < below->size(); ++i) {
        EXPECT_TRUE((*below)[i] == std::byte{0} || (*below)[i] == data_[head + i])
            << "byte " << head + i << " below the old head is neither zero nor what it was";
        data_[head + i] = (*below)[i];
      }
      head_ = head;
    }
    ExpectMatchesModel("after reopen");
  }

  // The file takes an append, reads it back, and syncs.
  void ExpectStillWorks(const std::string& when) {
    SCOPED_TRACE(when);
    const uint64_t old_size = size();
    Append(2 * options_.initial_meta.segment_size + 3);
    if (::testing::Test::HasFatalFailure()) return;
    ExpectReadable(std::max(head_, old_size), size());
    ASSERT_OK(file_->Sync());
    EXPECT_EQ(file_->DurableSize(), file_->Size());
    ExpectMatchesModel("after append and sync");
  }

 private:
  TempDir tmp_;
  NoFlushIo disk_;
  FaultIo io_{disk_};
  std::string dir_;
  Options options_;
  std::unique_ptr<HPFile> file_;
  std::vector<std::byte> data_;
  uint64_t head_ = 0;
  uint64_t generation_ = 0;
};

struct Scenario {
  uint64_t segment_size = 8;
  size_t write_buffer_size = 0;
  // Builds the state the operation starts from, without faults.
  std::function<void(Env&)> setup;
  // The operation under test; returns its result.
  std::function<Result<void>(Env&)> op;
  // Called with the operation's outcome (fault healed): checks what the file
  // shows and updates the model to the state accepted.
  std::function<void(Env&, bool ok)> judge;
};

// Runs `scenario` with the 1st, 2nd, ... mutating call failing with `err`,
// until the operation no longer reaches the failing call.
void RunWithEachCallFailing(const Scenario& scenario, int err) {
  for (uint64_t n = 1;; ++n) {
    SCOPED_TRACE("mutating call " + std::to_string(n) + " fails with " + ErrnoName(err));
    Env env(scenario.segment_size, scenario.write_buffer_size);
    env.Open();
    if (::testing::Test::HasFatalFailure()) return;
    scenario.setup(env);
    if (::testing::Test::HasFatalFailure()) return;

    env.io().FailNthCall(n, err, kMutatingIoOps);
    Result<void> result = scenario.op(env);
    const bool fired = env.io().Fired();
    env.io().Heal();

    if (!result) {
      EXPECT_EQ(result.error().value(), err) << "failed with " << result.error().message();
      EXPECT_TRUE(fired) << "failed without a fault: " << result.error().message();
    }
    scenario.judge(env, result.has_value());
    if (::testing::Test::HasFailure()) return;
    env.ExpectMatchesModel("after the operation");
    if (::testing::Test::HasFailure()) return;
    env.ExpectReopenMatches("reopen after the operation");
    if (::testing::Test::HasFailure()) return;
    env.ExpectStillWorks("next operation");
    if (::testing::Test::HasFailure()) return;
    env.ExpectReopenMatches("reopen after the next operation");
    if (::testing::Test::HasFailure()) return;

    if (!fired) break;
    ASSERT_LT(n, kMaxCalls) << "the operation never completes";
  }
}

void RunWithEachCallFailing(const Scenario& scenario) {
  for (int err : {ENOSPC, EIO}) {
    RunWithEachCallFailing(scenario, err);
    if (::testing::Test::HasFailure()) return;
  }
}

// ---- Append ----

// Judges an append of `bytes`: all of it visible on success, none on failure.
Scenario AppendScenario(uint64_t segment_size, size_t existing, size_t length, size_t write_buffer_size = 0) {
  auto bytes = std::make_shared<std::vector<std::byte>>();
  auto old_size = std::make_shared<uint64_t>();
  return Scenario{
      segment_size,
      write_buffer_size,
      [=](Env& env) {
        env.Append(existing);
        *old_size = env.size();
        *bytes = env.NextBytes(length);
      },
      [=](Env& env) -> Result<void> {
        auto offset = env.file().Append(*bytes);
        if (!offset) return std::unexpected(offset.error());
        EXPECT_EQ(*offset, *old_size);
        return {};
      },
      [=](Env& env, bool ok) {
        if (ok) {
          env.data().insert(env.data().end(), bytes->begin(), bytes->end());
        } else {
          EXPECT_EQ(env.file().Size(), *old_size) << "a failed append changed the size";
        }
      },
  };
}

TEST(FaultInjectionTest, AppendWithinOneSegment) { RunWithEachCallFailing(AppendScenario(16, 5, 6)); }

TEST(FaultInjectionTest, AppendIntoNewSegment) { RunWithEachCallFailing(AppendScenario(8, 8, 5)); }

TEST(FaultInjectionTest, AppendAcrossSeveralSegments) { RunWithEachCallFailing(AppendScenario(8, 5, 30)); }

TEST(FaultInjectionTest, AppendLargerThanWriteBuffer) { RunWithEachCallFailing(AppendScenario(8, 5, 30, 16)); }

TEST(FaultInjectionTest, AppendFlushingWriteBuffer) {
  // 12 bytes wait in the buffer; 6 more do not fit, so the 12 are written
  // (across a segment boundary) before the 6 are buffered.
  RunWithEachCallFailing(AppendScenario(8, 12, 6, 16));
}

TEST(FaultInjectionTest, FlushOfWriteBuffer) {
  RunWithEachCallFailing(Scenario{
      8,
      16,
      [](Env& env) {
        env.Append(5);
        env.Append(10);  // in the buffer, spanning two segments
      },
      [](Env& env) { return env.file().Flush(); },
      [](Env& env, bool) {
        // Buffered bytes were acknowledged: flushed or not, they stay visible.
        EXPECT_EQ(env.file().Size(), env.size());
      },
  });
}

// ---- AppendAt with a gap ----

// Zeros up to `gap` bytes past the end, then `length` bytes: on failure
// neither the zeros nor the bytes stay.
Scenario AppendAtGapScenario(uint64_t segment_size, size_t existing, uint64_t gap, size_t length,
                             size_t write_buffer_size = 0) {
  auto bytes = std::make_shared<std::vector<std::byte>>();
  auto old_size = std::make_shared<uint64_t>();
  return Scenario{
      segment_size,
      write_buffer_size,
      [=](Env& env) {
        env.Append(existing);
        *old_size = env.size();
        *bytes = env.NextBytes(length);
      },
      [=](Env& env) -> Result<void> {
        auto offset = env.file().AppendAt(*old_size + gap, *bytes, HPFile::Gap::kFillZeros);
        if (!offset) return std::unexpected(offset.error());
        EXPECT_EQ(*offset, *old_size + gap);
        return {};
      },
      [=](Env& env, bool ok) {
        if (ok) {
          env.data().resize(*old_size + gap, std::byte{0});
          env.data().insert(env.data().end(), bytes->begin(), bytes->end());
        } else {
          EXPECT_EQ(env.file().Size(), *old_size) << "a failed AppendAt changed the size";
        }
      },
  };
}

TEST(FaultInjectionTest, AppendAtGapInTheTail) { RunWithEachCallFailing(AppendAtGapScenario(16, 5, 4, 3)); }

TEST(FaultInjectionTest, AppendAtGapAcrossSegments) { RunWithEachCallFailing(AppendAtGapScenario(8, 5, 30, 12)); }

TEST(FaultInjectionTest, AppendAtWideGap) { RunWithEachCallFailing(AppendAtGapScenario(8, 5, 8 * 40, 5)); }

TEST(FaultInjectionTest, AppendAtGapFlushingWriteBuffer) {
  RunWithEachCallFailing(AppendAtGapScenario(8, 12, 20, 6, 16));
}

// ---- Sync ----

// Sync after writes to several segments, a roll, deletions and a head move.
Scenario SyncScenario() {
  return Scenario{
      8,
      0,
      [](Env& env) {
        env.Append(20);
        env.Sync();
        env.Append(13);
        env.PruneHead(17);
      },
      [](Env& env) { return env.file().Sync(); },
      [](Env& env, bool ok) {
        EXPECT_EQ(env.file().Size(), env.size());
        EXPECT_EQ(env.file().Head(), env.head());
        if (ok) {
          EXPECT_EQ(env.file().DurableSize(), env.file().Size());
        }
      },
  };
}

TEST(FaultInjectionTest, Sync) { RunWithEachCallFailing(SyncScenario()); }

// A Sync that failed anywhere but in a segment's fdatasync keeps what it had
// to do; the next one does all of it.
TEST(FaultInjectionTest, SyncRetriedAfterFailureMakesEverythingDurable) {
  constexpr IoOpMask kAllButFdatasync = kMutatingIoOps & ~static_cast<IoOpMask>(IoOp::kFdatasync);
  for (int err : {ENOSPC, EIO}) {
    for (uint64_t n = 1;; ++n) {
      SCOPED_TRACE("mutating call " + std::to_string(n) + " fails with " + ErrnoName(err));
      Env env(8);
      env.io().TrackDurability(env.dir().substr(0, env.dir().rfind('/')));
      env.Open();
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
      Scenario scenario = SyncScenario();
      scenario.setup(env);
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
      env.io().FailNthCall(n, err, kAllButFdatasync);
      auto first = env.file().Sync();
      const bool fired = env.io().Fired();
      env.io().Heal();
      if (!first) {
        EXPECT_EQ(first.error().value(), err);
      }
      ASSERT_OK(env.file().Sync());
      env.Close();
      ASSERT_OK(env.io().DropUnsyncedData());
      env.Open();
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
      env.ExpectMatchesModel("after power loss");
      ASSERT_FALSE(::testing::Test::HasFailure());
      if (!fired) break;
      ASSERT_LT(n, kMaxCalls);
    }
  }
}

// After a failed fdatasync the kernel may have dropped the pages it could not
// write and forgotten the error, so a retried fdatasync would succeed with the
// data lost: every later Sync must fail, until the file is reopened.
TEST(FaultInjectionTest, SyncAfterFailedFdatasyncFailsUntilReopened) {
  for (int err : {EIO, ENOSPC}) {
    for (uint64_t n = 1;; ++n) {
      SCOPED_TRACE("fdatasync " + std::to_string(n) + " fails with " + ErrnoName(err));
      Env env(8);
      env.Open();
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
      Scenario scenario = SyncScenario();
      scenario.setup(env);
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
      env.io().FailNthCall(n, err, static_cast<IoOpMask>(IoOp::kFdatasync));
      auto first = env.file().Sync();
      const bool fired = env.io().Fired();
      env.io().Heal();
      if (!fired) {
        ASSERT_OK(first);
        EXPECT_FALSE(env.file().SyncFailure().has_value());
        break;
      }
      ASSERT_FALSE(first.has_value());
      EXPECT_EQ(first.error().value(), err);
      const uint64_t durable = env.file().DurableSize();
      ASSERT_TRUE(env.file().SyncFailure().has_value());
      EXPECT_NE(env.file().SyncFailure()->find(".seg"), std::string::npos) << *env.file().SyncFailure();
      for (int retry = 0; retry < 3; ++retry) EXPECT_ERRNO(env.file().Sync(), EIO);
      EXPECT_EQ(env.file().DurableSize(), durable) << "a failed Sync advanced the durable size";
      // Appends and reads go on; only durability is refused.
      env.Append(5);
      env.ExpectMatchesModel("after the failed syncs");
      EXPECT_ERRNO(env.file().Sync(), EIO);
      env.Close();
      env.Open();
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
      EXPECT_FALSE(env.file().SyncFailure().has_value());
      ASSERT_OK(env.file().Sync());
      EXPECT_EQ(env.file().DurableSize(), env.file().Size());
      ASSERT_LT(n, kMaxCalls);
    }
  }
}

// Sync works through the dirty segments in batches (their write-back started
// together); segments of every batch must be durable, not just the first.
TEST(FaultInjectionTest, SyncOfMoreSegmentsThanOneBatchMakesAllDurable) {
  Env env(8);
  env.io().TrackDurability(env.dir().substr(0, env.dir().rfind('/')));
  env.Open();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  env.Append(8 * 150 + 3);  // 151 segments, all dirty
  ASSERT_OK(env.file().Sync());
  EXPECT_EQ(env.file().DurableSize(), env.file().Size());
  env.Close();
  ASSERT_OK(env.io().DropUnsyncedData());
  env.Open();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  env.ExpectMatchesModel("after power loss");
}

// ---- Truncate ----

// Judges Truncate(n) from a file of head h0 and size s0. On failure a shrink
// may have stopped partway: the size may lie anywhere in [n, s0], but every
// byte still readable must be one that was readable before.
Scenario TruncateScenario(std::function<void(Env&)> setup, uint64_t n) {
  auto before = std::make_shared<std::pair<uint64_t, uint64_t>>();
  return Scenario{
      8,
      0,
      [=](Env& env) {
        setup(env);
        *before = {env.head(), env.size()};
      },
      [=](Env& env) { return env.file().Truncate(n); },
      [=](Env& env, bool ok) {
        const auto [h0, s0] = *before;
        if (ok) {
          env.SetModel(n < h0 ? n : h0, n);
          return;
        }
        const uint64_t h = env.file().Head();
        const uint64_t s = env.file().Size();
        if (n >= s0) {
          EXPECT_EQ(s, s0) << "a failed growing truncate changed the size";
          EXPECT_EQ(h, h0);
          return;
        }
        EXPECT_GE(s, n);
        EXPECT_LE(s, s0);
        EXPECT_LE(h, s);
        EXPECT_TRUE(h == s || h == h0) << "after a failed truncate the head is " << h << " and the size " << s
                                       << ": bytes that were below head " << h0 << " became readable";
        env.SetModel(h, s);
      },
  };
}

TEST(FaultInjectionTest, TruncateWithinTailSegment) {
  RunWithEachCallFailing(TruncateScenario([](Env& env) { env.Append(30); }, 27));
}

TEST(FaultInjectionTest, TruncateShrinkAcrossSegments) {
  RunWithEachCallFailing(TruncateScenario([](Env& env) { env.Append(40); }, 13));
}

TEST(FaultInjectionTest, TruncateToSegmentBoundary) {
  RunWithEachCallFailing(TruncateScenario([](Env& env) { env.Append(40); }, 16));
}

TEST(FaultInjectionTest, TruncateBelowHead) {
  RunWithEachCallFailing(TruncateScenario(
      [](Env& env) {
        env.Append(40);
        env.PruneHead(20);
        env.Sync();
      },
      5));
}

TEST(FaultInjectionTest, TruncateGrowAcrossSegments) {
  RunWithEachCallFailing(TruncateScenario([](Env& env) { env.Append(10); }, 35));
}

// A gap of many slots: one wide sparse segment, then an ordinary tail.
TEST(FaultInjectionTest, TruncateGrowAcrossManySlots) {
  RunWithEachCallFailing(TruncateScenario([](Env& env) { env.Append(10); }, 8 * 500 + 3));
}

TEST(FaultInjectionTest, TruncateIntoAGapSegment) {
  RunWithEachCallFailing(TruncateScenario(
      [](Env& env) {
        env.Append(10);
        ASSERT_OK(env.file().Truncate(8 * 500 + 3));
        env.SetModel(env.head(), 8 * 500 + 3);
        env.Append(20);
      },
      8 * 200 + 5));
}

// ---- GrowTo ----

// Judges GrowTo(n): grows as a growing Truncate does, and on failure leaves
// the file as it was; a file already ending at or past n never changes.
Scenario GrowToScenario(std::function<void(Env&)> setup, uint64_t n, size_t write_buffer_size = 0) {
  auto before = std::make_shared<std::pair<uint64_t, uint64_t>>();
  return Scenario{
      8,
      write_buffer_size,
      [=](Env& env) {
        setup(env);
        *before = {env.head(), env.size()};
      },
      [=](Env& env) { return env.file().GrowTo(n); },
      [=](Env& env, bool ok) {
        const auto [h0, s0] = *before;
        EXPECT_EQ(env.file().Head(), h0);
        if (ok) {
          EXPECT_EQ(env.file().Size(), std::max(n, s0));
          env.SetModel(h0, std::max(n, s0));
          return;
        }
        EXPECT_LT(s0, n) << "GrowTo failed on a file already long enough";
        EXPECT_EQ(env.file().Size(), s0) << "a failed GrowTo changed the size";
      },
  };
}

TEST(FaultInjectionTest, GrowToAcrossSegments) {
  RunWithEachCallFailing(GrowToScenario([](Env& env) { env.Append(10); }, 35));
}

TEST(FaultInjectionTest, GrowToAcrossManySlotsWithBufferedBytes) {
  RunWithEachCallFailing(GrowToScenario([](Env& env) { env.Append(10); }, 8 * 500 + 3, /*write_buffer_size=*/16));
}

TEST(FaultInjectionTest, GrowToBelowTheEndChangesNothing) {
  RunWithEachCallFailing(GrowToScenario([](Env& env) { env.Append(30); }, 12));
}

// ---- PruneHead ----

// On failure the head may have moved part of the way, never further, and the
// bytes above it are untouched.
Scenario PruneScenario(size_t length, uint64_t n) {
  auto before = std::make_shared<uint64_t>();
  return Scenario{
      8,
      0,
      [=](Env& env) {
        env.Append(length);
        env.Sync();
        *before = env.head();
      },
      [=](Env& env) { return env.file().PruneHead(n); },
      [=](Env& env, bool ok) {
        const uint64_t target = std::min(std::max(*before, n), env.size());
        const uint64_t h = env.file().Head();
        EXPECT_EQ(env.file().Size(), env.size());
        if (ok) {
          EXPECT_EQ(h, target);
          env.SetModel(h, env.size());
          return;
        }
        EXPECT_GE(h, *before);
        EXPECT_LE(h, target);
        env.SetModel(h, env.size());
        env.ExpectReadable(h, env.size());
        // The head may have moved before a deletion failed; the next prune
        // finishes the job.
        env.PruneHead(n);
      },
  };
}

TEST(FaultInjectionTest, PruneHeadDeletingSegmentsAndPunching) { RunWithEachCallFailing(PruneScenario(40, 21)); }

TEST(FaultInjectionTest, PruneHeadToSegmentBoundary) { RunWithEachCallFailing(PruneScenario(40, 24)); }

TEST(FaultInjectionTest, PruneHeadToEnd) { RunWithEachCallFailing(PruneScenario(40, 40)); }

// ---- Meta changes ----

// The meta the process sees after a failure must be the one a reopen finds
// (checked by ExpectReopenMatches); either the old or the new one.
TEST(FaultInjectionTest, SetSegmentSize) {
  RunWithEachCallFailing(Scenario{
      8,
      0,
      [](Env& env) { env.Append(12); },
      [](Env& env) { return env.file().SetSegmentSize(5); },
      [](Env& env, bool ok) {
        const uint64_t now = env.file().GetMeta().segment_size;
        if (ok) {
          EXPECT_EQ(now, 5u);
        } else {
          EXPECT_TRUE(now == 8 || now == 5) << now;
        }
        // New segments take the segment size in force.
        env.Append(20);
        for (const SegmentInfo& s : env.file().Segments()) {
          if (s.base >= 16) {
            EXPECT_EQ(s.capacity, now) << s.file_name;
          }
        }
      },
  });
}

TEST(FaultInjectionTest, UpdateMeta) {
  RunWithEachCallFailing(Scenario{
      8,
      0,
      [](Env& env) { env.Append(12); },
      [](Env& env) {
        return env.file().UpdateMeta([](Meta& meta) {
          meta.mode = 0600;
          meta.retain_bytes = 100;
          meta.unknown.emplace_back("future_key", "x");
        });
      },
      [](Env& env, bool ok) {
        const Meta meta = env.file().GetMeta();
        const bool is_new = meta.mode == 0600u && meta.retain_bytes == 100u && meta.unknown.size() == 1;
        const bool is_old = !meta.mode && !meta.retain_bytes && meta.unknown.empty();
        if (ok) {
          EXPECT_TRUE(is_new);
        } else {
          EXPECT_TRUE(is_new || is_old) << "a failed UpdateMeta left a mixture";
        }
      },
  });
}

// ---- Open ----

// Opens (recovering) a backing directory built by `build`; on failure a second
// open without faults must succeed. Either way the file must then be what
// `expect` says.
void RunOpenWithEachCallFailing(const std::function<void(const std::string& dir)>& build,
                                const std::function<void(Env&)>& expect, int err) {
  for (uint64_t n = 1;; ++n) {
    SCOPED_TRACE("mutating call " + std::to_string(n) + " fails with " + ErrnoName(err));
    Env env(8);
    build(env.dir());
    if (::testing::Test::HasFatalFailure()) return;
    env.io().FailNthCall(n, err, kMutatingIoOps);
    auto opened = HPFile::Open(env.dir(), env.options());
    const bool fired = env.io().Fired();
    env.io().Heal();
    if (opened) {
      env.SetFile(std::move(*opened));
    } else {
      EXPECT_EQ(opened.error().value(), err) << opened.error().message();
      EXPECT_TRUE(fired);
      ASSERT_EQ(env.io().OpenDescriptors(), 0u) << "a failed Open left descriptors open";
      env.Open();
      if (::testing::Test::HasFatalFailure()) return;
    }
    expect(env);
    env.ExpectMatchesModel("after open");
    if (::testing::Test::HasFailure()) return;
    env.ExpectReopenMatches("reopen");
    if (::testing::Test::HasFailure()) return;
    env.ExpectStillWorks("next operation");
    if (::testing::Test::HasFailure()) return;
    if (!fired) break;
    ASSERT_LT(n, kMaxCalls) << "Open never completes";
  }
}

TEST(FaultInjectionTest, OpenCreatingNewFile) {
  for (int err : {ENOSPC, EIO}) {
    RunOpenWithEachCallFailing([](const std::string&) {}, [](Env&) {}, err);
    if (HasFailure()) return;
  }
}

// What a crash leaves: a temp meta, a segment wholly below the meta's head, a
// short sealed segment followed by another.
void BuildCrashedStore(const std::string& dir) {
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  testing::WriteFileText(dir + "/hpfile.meta", "format=1\nsegment_size=8\nhead=10\n");
  testing::WriteFileText(dir + "/hpfile.meta.tmp", "format=1\nsegment_size=8\nhead=12\n");
  testing::WriteFileBytes(dir + "/" + testing::SegmentFileName(0, 8), testing::PatternBytes(0, 8));
  testing::WriteFileBytes(dir + "/" + testing::SegmentFileName(8, 8), testing::PatternBytes(8, 8));
  testing::WriteFileBytes(dir + "/" + testing::SegmentFileName(16, 8), testing::PatternBytes(16, 5));
  testing::WriteFileBytes(dir + "/" + testing::SegmentFileName(24, 8), testing::PatternBytes(24, 8));
}

TEST(FaultInjectionTest, OpenRecoveringCrashedStore) {
  for (int err : {ENOSPC, EIO}) {
    RunOpenWithEachCallFailing(
        BuildCrashedStore,
        [](Env& env) {
          // Head 10 from the meta; cut after the short segment at 21.
          auto pattern = testing::PatternBytes(0, 21);
          env.data().assign(pattern.begin(), pattern.end());
          env.SetModel(10, 21);
          EXPECT_FALSE(testing::FileExists(env.dir() + "/hpfile.meta.tmp"));
          // The segment below the head is the deleter's, not recovery's.
          EXPECT_EQ(env.file().PrunedSegments().segments, 1u);
          EXPECT_FALSE(testing::FileExists(env.dir() + "/" + testing::SegmentFileName(24, 8)));
        },
        err);
    if (HasFailure()) return;
  }
}

// An unsynced truncate below the head leaves the meta's head beyond the end.
TEST(FaultInjectionTest, OpenRecoveringHeadBeyondEnd) {
  for (int err : {ENOSPC, EIO}) {
    RunOpenWithEachCallFailing(
        [](const std::string& dir) {
          ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
          testing::WriteFileText(dir + "/hpfile.meta", "format=1\nsegment_size=8\nhead=30\n");
          testing::WriteFileBytes(dir + "/" + testing::SegmentFileName(0, 8), testing::PatternBytes(0, 8));
          testing::WriteFileBytes(dir + "/" + testing::SegmentFileName(8, 8), testing::PatternBytes(8, 3));
        },
        [](Env& env) {
          env.SetModel(11, 11);
          EXPECT_EQ(env.file().GetMeta().head, 11u);
        },
        err);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace hpfile
