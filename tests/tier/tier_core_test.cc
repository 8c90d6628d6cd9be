// SPDX-License-Identifier: Apache-2.0
// Tiered storage's core layer against the in-memory store: the manifest and
// file identity, the uploader (with faults of the store and of the disk, and
// a crash at each of its steps), the remote chunk cache, remote retention
// and the bucket check.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/fake_object_store.h"
#include "core/fault_io.h"
#include "core/format.h"
#include "core/hpfile.h"
#include "core/meta.h"
#include "core/text_file.h"
#include "core/tier_cache.h"
#include "core/tier_manifest.h"
#include "core/tier_uploader.h"
#include "core/tiered_file.h"
#include "tests/core/test_util.h"

namespace hpfile::testing {
namespace {

constexpr std::string_view kId = "0123456789abcdef0123456789abcdef";

Manifest SampleManifest() {
  Manifest m{.file_id = std::string(kId), .chunk_size = 4, .head = 3};
  m.segments.push_back(
      {.base = 0, .capacity = 16, .size = 16, .last_write = 1700000000, .etag = "e1", .chunk_crcs = {1, 2, 3, 4}});
  m.segments.push_back({.base = 16, .capacity = 16, .size = 9, .etag = "e2-2", .chunk_crcs = {5, 6, 0xffffffff}});
  m.deleting.push_back({.base = 0x100, .capacity = 0x10});
  return m;
}

TEST(TierManifest, RoundTripsThroughItsText) {
  const Manifest m = SampleManifest();
  auto parsed = ParseManifest(SerializeManifest(m));
  ASSERT_TRUE(parsed) << parsed.error();
  EXPECT_EQ(*parsed, m);
  EXPECT_EQ(parsed->Find(0), &parsed->segments[0]);
  EXPECT_EQ(parsed->Find(31), &parsed->segments[1]);
  EXPECT_EQ(parsed->Find(32), nullptr);
  EXPECT_EQ(parsed->RemoteBytes(), 25u);
}

TEST(TierManifest, DamagedTextIsRejectedWithTheLine) {
  const std::string good = SerializeManifest(SampleManifest());
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"format=2\n", "not supported"},
           {"format=1\nchunk_size=4\n", "no file_id"},
           {"format=1\nfile_id=XYZ\n", "file_id"},
           {"format=1\nfile_id=" + std::string(kId) + "\nchunk_size=0\n", "chunk_size"},
           {"format=1\nfile_id=" + std::string(kId) + "\nchunk_size=4\nsegment=0 10 16 0 e 1,2,3\n", "checksum count"},
           {"format=1\nfile_id=" + std::string(kId) + "\nchunk_size=4\nsegment=0 10 17 0 e 1,2,3,4,5\n", "size"},
           {"format=1\nfile_id=" + std::string(kId) + "\nchunk_size=4\nsegment=10 10 1 0 e 1\nsegment=0 10 1 0 e 1\n",
            "out of order"},
           {"format=1\nfile_id=" + std::string(kId) + "\nchunk_size=4\nhead=16\nsegment=0 10 1 0 e 1\n", "below the head"},
           {good + "bogus=1\n", "unknown key"},
           {good + "garbage\n", "not key=value"},
       }) {
    auto parsed = ParseManifest(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_THAT(parsed.error(), ::testing::HasSubstr(why)) << text;
  }
}

TEST(TierManifest, ReadOfAMissingOrDamagedFile) {
  TempDir dir;
  auto& io = PosixIo::Default();
  auto none = ReadManifest(io, dir.path());
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(WriteManifest(io, dir.path(), SampleManifest()));
  auto read = ReadManifest(io, dir.path());
  ASSERT_TRUE(read && read->has_value());
  EXPECT_EQ(**read, SampleManifest());
  ASSERT_TRUE(ReplaceFileAtomically(io, dir.path(), format::kRemoteManifestName, "x.tmp", "format=1\n"));
  std::string damage;
  auto damaged = ReadManifest(io, dir.path(), &damage);
  ASSERT_FALSE(damaged);
  EXPECT_TRUE(IsErrno(damaged.error(), EIO));
  EXPECT_THAT(damage, ::testing::HasSubstr("file_id"));
}

TEST(TierManifest, ObjectKeysNameFileAndSlotAndParseBack) {
  const SegmentName slot{.base = 0x4000000, .capacity = 0x4000000};
  const std::string key = TierObjectKey("logs/a", kId, slot);
  EXPECT_EQ(key, "logs/a/" + std::string(kId) + "/0000000004000000-4000000.seg");
  auto parsed = ParseTierObjectKey("logs/a", key);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->file_id, kId);
  EXPECT_EQ(parsed->segment, slot);
  EXPECT_EQ(TierObjectKey("", kId, slot), std::string(kId) + "/0000000004000000-4000000.seg");
  EXPECT_TRUE(ParseTierObjectKey("", TierObjectKey("", kId, slot)));
  EXPECT_FALSE(ParseTierObjectKey("logs/b", key));
  EXPECT_FALSE(ParseTierObjectKey("logs", key));
  EXPECT_FALSE(ParseTierObjectKey("logs/a", "logs/a/" + std::string(kId) + "/4000000-4000000.seg"));
  EXPECT_FALSE(ParseTierObjectKey("logs/a", "logs/a/" + std::string(kId) + "/0000000004000000-04000000.seg"));
  EXPECT_FALSE(ParseTierObjectKey("logs/a", "logs/a/xyz/0000000004000000-4000000.seg"));
}

