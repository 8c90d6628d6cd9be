// SPDX-License-Identifier: Apache-2.0
// The write-back mode's WRITE handling (Filesystem::WriteBack): re-sent page
// prefixes, requests out of order, and writes that would change stored bytes.
#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fs/filesystem.h"
#include "fs/writeback.h"
#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

using testing::Bytes;
using testing::Materialize;
using testing::TempDir;

// What a WriteDone saw.
struct Outcome {
  bool called = false;
  std::optional<size_t> written;
  int error = 0;
  WriteDone Recorder() {
    return [this](Result<size_t> r) {
      EXPECT_FALSE(called) << "WriteDone called twice";
      called = true;
      if (r) {
        written = *r;
      } else {
        error = r.error().value();
      }
    };
  }
};

class WritebackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.segment_size = 4096;
    config_.writeback = true;
    Open();
  }

  void Open() {
    // The handle holds the file's HPFile, which owns its directory.
    if (handle_) fs_->Release(std::move(handle_));
    fs_.reset();
    auto fs = Filesystem::Open(dir_.path(), config_);
    ASSERT_TRUE(fs) << fs.error().message();
    fs_ = std::move(*fs);
    auto created = fs_->Create(kRootInode, "log", 0644, O_WRONLY | O_CREAT | O_APPEND, Caller{});
    ASSERT_TRUE(created) << created.error().message();
    handle_ = std::move(created->second);
  }

  // A WRITE from the page cache; returns what its WriteDone got (so far).
  Outcome* CachedWrite(uint64_t offset, const std::string& data) {
    outcomes_.push_back(std::make_unique<Outcome>());
    Outcome* outcome = outcomes_.back().get();
    fs_->WriteBack(*handle_, offset, Bytes(data), /*cached=*/true, Caller{}, outcome->Recorder());
    return outcome;
  }

  std::string Content() {
    auto plan = fs_->Read(*handle_, 0, 1 << 20);
    EXPECT_TRUE(plan) << plan.error().message();
    return plan ? Materialize(*plan) : "";
  }

  uint64_t HeldOfFile() {
    auto st = fs_->IoctlStat(*handle_);
    EXPECT_TRUE(st);
    EXPECT_NE(st->flags & HPFS_STAT_WRITEBACK, 0u);
    return st->held_bytes;
  }

  void TearDown() override {
    if (handle_) fs_->Release(std::move(handle_));
  }

  size_t TrashEntries() {
    size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path() + "/.hpfs-trash")) {
      (void)entry;
      ++n;
    }
    return n;
  }

  TempDir dir_;
  Config config_;
  std::unique_ptr<Filesystem> fs_;
  std::unique_ptr<FileHandle> handle_;
  std::vector<std::unique_ptr<Outcome>> outcomes_;
};

TEST(SplitAtEndTest, SaysWhatToCompareAndWhatToAppend) {
  const WritebackSplit below = SplitAtEnd(0, 10, 20);
  EXPECT_EQ(below.compare_length, 10u);
  EXPECT_EQ(below.append_from, 10u);
  const WritebackSplit across = SplitAtEnd(15, 10, 20);
  EXPECT_EQ(across.compare_length, 5u);
  EXPECT_EQ(across.append_from, 5u);
  const WritebackSplit at = SplitAtEnd(20, 10, 20);
  EXPECT_EQ(at.compare_length, 0u);
  EXPECT_EQ(at.append_from, 0u);
  EXPECT_FALSE(at.starts_past_end);
  EXPECT_TRUE(SplitAtEnd(21, 10, 20).starts_past_end);
}

TEST_F(WritebackTest, ResentPrefixIsComparedAndOnlyTheNewTailAppended) {
  Outcome* first = CachedWrite(0, "line one\n");
  ASSERT_TRUE(first->called);
  EXPECT_EQ(first->written, 9u);
  // The kernel sends the page again from its start, with the next line.
  Outcome* again = CachedWrite(0, "line one\nline two\n");
  ASSERT_TRUE(again->called);
  EXPECT_EQ(again->written, 18u);
  EXPECT_EQ(Content(), "line one\nline two\n");
  // A page sent once more with nothing new changes nothing.
  Outcome* same = CachedWrite(0, "line one\nline two\n");
  EXPECT_EQ(same->written, 18u);
  EXPECT_EQ(Content(), "line one\nline two\n");
}