TEST(TierManifest, ChunkChecksumsCoverEveryPiece) {
  std::vector<std::byte> data(10, std::byte{7});
  auto crcs = ChunkCrcs(data, 4);
  ASSERT_EQ(crcs.size(), 3u);
  EXPECT_EQ(crcs[0], Crc32(std::span(data).first(4)));
  EXPECT_EQ(crcs[2], Crc32(std::span(data).subspan(8)));
  EXPECT_EQ(Crc32(std::span(data).subspan(4), Crc32(std::span(data).first(4))), Crc32(data));
}

TEST(TierFileId, MetaIsFormat2OnlyWithAnId) {
  Meta meta;
  EXPECT_THAT(SerializeMeta(meta), ::testing::StartsWith("format=1\n"));
  meta.file_id = std::string(kId);
  const std::string text = SerializeMeta(meta);
  EXPECT_THAT(text, ::testing::StartsWith("format=2\n"));
  auto parsed = ParseMeta(text);
  ASSERT_TRUE(parsed) << parsed.error();
  EXPECT_EQ(*parsed, meta);
  auto no_id = ParseMeta("format=2\nsegment_size=10\n");
  ASSERT_FALSE(no_id);
  EXPECT_THAT(no_id.error(), ::testing::HasSubstr("no file_id"));
  EXPECT_FALSE(ParseMeta("format=1\nsegment_size=10\nfile_id=" + std::string(kId) + "\n"));
  EXPECT_FALSE(ParseMeta("format=2\nsegment_size=10\nfile_id=ABC\n"));
  EXPECT_FALSE(ParseMeta("format=3\nsegment_size=10\n"));
}

TEST(TierFileId, EnsureFileIdGivesOneOnceAndItSurvivesReopen) {
  TempDir dir;
  std::string id;
  {
    auto file = HPFile::Open(dir / "f");
    ASSERT_TRUE(file);
    auto first = EnsureFileId(**file);
    ASSERT_TRUE(first);
    EXPECT_TRUE(ValidFileId(*first));
    auto again = EnsureFileId(**file);
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, *first);
    id = *first;
  }
  auto text = ReadMetaText(PosixIo::Default(), dir / "f");
  ASSERT_TRUE(text);
  EXPECT_THAT(*text, ::testing::StartsWith("format=2\n"));
  // A manifest beside the meta is part of the file, not a stray entry.
  ASSERT_TRUE(WriteManifest(PosixIo::Default(), dir / "f", Manifest{.file_id = id}));
  auto file = HPFile::Open(dir / "f");
  ASSERT_TRUE(file);
  EXPECT_FALSE((*file)->Damage()) << *(*file)->Damage();
  EXPECT_EQ((*file)->GetMeta().file_id, id);
  auto other = NewFileId();
  ASSERT_TRUE(other);
  EXPECT_NE(*other, id);
}


// ---- the uploader and TieredFile -----------------------------------------------------------

constexpr uint64_t kSeg = 4096;
constexpr uint64_t kChunk = 1024;

// One tiered HPFile over the fake store, reopened at will as after a crash.
class Tier : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path();
    config_.store = &store_;
    config_.prefix = "bucket/pre";
    config_.chunk_size = kChunk;
    config_.upload = UploadOptions{.multipart_threshold = 2 * kChunk, .part_size = kChunk};
    config_.retry = TierRetry{.max_attempts = 4, .sleep = [this](std::chrono::milliseconds d) {
                                sleeps_.push_back(d);
                              }};
  }

  std::string dir() const { return root_ + "/f"; }

  // Opens the HPFile (through `io`) and the TieredFile over it.
  void Open(Io* io = nullptr) {
    tiered_.reset();
    cache_.reset();
    file_.reset();
    Options options{.io = io};
    options.initial_meta.segment_size = kSeg;
    auto file = HPFile::Open(dir(), options);
    ASSERT_TRUE(file) << file.error().message();
    file_ = std::move(*file);
    auto cache = ChunkCache::Open(config_, ChunkCacheOptions{.dir = root_ + "/cache",
                                                             .capacity_bytes = cache_capacity_,
                                                             .readahead_chunks = 4,
                                                             .max_attempts = 3,
                                                             .log = [this](const std::string& l) { log_.push_back(l); },
                                                             .io = io});
    ASSERT_TRUE(cache) << cache.error().message();
    cache_ = std::move(*cache);
    auto tiered = TieredFile::Open(*file_, TieredFileOptions{.config = config_, .source = cache_.get(), .io = io});
    ASSERT_TRUE(tiered) << tiered.error().message;
    tiered_ = std::move(*tiered);
  }
  void Close() {
    tiered_.reset();
    cache_.reset();
    file_.reset();
  }

  void AppendPattern(uint64_t bytes) {
    const uint64_t start = file_->Size();
    ASSERT_TRUE(file_->Append(PatternBytes(start, bytes)));
  }

  // The whole file through the TieredFile, in reads of `piece` bytes.
  void ExpectContent(uint64_t size, size_t piece = 700) {
    ASSERT_EQ(tiered_->Size(), size);
    const uint64_t head = tiered_->Head();
    std::vector<std::byte> got;
    for (uint64_t off = head; off < size;) {
      std::vector<std::byte> buf(piece);
      auto n = tiered_->ReadAt(off, buf);
      ASSERT_TRUE(n) << "at " << off << ": " << n.error().message();
      ASSERT_GT(*n, 0u) << "at " << off;
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(*n));
      off += *n;
    }
    ASSERT_TRUE(got == PatternBytes(head, size - head)) << "content differs from the pattern";
  }

  TierResult<RemoteCheckReport> Check(bool repair = false) {
    return CheckRemote(config_, {tiered_->GetManifest()}, repair);
  }

  TempDir tmp_;
  std::string root_;
  FakeObjectStore store_;
  TierStoreConfig config_;
  std::vector<std::chrono::milliseconds> sleeps_;
  std::vector<std::string> log_;
  uint64_t cache_capacity_ = 1 << 20;
  std::unique_ptr<HPFile> file_;
  std::unique_ptr<ChunkCache> cache_;
  std::unique_ptr<TieredFile> tiered_;
};

TEST(TierUrl, BucketAndPrefix) {
  auto url = ParseTierUrl("s3://logs/prod/app/");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->bucket, "logs");
  EXPECT_EQ(url->prefix, "prod/app");
  url = ParseTierUrl("s3://logs");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->prefix, "");
  EXPECT_FALSE(ParseTierUrl("s3:///x"));
  EXPECT_FALSE(ParseTierUrl("http://logs/x"));
  EXPECT_FALSE(ParseTierUrl("s3://logs/a//b"));
}

TEST(TierPolicy, OffloadsOldestSealedSegmentsWithoutGapsNeverTheTail) {
  std::vector<SegmentInfo> segments;
  for (uint64_t i = 0; i < 4; ++i) segments.push_back({.base = i * 10, .capacity = 10, .length = 10});
  segments.back().length = 5;  // the tail
  const uint64_t size = 35;
  auto bases = [](const std::vector<SegmentInfo>& chosen) {
    std::vector<uint64_t> out;
    for (const auto& s : chosen) out.push_back(s.base);
    return out;
  };
  auto age = [](const SegmentInfo& s) -> int64_t { return s.base == 10 ? 50 : 1000; };
  EXPECT_TRUE(SegmentsToOffload(segments, size, {}, 2000, age).empty());
  EXPECT_EQ(bases(SegmentsToOffload(segments, size, {.retain_bytes = 15}, 0, age)), (std::vector<uint64_t>{0, 10}));
  EXPECT_EQ(bases(SegmentsToOffload(segments, size, {.retain_bytes = 0}, 0, age)), (std::vector<uint64_t>{0, 10, 20}));
  // The age limit lets segment 10 go but not 0: nothing goes, so what stays
  // local stays one range.
  EXPECT_TRUE(SegmentsToOffload(segments, size, {.retain_seconds = 100}, 200, age).empty());
  EXPECT_EQ(bases(SegmentsToOffload(segments, size, {.retain_seconds = 100}, 2000, age)),
            (std::vector<uint64_t>{0, 10, 20}));
}

TEST_F(Tier, OffloadKeepsTheLocalLimitAndEveryByteReadsBack) {
  Open();
  AppendPattern(5 * kSeg + 100);
  auto done = tiered_->OffloadDue({.retain_bytes = 2 * kSeg}, 0);
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_EQ(*done, 3u);
  const TierStats stats = tiered_->Stats();
  EXPECT_EQ(stats.remote_segments, 3u);
  EXPECT_EQ(stats.remote_bytes, 3 * kSeg);
  EXPECT_EQ(stats.local_segments, 3u);
  EXPECT_EQ(file_->Head(), 3 * kSeg);
  EXPECT_EQ(tiered_->Head(), 0u);
  EXPECT_EQ(store_.ObjectCount(), 3u);
  const std::string id = tiered_->file_id();
  EXPECT_TRUE(store_.Head("bucket/pre/" + id + "/0000000000000000-1000.seg"));
  EXPECT_TRUE(store_.Head("bucket/pre/" + id + "/0000000000002000-1000.seg"));
  // Multipart above the threshold, parts of one chunk each.
  EXPECT_EQ(store_.Calls(StoreOp::kUploadPart), 3 * kSeg / kChunk);
  ExpectContent(5 * kSeg + 100);
  // A second pass finds nothing more to do; the tail never goes.
  ASSERT_TRUE(tiered_->OffloadDue({.retain_bytes = 2 * kSeg}, 0));
  EXPECT_EQ(tiered_->Stats().remote_segments, 3u);
  ASSERT_TRUE(tiered_->OffloadDue({.retain_bytes = 0}, 0));
  EXPECT_EQ(tiered_->Stats().remote_segments, 5u);
  EXPECT_EQ(tiered_->Stats().local_segments, 1u);
  auto none = tiered_->OffloadOldest();
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  // Appends go on locally.
  AppendPattern(kSeg);
  ExpectContent(6 * kSeg + 100, 4096);

  // Reopen: the manifest and the cache are both still there.
  Open();
  const uint64_t gets = store_.Calls(StoreOp::kGet);
  ExpectContent(6 * kSeg + 100, 1500);
  EXPECT_EQ(store_.Calls(StoreOp::kGet), gets) << "cached chunks were fetched again";
  EXPECT_GT(cache_->stats().hits, 0u);
  auto report = Check();
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok());
  // The meta is format 2 now, naming the id.
  auto meta = ReadMetaText(PosixIo::Default(), dir());
  ASSERT_TRUE(meta);
  EXPECT_THAT(*meta, ::testing::HasSubstr("file_id=" + id));
}

TEST_F(Tier, SmallSegmentsGoAsOnePut) {
  config_.upload.multipart_threshold = kSeg;
  Open();
  AppendPattern(2 * kSeg);
  ASSERT_TRUE(tiered_->OffloadOldest());
  EXPECT_EQ(store_.Calls(StoreOp::kPut), 1u);
  EXPECT_EQ(store_.Calls(StoreOp::kUploadPart), 0u);
  ExpectContent(2 * kSeg);
}