TEST_F(WritebackTest, ChangedPrefixIsRefusedWithEPERMAndNothingWritten) {
  ASSERT_EQ(CachedWrite(0, "stored bytes\n")->written, 13u);
  Outcome* changed = CachedWrite(0, "STORED bytes\nand a tail\n");
  ASSERT_TRUE(changed->called);
  EXPECT_EQ(changed->error, EPERM);
  EXPECT_EQ(Content(), "stored bytes\n");
  // Wholly below the end and different: refused too.
  EXPECT_EQ(CachedWrite(7, "BYTES")->error, EPERM);
  EXPECT_EQ(Content(), "stored bytes\n");
  // The file goes on growing from the stored end.
  EXPECT_EQ(CachedWrite(13, "next\n")->written, 5u);
  EXPECT_EQ(Content(), "stored bytes\nnext\n");
}

TEST_F(WritebackTest, WriteBeyondTheEndIsHeldUntilTheGapFillsNeverZeroFilled) {
  ASSERT_EQ(CachedWrite(0, "aaaa")->written, 4u);
  // Two later pages overtake the one in front of them.
  Outcome* third = CachedWrite(12, "cccc");
  Outcome* second = CachedWrite(8, "bbbb");
  // Answered at once (the kernel may be waiting for that answer before it
  // sends the page in front), but not stored.
  EXPECT_EQ(third->written, 4u);
  EXPECT_EQ(second->written, 4u);
  EXPECT_EQ(Content(), "aaaa");
  EXPECT_EQ(fs_->HeldWriteBytes(), 8u);
  EXPECT_EQ(HeldOfFile(), 8u);
  // The missing one comes (re-sending the stored prefix): all land in order.
  Outcome* first = CachedWrite(0, "aaaaAAAA");
  EXPECT_EQ(first->written, 8u);
  EXPECT_EQ(second->written, 4u);
  EXPECT_EQ(third->written, 4u);
  EXPECT_EQ(Content(), "aaaaAAAAbbbbcccc");
  EXPECT_EQ(fs_->HeldWriteBytes(), 0u);
  EXPECT_EQ(HeldOfFile(), 0u);
}

TEST_F(WritebackTest, HeldWriteOverlappingTheFilledEndIsComparedToo) {
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  Outcome* late = CachedWrite(6, "67XY");
  EXPECT_EQ(late->written, 4u);
  EXPECT_EQ(Content(), "0123");
  // The gap filler brings 4..8; the held write re-sends 6..8 with different bytes.
  EXPECT_EQ(CachedWrite(4, "4567")->written, 4u);
  EXPECT_EQ(Content(), "01234567XY");

  Outcome* wrong = CachedWrite(12, "zz");
  EXPECT_EQ(CachedWrite(10, "ab")->written, 2u);
  EXPECT_EQ(wrong->written, 2u);
  Outcome* changes = CachedWrite(16, "QQ");
  EXPECT_EQ(CachedWrite(14, "cd")->written, 2u);
  EXPECT_EQ(changes->written, 2u);
  Outcome* conflicting = CachedWrite(20, "RR");
  EXPECT_EQ(CachedWrite(18, "efR")->written, 3u);
  // Held 20..22 "RR" meets stored byte 20 'R': equal, and 21 is new.
  EXPECT_EQ(conflicting->written, 2u);
  EXPECT_EQ(Content(), "01234567XYabzzcdQQefRR");
}

TEST_F(WritebackTest, HeldWriteThatWouldChangeTheFilledBytesFailsTheNextFsyncAndClose) {
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  ASSERT_TRUE(fs_->Fsync(*handle_));
  Outcome* late = CachedWrite(6, "xx89");
  EXPECT_EQ(late->written, 4u) << "answered when held";
  EXPECT_EQ(CachedWrite(4, "4567")->written, 4u);
  // Nothing before the refused bytes is lost, and none of them is written.
  EXPECT_EQ(Content(), "01234567");
  EXPECT_EQ(fs_->HeldWriteBytes(), 0u);
  auto synced = fs_->Fsync(*handle_);
  ASSERT_FALSE(synced);
  EXPECT_EQ(synced.error().value(), EPERM);
  auto flushed = fs_->Flush(*handle_);
  ASSERT_FALSE(flushed);
  EXPECT_EQ(flushed.error().value(), EPERM);
  // Sticky, like a failed fdatasync.
  EXPECT_FALSE(fs_->Fsync(*handle_));
}