TEST_F(Tier, RetryableStoreErrorsAreRetriedWithBoundedBackoff) {
  Open();
  AppendPattern(2 * kSeg);
  store_.FailNext(3, StoreErrorClass::kRetryable, StoreOp::kUploadPart);
  auto one = tiered_->OffloadOldest();
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_TRUE(*one);
  ASSERT_EQ(sleeps_.size(), 3u);
  EXPECT_EQ(sleeps_[1], 2 * sleeps_[0]);
  ExpectContent(2 * kSeg);
}

TEST_F(Tier, AStoreThatStaysDownOrRefusesLeavesTheLocalCopy) {
  Open();
  AppendPattern(3 * kSeg);
  for (auto error_class : {StoreErrorClass::kRetryable, StoreErrorClass::kPermanent}) {
    sleeps_.clear();
    store_.FailNext(1000, error_class);
    auto one = tiered_->OffloadOldest();
    ASSERT_FALSE(one);
    EXPECT_EQ(one.error().retryable, error_class == StoreErrorClass::kRetryable);
    EXPECT_LE(sleeps_.size(), 3u) << "attempts are bounded";
    store_.FailNext(0, error_class);
    EXPECT_EQ(file_->Head(), 0u);
    EXPECT_EQ(tiered_->Stats().remote_segments, 0u);
    EXPECT_EQ(store_.PendingUploads(), 0u);
    // Appends and reads of local data go on.
    AppendPattern(10);
    ExpectContent(file_->Size());
  }
  Open();
  ExpectContent(file_->Size());
  ASSERT_TRUE(tiered_->OffloadOldest());
  ExpectContent(file_->Size());
}

// The object stored but its HEAD failing, and the other remote steps: the
// local copy stays, and what a failure left in the bucket is an orphan the
// check finds and the next upload replaces.
TEST_F(Tier, EachRemoteStepFailingIsConsistent) {
  for (StoreOp op : {StoreOp::kCreateMultipart, StoreOp::kUploadPart, StoreOp::kComplete, StoreOp::kHead}) {
    SCOPED_TRACE(static_cast<int>(op));
    Open();
    if (file_->Size() == 0) AppendPattern(3 * kSeg);
    const uint64_t head = file_->Head();
    const size_t remote = tiered_->Stats().remote_segments;
    store_.FailNext(1, StoreErrorClass::kPermanent, op);
    auto one = tiered_->OffloadOldest();
    ASSERT_FALSE(one);
    EXPECT_EQ(file_->Head(), head);
    EXPECT_EQ(tiered_->Stats().remote_segments, remote);
    Open();  // as after a crash at this point
    ExpectContent(3 * kSeg);
    auto report = Check();
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->missing.empty());
    EXPECT_EQ(report->orphans.size(), op == StoreOp::kHead ? 1u : 0u);
    auto again = tiered_->OffloadOldest();
    ASSERT_TRUE(again) << again.error().message;
    report = Check();
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->ok());
    ExpectContent(3 * kSeg);
    if (tiered_->Stats().local_segments < 2) break;
  }
}

// Every local step of an offload (reading the segment, the manifest's temp
// file, its sync, the rename, the directory sync, the prune's unlink)
// failing, then a power loss: the file reopens whole, nothing the manifest
// names is missing, and the offload completes on the next try.
TEST_F(Tier, EachLocalStepFailingThenPowerLossLosesNothing) {
  for (int err : {EIO, ENOSPC}) {
    for (uint64_t n = 1;; ++n) {
      SCOPED_TRACE("call " + std::to_string(n) + " fails with " + std::to_string(err));
      TempDir fresh;
      root_ = fresh.path();  // each round from scratch
      FakeObjectStore store;
      config_.store = &store;
      FaultIo io;
      ASSERT_TRUE(EnsureDirectory(io, dir(), true));
      io.TrackDurability(root_);
      Open(&io);
      AppendPattern(2 * kSeg + 10);
      ASSERT_TRUE(file_->Sync());
      io.FailNthCall(n, err, kAllIoOps);
      auto one = tiered_->OffloadOldest();
      const bool fired = io.Fired();
      io.Heal();
      Close();
      ASSERT_TRUE(io.DropUnsyncedData());
      Open(&io);
      ExpectContent(2 * kSeg + 10);
      auto report = Check();
      ASSERT_TRUE(report);
      EXPECT_TRUE(report->missing.empty()) << report->missing.front();
      EXPECT_TRUE(report->wrong_size.empty());
      if (!fired) {
        ASSERT_TRUE(one);
        EXPECT_EQ(tiered_->Stats().remote_segments, 1u);
        Close();
        break;
      }
      // The failure may have come after the manifest was written (its
      // directory sync): then the segment is remote already.
      const uint64_t remote = tiered_->Stats().remote_segments;
      ASSERT_LE(remote, 1u);
      EXPECT_EQ(file_->Head(), remote * kSeg);
      auto again = tiered_->OffloadOldest();
      ASSERT_TRUE(again) << again.error().message;
      EXPECT_EQ(tiered_->Stats().remote_segments, remote + 1);
      EXPECT_EQ(file_->Head(), (remote + 1) * kSeg);
      ExpectContent(2 * kSeg + 10);
      Close();
      ASSERT_LT(n, 200u);
    }
  }
  config_.store = &store_;
}

// Every local step of a prune that reaches past the remote range (the
// manifest with the dropped objects, the HPFile's own prune) failing, then
// a power loss: the file reopens with the old head or the new one, never
// naming a missing object, and the prune then completes with nothing left
// in the bucket but the segments still recorded.
TEST_F(Tier, EachLocalStepOfAPruneFailingThenPowerLossLosesNothing) {
  for (uint64_t n = 1;; ++n) {
    SCOPED_TRACE("call " + std::to_string(n) + " fails");
    TempDir fresh;
    root_ = fresh.path();
    FakeObjectStore store;
    config_.store = &store;
    FaultIo io;
    ASSERT_TRUE(EnsureDirectory(io, dir(), true));
    Open(&io);
    AppendPattern(4 * kSeg + 10);
    ASSERT_TRUE(tiered_->OffloadDue({.retain_bytes = 2 * kSeg}, 0));
    ASSERT_EQ(tiered_->Stats().remote_segments, 2u);
    ASSERT_TRUE(file_->Sync());
    io.TrackDurability(root_);
    io.FailNthCall(n, EIO, kAllIoOps);
    auto pruned = tiered_->PruneHead(2 * kSeg + 100);
    const bool fired = io.Fired();
    io.Heal();
    Close();
    ASSERT_TRUE(io.DropUnsyncedData());
    Open(&io);
    const uint64_t head = tiered_->Head();
    EXPECT_TRUE(head == 0 || head == 2 * kSeg + 100) << head;
    ExpectContent(4 * kSeg + 10);
    auto report = Check();
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->missing.empty()) << report->missing.front();
    ASSERT_TRUE(tiered_->PruneHead(2 * kSeg + 100));
    ASSERT_TRUE(tiered_->DeleteDroppedObjects());
    report = Check();
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->ok());
    EXPECT_EQ(store.ObjectCount(), 0u);
    EXPECT_EQ(tiered_->Head(), 2 * kSeg + 100);
    ExpectContent(4 * kSeg + 10);
    Close();
    if (!fired) {
      EXPECT_TRUE(pruned);
      // The manifest's write and the HPFile's prune each take several calls.
      EXPECT_GT(n, 5u);
      break;
    }
    ASSERT_LT(n, 200u);
  }
  config_.store = &store_;
}

// A crash after the manifest names the segment but before its local copy
// went: reopening removes the copy.
TEST_F(Tier, ReopenFinishesAnOffloadTheCrashInterrupted) {
  Open();
  AppendPattern(2 * kSeg);
  ASSERT_TRUE(tiered_->OffloadOldest());
  const Manifest manifest = tiered_->GetManifest();
  Close();
  // Put the state back as it was before the prune: the segment file back,
  // the meta's head at 0.
  {
    auto file = HPFile::Open(dir());
    ASSERT_TRUE(file);
  }
  const std::string seg0 = dir() + "/" + FormatSegmentName({.base = 0, .capacity = kSeg});
  WriteFileBytes(seg0, PatternBytes(0, kSeg));
  auto meta_text = ReadMetaText(PosixIo::Default(), dir());
  ASSERT_TRUE(meta_text);
  auto meta = ParseMeta(*meta_text);
  ASSERT_TRUE(meta);
  meta->head = 0;
  ASSERT_TRUE(WriteMetaAtomically(PosixIo::Default(), dir(), *meta));
  Open();
  EXPECT_EQ(file_->Head(), kSeg);
  EXPECT_FALSE(std::filesystem::exists(seg0));
  EXPECT_EQ(tiered_->GetManifest(), manifest);
  ExpectContent(2 * kSeg);
}

// ---- the chunk cache -------------------------------------------------------------------------

TEST_F(Tier, ShortOrWrongAnswersAreFetchedAgainThenEIOWithTheObjectNamed) {
  Open();
  AppendPattern(2 * kSeg);
  ASSERT_TRUE(tiered_->OffloadOldest());
  Open();
  store_.CorruptNextGets(1);
  store_.ShortenNextGets(1);
  ExpectContent(2 * kSeg);
  EXPECT_GE(cache_->stats().bad_chunks, 1u);
  EXPECT_TRUE(log_.empty());

  cache_->Forget(tiered_->file_id(), {.base = 0, .capacity = kSeg});
  store_.CorruptNextGets(100);
  std::vector<std::byte> buf(10);
  // Not where a sequential reader goes next: one chunk per GET, every one
  // damaged.
  auto read = tiered_->ReadAt(kChunk + 5, buf);
  ASSERT_FALSE(read);
  EXPECT_TRUE(IsErrno(read.error(), EIO));
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_THAT(log_[0], ::testing::HasSubstr(TierObjectKey(config_.prefix, tiered_->file_id(), {0, kSeg})));
  EXPECT_THAT(log_[0], ::testing::HasSubstr("checksum"));
  // The local range is not affected.
  auto local = tiered_->ReadAt(kSeg + 5, buf);
  ASSERT_TRUE(local);
  EXPECT_EQ(*local, 10u);
  store_.CorruptNextGets(0);
  ExpectContent(2 * kSeg);

  // A store that refuses (403) fails at once, without retries of the fetch.
  cache_->Forget(tiered_->file_id(), {.base = 0, .capacity = kSeg});
  const uint64_t gets = store_.Calls(StoreOp::kGet);
  store_.FailNext(1, StoreErrorClass::kPermanent, StoreOp::kGet);
  // The object's last chunk, where the last reader was: no read-ahead.
  ASSERT_FALSE(tiered_->ReadAt(3 * kChunk + 5, buf));
  EXPECT_EQ(store_.Calls(StoreOp::kGet), gets + 1);
}

TEST_F(Tier, ACachedChunkDamagedOnDiskIsCheckedOnceAndFetchedAgain) {
  Open();
  AppendPattern(2 * kSeg);
  ASSERT_TRUE(tiered_->OffloadOldest());
  ExpectContent(2 * kSeg);
  Close();
  // Damage every cached chunk as a power loss might (not synced).
  size_t damaged = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root_ + "/cache")) {
    auto bytes = ReadFileBytes(entry.path());
    bytes[bytes.size() / 2] ^= std::byte{1};
    WriteFileBytes(entry.path(), bytes);
    ++damaged;
  }
  EXPECT_EQ(damaged, kSeg / kChunk);
  // A temp file of an interrupted fill goes at open.
  WriteFileBytes(root_ + "/cache/x.chunk.1.tmp", PatternBytes(0, 3));
  Open();
  EXPECT_FALSE(std::filesystem::exists(root_ + "/cache/x.chunk.1.tmp"));
  ExpectContent(2 * kSeg);
  EXPECT_EQ(cache_->stats().bad_chunks, damaged);
}