TEST_F(WritebackTest, PageSentAgainWhileHeldGrowsTheHeldBytes) {
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89")->written, 2u);
  // More appends dirtied the answered page and it came again, longer.
  EXPECT_EQ(CachedWrite(8, "89ab")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89")->written, 2u);
  EXPECT_EQ(fs_->HeldWriteBytes(), 4u);
  EXPECT_EQ(CachedWrite(8, "8Xab")->error, EPERM);
  EXPECT_EQ(CachedWrite(4, "4567")->written, 4u);
  EXPECT_EQ(Content(), "0123456789ab");
  EXPECT_TRUE(fs_->Fsync(*handle_));
}

TEST_F(WritebackTest, FsyncGivesUpHeldBytesWhoseGapNeverFills) {
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89")->written, 2u);
  // The kernel sent all it had before the fsync: 4..8 will not come.
  auto synced = fs_->Fsync(*handle_);
  ASSERT_FALSE(synced);
  EXPECT_EQ(synced.error().value(), EIO);
  EXPECT_EQ(fs_->HeldWriteBytes(), 0u);
  EXPECT_EQ(Content(), "0123") << "never zeros in front of held bytes";
  EXPECT_FALSE(fs_->Flush(*handle_));
}

TEST_F(WritebackTest, FsyncWaitsForTheGapInFrontOfHeldBytes) {
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89")->written, 2u);
  std::thread filler([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(CachedWrite(4, "4567")->written, 4u);
  });
  auto synced = fs_->Fsync(*handle_);
  filler.join();
  EXPECT_TRUE(synced) << synced.error().message();
  EXPECT_EQ(Content(), "0123456789");
}

// -o gap_wait: a slow writer on a loaded machine may need longer than the
// default 2 s.
TEST_F(WritebackTest, FsyncWaitsForTheGapAsLongAsGapWaitSays) {
  config_.gap_wait_seconds = 6;
  Open();
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89")->written, 2u);
  std::thread filler([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));
    EXPECT_EQ(CachedWrite(4, "4567")->written, 4u);
  });
  auto synced = fs_->Fsync(*handle_);
  filler.join();
  EXPECT_TRUE(synced) << synced.error().message();
  EXPECT_EQ(Content(), "0123456789");
}

TEST_F(WritebackTest, FsyncGivesUpAfterGapWait) {
  config_.gap_wait_seconds = 1;
  Open();
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89")->written, 2u);
  const auto start = std::chrono::steady_clock::now();
  auto synced = fs_->Fsync(*handle_);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  ASSERT_FALSE(synced);
  EXPECT_EQ(synced.error().value(), EIO);
  EXPECT_EQ(Content(), "0123");
}

TEST_F(WritebackTest, TruncateDropsHeldBytesPastTheNewSize) {
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89ab")->written, 4u);
  EXPECT_EQ(CachedWrite(16, "gh")->written, 2u);
  AttrChange change;
  change.size = 10;
  ASSERT_TRUE(fs_->SetAttr(handle_->inode->id, change, handle_.get()));
  EXPECT_EQ(fs_->HeldWriteBytes(), 2u);
  EXPECT_EQ(CachedWrite(4, "4567")->written, 4u);
  EXPECT_EQ(Content(), "0123456789");
  EXPECT_TRUE(fs_->Fsync(*handle_));
}