TEST_F(Tier, CacheStaysWithinItsCapacityLeastRecentlyUsedFirst) {
  cache_capacity_ = 3 * kChunk;
  Open();
  AppendPattern(3 * kSeg);
  ASSERT_TRUE(tiered_->OffloadDue({.retain_bytes = 0}, 0));
  ExpectContent(3 * kSeg);
  EXPECT_LE(cache_->stats().bytes, 3 * kChunk);
  EXPECT_EQ(cache_->stats().chunks, 3u);
  // The newest chunks were kept: re-reading the last remote chunk is a hit.
  const uint64_t gets = store_.Calls(StoreOp::kGet);
  std::vector<std::byte> buf(10);
  ASSERT_TRUE(tiered_->ReadAt(2 * kSeg - 10, buf));
  EXPECT_EQ(store_.Calls(StoreOp::kGet), gets);
  // Reopened with less room, it shrinks at once.
  cache_capacity_ = kChunk;
  Open();
  EXPECT_EQ(cache_->stats().chunks, 1u);
}

TEST_F(Tier, SequentialReadersFetchAheadInLargerRanges) {
  Open();
  AppendPattern(2 * kSeg);
  ASSERT_TRUE(tiered_->OffloadOldest());
  Open();
  ExpectContent(2 * kSeg, 512);
  // 4 chunks: the first for the reader, the other 3 in one GET ahead of it,
  // each fetched once.
  EXPECT_EQ(store_.Calls(StoreOp::kGet), 2u);
  EXPECT_EQ(cache_->stats().prefetched, 3u);
  EXPECT_EQ(cache_->stats().misses, 1u);
  // A random reader gets one chunk per miss, and nothing ahead.
  cache_->Forget(tiered_->file_id(), {.base = 0, .capacity = kSeg});
  std::vector<std::byte> buf(10);
  ASSERT_TRUE(tiered_->ReadAt(3 * kChunk, buf));
  ASSERT_TRUE(tiered_->ReadAt(1 * kChunk, buf));
  EXPECT_EQ(store_.Calls(StoreOp::kGet), 4u);
  EXPECT_EQ(cache_->stats().prefetched, 3u);
}

// ---- retention, truncate, check ------------------------------------------------------------

TEST_F(Tier, PruneDeletesRemoteObjectsAfterTheManifestDropsThem) {
  Open();
  AppendPattern(4 * kSeg + 10);
  ASSERT_TRUE(tiered_->OffloadDue({.retain_bytes = 0}, 0));
  ASSERT_EQ(store_.ObjectCount(), 4u);
  ASSERT_TRUE(tiered_->PruneHead(kSeg + 100));
  EXPECT_EQ(tiered_->Head(), kSeg + 100);
  EXPECT_EQ(store_.ObjectCount(), 3u);
  std::vector<std::byte> buf(10);
  auto below = tiered_->ReadAt(kSeg + 99, buf);
  ASSERT_FALSE(below);
  EXPECT_TRUE(IsErrno(below.error(), ENODATA));
  ExpectContent(4 * kSeg + 10);

  // Deletions that fail stay on the manifest's books, across a reopen.
  store_.FailNext(1000, StoreErrorClass::kRetryable, StoreOp::kDelete);
  ASSERT_TRUE(tiered_->PruneHead(3 * kSeg));
  EXPECT_EQ(tiered_->GetManifest().deleting.size(), 2u);
  EXPECT_EQ(store_.ObjectCount(), 3u);
  auto report = Check();
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->missing.empty());
  EXPECT_EQ(report->orphans.size(), 2u);
  store_.FailNext(0, StoreErrorClass::kRetryable);
  Open();
  EXPECT_EQ(tiered_->Head(), 3 * kSeg);
  auto left = tiered_->DeleteDroppedObjects();
  ASSERT_TRUE(left);
  EXPECT_EQ(*left, 0u);
  EXPECT_EQ(store_.ObjectCount(), 1u);
  EXPECT_TRUE(tiered_->GetManifest().deleting.empty());
  ExpectContent(4 * kSeg + 10);

  // Past the remote range: the local head moves too.
  ASSERT_TRUE(tiered_->PruneHead(4 * kSeg + 5));
  EXPECT_EQ(store_.ObjectCount(), 0u);
  EXPECT_EQ(file_->Head(), 4 * kSeg + 5);
  ExpectContent(4 * kSeg + 10);
}

TEST_F(Tier, TotalRetentionDropsRemoteSegmentsToo) {
  Open();
  AppendPattern(4 * kSeg + 10);
  ASSERT_TRUE(tiered_->OffloadDue({.retain_bytes = 0}, 0));
  ASSERT_TRUE(file_->UpdateMeta([](Meta& m) { m.retain_bytes = 2 * kSeg; }));
  auto dropped = tiered_->ApplyRetention(0);
  ASSERT_TRUE(dropped) << dropped.error().message;
  EXPECT_EQ(*dropped, 2u);
  EXPECT_EQ(tiered_->Head(), 2 * kSeg);
  EXPECT_EQ(store_.ObjectCount(), 2u);
  ExpectContent(4 * kSeg + 10);
  auto report = Check();
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok());
}