TEST_F(WritebackTest, HeldBytesPastTheMemoryBoundGoToTheSpoolAndLandInOrder) {
  config_.reorder_bound = 8;
  Open();
  ASSERT_EQ(CachedWrite(0, "a")->written, 1u);
  EXPECT_EQ(CachedWrite(4, "eeee")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "iiii")->written, 4u);
  EXPECT_EQ(fs_->SpooledWriteBytes(), 0u);
  // Past the memory: answered at once all the same, the bytes on disk.
  EXPECT_EQ(CachedWrite(12, "mmmm")->written, 4u);
  EXPECT_EQ(CachedWrite(20, "uu")->written, 2u);
  EXPECT_EQ(fs_->SpooledWriteBytes(), 6u);
  EXPECT_EQ(fs_->HeldWriteBytes(), 14u);
  auto st = fs_->IoctlStat(*handle_);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->held_bytes, 14u);
  EXPECT_EQ(st->spooled_bytes, 6u);
  EXPECT_EQ(st->spool_overflows, 0u);
  EXPECT_EQ(TrashEntries(), 0u) << "the spool file has no name";
  EXPECT_EQ(CachedWrite(1, "bcd")->written, 3u);
  EXPECT_EQ(Content(), "abcdeeeeiiiimmmm");
  EXPECT_EQ(fs_->SpooledWriteBytes(), 2u);
  EXPECT_EQ(CachedWrite(16, "qrst")->written, 4u);
  EXPECT_EQ(Content(), "abcdeeeeiiiimmmmqrstuu");
  EXPECT_EQ(fs_->HeldWriteBytes(), 0u);
  EXPECT_EQ(fs_->SpooledWriteBytes(), 0u);
  EXPECT_TRUE(fs_->Fsync(*handle_));
}

TEST_F(WritebackTest, SpooledPageSentAgainIsComparedAndGrows) {
  config_.reorder_bound = 0;
  Open();
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89")->written, 2u);
  EXPECT_EQ(CachedWrite(8, "89ab")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89")->written, 2u);
  EXPECT_EQ(fs_->SpooledWriteBytes(), 4u);
  EXPECT_EQ(CachedWrite(8, "8Xab")->error, EPERM);
  EXPECT_EQ(CachedWrite(4, "4567")->written, 4u);
  EXPECT_EQ(Content(), "0123456789ab");
  EXPECT_EQ(fs_->SpooledWriteBytes(), 0u);
  EXPECT_TRUE(fs_->Fsync(*handle_));
}

TEST_F(WritebackTest, TruncateCutsSpooledBytes) {
  config_.reorder_bound = 0;
  Open();
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89ab")->written, 4u);
  EXPECT_EQ(CachedWrite(16, "gh")->written, 2u);
  AttrChange change;
  change.size = 10;
  ASSERT_TRUE(fs_->SetAttr(handle_->inode->id, change, handle_.get()));
  EXPECT_EQ(fs_->SpooledWriteBytes(), 2u);
  EXPECT_EQ(CachedWrite(4, "4567")->written, 4u);
  EXPECT_EQ(Content(), "0123456789");
  EXPECT_EQ(fs_->SpooledWriteBytes(), 0u);
  EXPECT_TRUE(fs_->Fsync(*handle_));
}

TEST_F(WritebackTest, SpoolAtItsBoundFailsTheWriteAndEveryFsyncWithENOSPC) {
  config_.reorder_bound = 4;
  config_.spool_bound = 4;
  Open();
  ASSERT_EQ(CachedWrite(0, "a")->written, 1u);
  EXPECT_EQ(CachedWrite(4, "eeee")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "iiii")->written, 4u);
  Outcome* over = CachedWrite(12, "m");
  ASSERT_TRUE(over->called);
  EXPECT_EQ(over->error, ENOSPC);
  EXPECT_EQ(fs_->HeldWriteBytes(), 8u);
  auto st = fs_->IoctlStat(*handle_);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->spool_overflows, 1u);
  // Nothing in front of the refused bytes is lost.
  EXPECT_EQ(CachedWrite(1, "bcd")->written, 3u);
  EXPECT_EQ(Content(), "abcdeeeeiiii");
  auto synced = fs_->Fsync(*handle_);
  ASSERT_FALSE(synced);
  EXPECT_EQ(synced.error().value(), ENOSPC);
  EXPECT_EQ(fs_->Flush(*handle_).error().value(), ENOSPC);
}

TEST_F(WritebackTest, DirectWritePastAFullSpoolFailsAloneAndTheAppendersLoseNothing) {
  config_.reorder_bound = 0;
  config_.spool_bound = 0;
  Open();
  auto direct = fs_->OpenFile(handle_->inode->id, O_WRONLY);
  ASSERT_TRUE(direct);
  ASSERT_EQ(CachedWrite(0, "ab")->written, 2u);
  Outcome refused;
  fs_->WriteBack(**direct, 8, Bytes("ij"), /*cached=*/false, Caller{}, refused.Recorder());
  ASSERT_TRUE(refused.called);
  EXPECT_EQ(refused.error, ENOSPC);
  EXPECT_EQ(CachedWrite(0, "abcd")->written, 4u);
  EXPECT_EQ(Content(), "abcd");
  EXPECT_TRUE(fs_->Fsync(*handle_)) << "the direct writer's error is its own";
  fs_->Release(std::move(*direct));
}

// The kernel's write-back passes send a file's pages in any order, more of
// them than the memory holds: every request is answered in full at once,
// and the file is the stream.
TEST_F(WritebackTest, PagesInAnyOrderPastTheMemoryBoundEndAsTheStream) {
  constexpr uint64_t kPage = 4096;
  config_.reorder_bound = 3 * kPage;
  Open();
  std::mt19937_64 rng(11);
  std::string stream;
  for (int i = 0; i < 200; ++i) stream += std::string(kPage, static_cast<char>('a' + rng() % 26));
  std::vector<std::pair<uint64_t, std::string>> requests;
  for (uint64_t start = 0; start < stream.size(); start += kPage) {
    requests.emplace_back(start, stream.substr(start, kPage));
  }
  std::shuffle(requests.begin(), requests.end(), rng);
  uint64_t most_spooled = 0;
  for (const auto& [offset, data] : requests) {
    Outcome* outcome = CachedWrite(offset, data);
    ASSERT_TRUE(outcome->called);
    ASSERT_EQ(outcome->written, data.size()) << "error " << outcome->error;
    most_spooled = std::max(most_spooled, fs_->SpooledWriteBytes());
  }
  EXPECT_GT(most_spooled, 100 * kPage);
  EXPECT_EQ(fs_->HeldWriteBytes(), 0u);
  auto plan = fs_->Read(*handle_, 0, stream.size() + 1);
  ASSERT_TRUE(plan);
  EXPECT_TRUE(Materialize(*plan) == stream) << "the file is not the stream";
  EXPECT_TRUE(fs_->Fsync(*handle_));
}

TEST_F(WritebackTest, HeldWritesFailWhenTheWriteInFrontOfThemFails) {
  ASSERT_EQ(CachedWrite(0, "0123")->written, 4u);
  EXPECT_EQ(CachedWrite(8, "89")->written, 2u);
  // The gap filler changes a stored byte: refused, and with it the bytes it
  // was bringing, which the held write waits for: lost, and said so.
  Outcome* filler = CachedWrite(2, "X34567");
  EXPECT_EQ(filler->error, EPERM);
  EXPECT_EQ(fs_->HeldWriteBytes(), 0u);
  EXPECT_EQ(Content(), "0123");
  EXPECT_EQ(fs_->Fsync(*handle_).error().value(), EPERM);
  // Later writes past the end fail at once rather than wait for ever...
  EXPECT_EQ(CachedWrite(10, "ab")->error, EPERM);
  // ...until a truncate brings the kernel's size and the stored one together.
  AttrChange change;
  change.size = 4;
  ASSERT_TRUE(fs_->SetAttr(handle_->inode->id, change, handle_.get()));
  EXPECT_EQ(CachedWrite(6, "67")->written, 2u);
  EXPECT_EQ(Content(), "0123");
  EXPECT_EQ(CachedWrite(4, "45")->written, 2u);
  EXPECT_EQ(Content(), "01234567");
}