TEST_F(Tier, TruncateIntoRemoteSegmentsIsRefused) {
  Open();
  AppendPattern(3 * kSeg);
  ASSERT_TRUE(tiered_->OffloadOldest());
  auto refused = tiered_->Truncate(kSeg - 1);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(IsErrno(refused.error(), EPERM));
  ExpectContent(3 * kSeg);
  ASSERT_TRUE(tiered_->Truncate(kSeg + 7));
  ExpectContent(kSeg + 7);
}

TEST_F(Tier, CheckFindsMissingWrongSizedAndOrphanedObjectsAndRepairsOrphans) {
  Open();
  AppendPattern(4 * kSeg);
  ASSERT_TRUE(tiered_->OffloadDue({.retain_bytes = 0}, 0));
  const std::string id = tiered_->file_id();
  const std::string k0 = TierObjectKey(config_.prefix, id, {0, kSeg});
  const std::string k1 = TierObjectKey(config_.prefix, id, {kSeg, kSeg});
  ASSERT_TRUE(store_.Delete(k0));                           // lost behind hpfs's back
  ASSERT_TRUE(store_.Put(k1, PatternBytes(0, 10)));          // replaced by something else
  const std::string orphan = TierObjectKey(config_.prefix, "ffffffffffffffffffffffffffffffff", {0, kSeg});
  ASSERT_TRUE(store_.Put(orphan, PatternBytes(0, 10)));      // a deleted file's
  ASSERT_TRUE(store_.Put("bucket/pre/README", PatternBytes(0, 10)));  // not ours
  auto report = Check();
  ASSERT_TRUE(report);
  EXPECT_THAT(report->missing, ::testing::ElementsAre(k0));
  ASSERT_EQ(report->wrong_size.size(), 1u);
  EXPECT_THAT(report->wrong_size[0], ::testing::HasSubstr(k1));
  EXPECT_THAT(report->orphans, ::testing::ElementsAre(orphan));
  EXPECT_EQ(report->deleted, 0u);
  // The missing object's range gives EIO; the rest of the file reads.
  std::vector<std::byte> buf(10);
  EXPECT_FALSE(tiered_->ReadAt(5, buf));
  ASSERT_TRUE(tiered_->ReadAt(2 * kSeg + 5, buf));
  EXPECT_TRUE(buf == PatternBytes(2 * kSeg + 5, 10));
  auto repaired = Check(true);
  ASSERT_TRUE(repaired);
  EXPECT_EQ(repaired->deleted, 1u);
  EXPECT_FALSE(store_.Head(orphan));
  EXPECT_TRUE(store_.Head("bucket/pre/README"));
  EXPECT_TRUE(store_.Head(k1)) << "an object a manifest names is never deleted";
}

// Readers of the whole file while segments go remote, the file grows and
// the head moves: every byte a reader gets is the pattern's, and a read
// fails only below the head (ENODATA).
TEST_F(Tier, ReadsRacingOffloadsAppendsAndPrunesSeeRightBytes) {
  Open();
  AppendPattern(3 * kSeg);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      std::vector<std::byte> buf(900 + 300 * t);
      uint64_t off = 0;
      while (!stop.load()) {
        const uint64_t size = tiered_->Size();
        if (off >= size) off = 0;
        auto n = tiered_->ReadAt(off, buf);
        if (!n) {
          EXPECT_TRUE(IsErrno(n.error(), ENODATA)) << n.error().message() << " at " << off;
          if (!IsErrno(n.error(), ENODATA)) return;
          off = tiered_->Head();
          continue;
        }
        if (*n > 0 && !std::equal(buf.begin(), buf.begin() + static_cast<long>(*n), PatternBytes(off, *n).begin())) {
          ADD_FAILURE() << "wrong bytes at " << off;
          return;
        }
        off += *n + 77;
        reads.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 12; ++i) {
    AppendPattern(kSeg);
    ASSERT_TRUE(tiered_->OffloadDue({.retain_bytes = kSeg}, 0));
    if (i % 4 == 3) {
      ASSERT_TRUE(tiered_->PruneHead(tiered_->Head() + kSeg + 11));
    }
  }
  // Let the readers see the final state too.
  const uint64_t before = reads.load();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (reads.load() < before + 200 && !HasFailure() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  stop = true;
  for (auto& r : readers) r.join();
  ExpectContent(15 * kSeg);
}

// A store whose uploads wait at a gate while it is closed, for prunes and
// truncates that come while an upload of the same segment is in flight.
class GatedStore final : public ObjectStore {
 public:
  explicit GatedStore(ObjectStore& inner) : inner_(inner) {}
  void Close() {
    std::lock_guard lock(mu_);
    open_ = false;
  }
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  // Waits until an upload waits at the gate.
  bool WaitForWaiter() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return waiting_ > 0; });
  }

  StoreResult<std::string> Put(std::string_view key, std::span<const std::byte> data) override {
    Pass();
    return inner_.Put(key, data);
  }
  StoreResult<std::string> CreateMultipartUpload(std::string_view key) override {
    Pass();
    return inner_.CreateMultipartUpload(key);
  }
  StoreResult<std::string> UploadPart(std::string_view key, std::string_view upload_id, int part_number,
                                      std::span<const std::byte> data) override {
    return inner_.UploadPart(key, upload_id, part_number, data);
  }
  StoreResult<std::string> CompleteMultipartUpload(std::string_view key, std::string_view upload_id,
                                                   std::span<const UploadedPart> parts) override {
    return inner_.CompleteMultipartUpload(key, upload_id, parts);
  }
  StoreResult<void> AbortMultipartUpload(std::string_view key, std::string_view upload_id) override {
    return inner_.AbortMultipartUpload(key, upload_id);
  }
  StoreResult<void> GetRange(std::string_view key, uint64_t offset, std::span<std::byte> out) override {
    return inner_.GetRange(key, offset, out);
  }
  StoreResult<uint64_t> Head(std::string_view key) override { return inner_.Head(key); }
  StoreResult<ObjectListPage> ListPage(std::string_view prefix, std::string_view token, int max_keys) override {
    return inner_.ListPage(prefix, token, max_keys);
  }
  StoreResult<void> Delete(std::string_view key) override { return inner_.Delete(key); }

 private:
  void Pass() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    --waiting_;
  }

  ObjectStore& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int waiting_ = 0;
};