TEST_F(WritebackTest, FailHeldWritesAnswersDirectOnesAndFailsTheFsyncOfCachedOnes) {
  auto direct = fs_->OpenFile(handle_->inode->id, O_WRONLY);
  ASSERT_TRUE(direct);
  ASSERT_EQ(CachedWrite(0, "0")->written, 1u);
  EXPECT_EQ(CachedWrite(4, "4")->written, 1u);
  Outcome held_direct;
  fs_->WriteBack(**direct, 8, Bytes("8"), /*cached=*/false, Caller{}, held_direct.Recorder());
  EXPECT_FALSE(held_direct.called);
  fs_->FailHeldWrites(std::make_error_code(std::errc::io_error));
  ASSERT_TRUE(held_direct.called);
  EXPECT_EQ(held_direct.error, EIO);
  EXPECT_EQ(fs_->HeldWriteBytes(), 0u);
  EXPECT_EQ(Content(), "0");
  EXPECT_EQ(fs_->Fsync(*handle_).error().value(), EIO);
  fs_->Release(std::move(*direct));
}

TEST_F(WritebackTest, DirectWriteBelowTheEndIsRefusedAtTheEndAppended) {
  auto direct = fs_->OpenFile(handle_->inode->id, O_WRONLY);
  ASSERT_TRUE(direct);
  ASSERT_EQ(CachedWrite(0, "abc")->written, 3u);
  Outcome below;
  fs_->WriteBack(**direct, 1, Bytes("X"), /*cached=*/false, Caller{}, below.Recorder());
  EXPECT_EQ(below.error, EPERM);
  Outcome at_end;
  fs_->WriteBack(**direct, 3, Bytes("d"), /*cached=*/false, Caller{}, at_end.Recorder());
  EXPECT_EQ(at_end.written, 1u);
  EXPECT_EQ(Content(), "abcd");
  fs_->Release(std::move(*direct));
}

TEST_F(WritebackTest, DirectWritePastTheEndWaitsForCachedBytesThenForACommit) {
  auto direct = fs_->OpenFile(handle_->inode->id, O_WRONLY);
  ASSERT_TRUE(direct);
  ASSERT_EQ(CachedWrite(0, "ab")->written, 2u);
  Outcome after_cached;
  fs_->WriteBack(**direct, 4, Bytes("ef"), /*cached=*/false, Caller{}, after_cached.Recorder());
  EXPECT_FALSE(after_cached.called);
  // The cached bytes in front of it arrive: it lands behind them.
  EXPECT_EQ(CachedWrite(0, "abcd")->written, 4u);
  EXPECT_EQ(after_cached.written, 2u);
  EXPECT_EQ(Content(), "abcdef");

  // Nothing comes for this one's gap: a commit that began after it was held
  // shows that none will, and the gap reads as zeros, as in the default mode.
  Outcome sparse;
  fs_->WriteBack(**direct, 8, Bytes("ij"), /*cached=*/false, Caller{}, sparse.Recorder());
  const uint64_t before = fs_->BeginCommit() - 1;
  EXPECT_TRUE(fs_->FinishCommit(before)) << "still held";
  EXPECT_FALSE(sparse.called) << "a commit that began before the write proves nothing";
  const uint64_t commit = fs_->BeginCommit();
  EXPECT_FALSE(fs_->FinishCommit(commit));
  EXPECT_EQ(sparse.written, 2u);
  EXPECT_EQ(Content(), std::string("abcdef\0\0ij", 10));
  fs_->Release(std::move(*direct));
}

// A direct write at the offset the writer saw as the end, while an appender
// got there first: the appender's pages reach past it. The direct write lost
// the race and fails; the appender's bytes still land and the file takes
// later appends (a direct refusal breaks nothing).
TEST_F(WritebackTest, HeldDirectWriteThatCachedBytesReachFailsWithEPERMAndBreaksNothing) {
  auto direct = fs_->OpenFile(handle_->inode->id, O_WRONLY);
  ASSERT_TRUE(direct);
  ASSERT_EQ(CachedWrite(0, "ab")->written, 2u);
  Outcome lost;
  fs_->WriteBack(**direct, 4, Bytes("XYZ"), /*cached=*/false, Caller{}, lost.Recorder());
  EXPECT_FALSE(lost.called);
  EXPECT_EQ(CachedWrite(0, "abcdef")->written, 6u);
  ASSERT_TRUE(lost.called);
  EXPECT_EQ(lost.error, EPERM);
  // Later pages still wait for their gap rather than fail.
  EXPECT_EQ(CachedWrite(8, "i")->written, 1u);
  EXPECT_EQ(CachedWrite(6, "gh")->written, 2u);
  EXPECT_EQ(Content(), "abcdefghi");
  EXPECT_EQ(fs_->HeldWriteBytes(), 0u);
  EXPECT_TRUE(fs_->Fsync(*handle_));
  fs_->Release(std::move(*direct));
}

// The kernel writes back the dirty pages a direct write covers before it
// sends it: held cached bytes in its range were the kernel's end first.
TEST_F(WritebackTest, DirectWriteOverHeldCachedBytesFailsWithEPERMAtOnce) {
  auto direct = fs_->OpenFile(handle_->inode->id, O_WRONLY);
  ASSERT_TRUE(direct);
  ASSERT_EQ(CachedWrite(0, "ab")->written, 2u);
  EXPECT_EQ(CachedWrite(4, "ef")->written, 2u);
  for (const uint64_t at : {4u, 3u, 5u}) {
    Outcome refused;
    fs_->WriteBack(**direct, at, Bytes("XY"), /*cached=*/false, Caller{}, refused.Recorder());
    ASSERT_TRUE(refused.called) << "at " << at;
    EXPECT_EQ(refused.error, EPERM) << "at " << at;
  }
  EXPECT_EQ(CachedWrite(0, "abcd")->written, 4u);
  EXPECT_EQ(Content(), "abcdef");
  EXPECT_EQ(fs_->HeldWriteBytes(), 0u);
  EXPECT_TRUE(fs_->Fsync(*handle_));
  fs_->Release(std::move(*direct));
}

// Cached bytes arriving where a direct write waits: the cached ones are in
// the kernel's size, the direct one gives way.
TEST_F(WritebackTest, CachedBytesOverAHeldDirectWriteReplaceItAndItFailsWithEPERM) {
  auto direct = fs_->OpenFile(handle_->inode->id, O_WRONLY);
  ASSERT_TRUE(direct);
  ASSERT_EQ(CachedWrite(0, "ab")->written, 2u);
  Outcome lost;
  fs_->WriteBack(**direct, 4, Bytes("XY"), /*cached=*/false, Caller{}, lost.Recorder());
  EXPECT_FALSE(lost.called);
  EXPECT_EQ(CachedWrite(4, "ef")->written, 2u);
  ASSERT_TRUE(lost.called);
  EXPECT_EQ(lost.error, EPERM);
  EXPECT_EQ(CachedWrite(2, "cd")->written, 2u);
  EXPECT_EQ(Content(), "abcdef");
  EXPECT_EQ(fs_->HeldWriteBytes(), 0u);
  EXPECT_TRUE(fs_->Fsync(*handle_));
  fs_->Release(std::move(*direct));
}

TEST_F(WritebackTest, CommitNeverZeroFillsInFrontOfACachedWrite) {
  ASSERT_EQ(CachedWrite(0, "ab")->written, 2u);
  EXPECT_EQ(CachedWrite(8, "ij")->written, 2u);
  const uint64_t commit = fs_->BeginCommit();
  EXPECT_FALSE(fs_->FinishCommit(commit));
  EXPECT_EQ(Content(), "ab");
  EXPECT_EQ(fs_->HeldWriteBytes(), 2u);
  fs_->FailHeldWrites(std::make_error_code(std::errc::io_error));
}

TEST_F(WritebackTest, TruncateAboveTheEndWaitsForTheKernelsBytesBelowIt) {
  ASSERT_EQ(CachedWrite(0, "ab")->written, 2u);
  // The kernel answers the truncate first, then sends its dirty bytes below
  // the new size: zeros stored at once would refuse them.
  AttrChange change;
  change.size = 10;
  auto st = fs_->SetAttr(handle_->inode->id, change, handle_.get());
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(st->st_size, 10);
  EXPECT_EQ(CachedWrite(0, "abcd")->written, 4u);
  EXPECT_EQ(Content(), "abcd");
  // A write reaching past the new size comes after all of them: the rest of
  // the grow is zeros.
  EXPECT_EQ(CachedWrite(8, std::string("\0\0XY", 4))->written, 4u);
  EXPECT_EQ(Content(), std::string("abcd\0\0\0\0\0\0XY", 12));
}