TEST_F(Tier, PruneAndTruncateDuringAnUploadOfTheirSegmentWaitForIt) {
  GatedStore gated(store_);
  config_.store = &gated;
  Open();
  AppendPattern(3 * kSeg + 10);

  // A punch into the segment being uploaded: it waits, then drops the
  // recorded segment, whose object goes.
  gated.Close();
  TierResult<bool> offloaded = false;
  std::thread upload([&] { offloaded = tiered_->OffloadOldest(); });
  ASSERT_TRUE(gated.WaitForWaiter());
  std::atomic<bool> pruned{false};
  TierResult<void> prune;
  std::thread punch([&] {
    prune = tiered_->PruneHead(kSeg + 5, TieredFile::DropObjects::kLater);
    pruned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(pruned.load());
  gated.Open();
  upload.join();
  punch.join();
  ASSERT_TRUE(offloaded) << offloaded.error().message;
  EXPECT_TRUE(*offloaded);
  ASSERT_TRUE(prune) << prune.error().message;
  EXPECT_EQ(tiered_->Head(), kSeg + 5);
  EXPECT_EQ(file_->Head(), kSeg + 5);
  EXPECT_TRUE(tiered_->GetManifest().segments.empty());
  ASSERT_EQ(tiered_->GetManifest().deleting.size(), 1u);
  auto left = tiered_->DeleteDroppedObjects();
  ASSERT_TRUE(left);
  EXPECT_EQ(*left, 0u);
  EXPECT_EQ(store_.ObjectCount(), 0u);
  ExpectContent(3 * kSeg + 10);

  // A truncate into the segment being uploaded: it waits, and then the
  // segment is remote, so the cut is refused and nothing changes.
  gated.Close();
  std::thread upload2([&] { offloaded = tiered_->OffloadOldest(); });
  ASSERT_TRUE(gated.WaitForWaiter());
  Result<void> truncated;
  std::thread cut([&] { truncated = tiered_->Truncate(kSeg + 100); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  gated.Open();
  upload2.join();
  cut.join();
  ASSERT_TRUE(offloaded && *offloaded);
  ASSERT_FALSE(truncated);
  EXPECT_TRUE(IsErrno(truncated.error(), EPERM));
  ExpectContent(3 * kSeg + 10);
  auto report = Check();
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok());
}

TEST_F(Tier, DeletingAnUnlinkedFilesObjectsTakesRecordedAndUnrecordedOnes) {
  Open();
  AppendPattern(4 * kSeg + 10);
  ASSERT_TRUE(tiered_->OffloadDue({.retain_bytes = 0}, 0));
  ASSERT_EQ(store_.ObjectCount(), 4u);
  const Manifest before = tiered_->GetManifest();
  // An upload a crash left unrecorded, and another file's object.
  const std::vector<std::byte> bytes(10);
  ASSERT_TRUE(store_.Put(TierObjectKey(config_.prefix, before.file_id, {.base = 4 * kSeg, .capacity = kSeg}), bytes));
  const std::string other = TierObjectKey(config_.prefix, kId, {.base = 0, .capacity = kSeg});
  ASSERT_TRUE(store_.Put(other, bytes));
  Close();

  // The store does not list: nothing changes.
  store_.FailNext(1000, StoreErrorClass::kRetryable, StoreOp::kList);
  auto failed = DeleteTieredFileObjects(PosixIo::Default(), config_, dir());
  ASSERT_FALSE(failed);
  EXPECT_TRUE(failed.error().retryable);
  auto kept = ReadManifest(PosixIo::Default(), dir());
  ASSERT_TRUE(kept && kept->has_value());
  EXPECT_EQ(**kept, before);
  // It lists but does not delete: the segments are on the deleting lines,
  // orphans to the check, never missing ones.
  store_.FailNext(1000, StoreErrorClass::kRetryable, StoreOp::kDelete);
  failed = DeleteTieredFileObjects(PosixIo::Default(), config_, dir());
  ASSERT_FALSE(failed);
  kept = ReadManifest(PosixIo::Default(), dir());
  ASSERT_TRUE(kept && kept->has_value());
  EXPECT_TRUE((*kept)->segments.empty());
  EXPECT_EQ((*kept)->deleting.size(), 4u);
  store_.FailNext(0, StoreErrorClass::kRetryable);
  auto report = CheckRemote(config_, {**kept}, false);
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->missing.empty());
  EXPECT_EQ(report->orphans.size(), 6u);

  ASSERT_TRUE(DeleteTieredFileObjects(PosixIo::Default(), config_, dir()));
  EXPECT_EQ(store_.ObjectCount(), 1u);
  EXPECT_TRUE(store_.Head(other));
  auto gone = ReadManifest(PosixIo::Default(), dir());
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value());
  // Again: nothing to do.
  EXPECT_TRUE(DeleteTieredFileObjects(PosixIo::Default(), config_, dir()));
}
}  // namespace
}  // namespace hpfile::testing