TEST_F(WritebackTest, FsyncLandsAPendingGrow) {
  ASSERT_EQ(CachedWrite(0, "ab")->written, 2u);
  AttrChange change;
  change.size = 6;
  ASSERT_TRUE(fs_->SetAttr(handle_->inode->id, change, handle_.get()));
  EXPECT_EQ(Content(), "ab");
  ASSERT_TRUE(fs_->Fsync(*handle_));
  EXPECT_EQ(Content(), std::string("ab\0\0\0\0", 6));
}

TEST_F(WritebackTest, ShrinkingTruncateCancelsAPendingGrow) {
  ASSERT_EQ(CachedWrite(0, "abcd")->written, 4u);
  AttrChange change;
  change.size = 100;
  ASSERT_TRUE(fs_->SetAttr(handle_->inode->id, change, handle_.get()));
  change.size = 2;
  auto st = fs_->SetAttr(handle_->inode->id, change, handle_.get());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->st_size, 2);
  ASSERT_TRUE(fs_->Fsync(*handle_));
  EXPECT_EQ(Content(), "ab");
}

// Bytes below the head were stored and then dropped: a page re-sent from
// there is taken as equal, and only its new tail lands.
TEST_F(WritebackTest, ResentPrefixReachingBelowThePrunedHeadLandsItsTail) {
  const std::string first(6000, 'a');
  ASSERT_EQ(CachedWrite(0, first)->written, first.size());
  ASSERT_TRUE(fs_->Fallocate(*handle_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096));
  Outcome* again = CachedWrite(0, first + "tail");
  EXPECT_EQ(again->written, first.size() + 4);
  EXPECT_EQ(Content(), std::string(4096, '\0') + std::string(first.size() - 4096, 'a') + "tail");
  // Below the head nothing can be compared, above it everything is.
  EXPECT_EQ(CachedWrite(0, std::string(4096, 'z') + std::string(first.size() - 4096, 'a') + "tail!")->written,
            first.size() + 5);
  EXPECT_EQ(CachedWrite(4096, "b")->error, EPERM);
}

// The kernel's write-back of a stream of appends, in rounds: each round
// sends what was appended since the last, from the start of the page that
// held the old end (re-sending its stored part), cut into page-aligned
// requests that are in flight together and reach the daemon in any order (a
// page is never in two requests at once: the next round waits for the
// last). Every request is acknowledged in full, and the file is the stream,
// across segment boundaries, with no zeros.
TEST_F(WritebackTest, ResentPagesInAnyOrderEndAsTheStreamWritten) {
  constexpr uint64_t kPage = 4096;
  std::mt19937_64 rng(7);
  std::string stream;
  for (int round = 0; round < 30; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    uint64_t start = stream.size() / kPage * kPage;
    stream += std::string(1 + rng() % 30000, static_cast<char>('a' + round % 26));
    std::vector<std::pair<uint64_t, std::string>> requests;
    while (start < stream.size()) {
      const uint64_t end = std::min<uint64_t>(stream.size(), start + kPage * (1 + rng() % 3));
      requests.emplace_back(start, stream.substr(start, end - start));
      start = end;
    }
    std::shuffle(requests.begin(), requests.end(), rng);
    std::vector<std::pair<Outcome*, size_t>> sent;
    for (const auto& [offset, data] : requests) sent.emplace_back(CachedWrite(offset, data), data.size());
    for (const auto& [outcome, size] : sent) {
      ASSERT_TRUE(outcome->called);
      EXPECT_EQ(outcome->written, size) << "error " << outcome->error;
    }
    EXPECT_EQ(HeldOfFile(), 0u);
  }
  auto plan = fs_->Read(*handle_, 0, stream.size() + 1);
  ASSERT_TRUE(plan);
  EXPECT_TRUE(Materialize(*plan) == stream) << "the file is not the stream";
}

}  // namespace
}  // namespace hpfs
