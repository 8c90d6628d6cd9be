// SPDX-License-Identifier: Apache-2.0
// A file of very many segments, built directly on disk (meta and segment
// files written here, far faster than appends): it opens, maps sampled
// offsets right against what was written, prunes 90% of itself without
// deleting a segment file in the call, and recovers from a process that died
// before its deleter ran. 20,000 segments by default;
// HPFILE_MANY_SEGMENTS=1000000 for the scale the daemon is meant for.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/fault_io.h"
#include "core/hpfile.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::SegmentFileName;
using testing::SegmentFilesOnDisk;
using testing::NoFlushIo;
using testing::TempDir;

constexpr uint64_t kCapacity = 4096;

uint64_t SegmentCount() {
  const char* env = std::getenv("HPFILE_MANY_SEGMENTS");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 20000;
}

// Segment i holds its own index as 8 bytes at every 512-byte boundary (so a
// read at a sampled offset tells which segment answered it), zeros between.
uint64_t ModelWord(uint64_t offset) { return offset / kCapacity; }

// Sealed segments full, the last one holding `tail` bytes.
void BuildStore(const std::string& dir, uint64_t segments, uint64_t tail) {
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  testing::WriteFileText(dir + "/hpfile.meta", "format=1\nsegment_size=" + std::to_string(kCapacity) +
                                                   "\nhead=0\nmode=0644\nuid=0\ngid=0\n");
  std::vector<char> block(kCapacity, 0);
  for (uint64_t i = 0; i < segments; ++i) {
    for (uint64_t at = 0; at < kCapacity; at += 512) std::memcpy(block.data() + at, &i, sizeof i);
    const std::string path = dir + "/" + SegmentFileName(i * kCapacity, kCapacity);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << path;
    const size_t length = i + 1 == segments ? tail : kCapacity;
    ASSERT_EQ(::pwrite(fd, block.data(), length, 0), static_cast<ssize_t>(length));
    ::close(fd);
  }
}

// Reads 8 bytes at `count` random 512-byte boundaries in [begin, end).
void ExpectSampledOffsetsMapRight(const HPFile& file, uint64_t begin, uint64_t end, int count) {
  std::mt19937_64 random(begin ^ end);
  for (int k = 0; k < count; ++k) {
    const uint64_t offset = (begin + random() % (end - begin - 8)) / 512 * 512;
    if (offset < begin) continue;
    uint64_t word = 0;
    auto read = file.ReadAt(offset, std::as_writable_bytes(std::span(&word, 1)));
    ASSERT_TRUE(read.has_value()) << "ReadAt(" << offset << "): " << read.error().message();
    ASSERT_EQ(*read, sizeof word);
    ASSERT_EQ(word, ModelWord(offset)) << "offset " << offset << " mapped to the wrong segment";
  }
}

TEST(ManySegmentsTest, OpensMapsPrunesAndRecovers) {
  const uint64_t segments = SegmentCount();
  ASSERT_GE(segments, 20u);
  const uint64_t tail = 1000;
  const uint64_t size = (segments - 1) * kCapacity + tail;
  TempDir tmp;
  const std::string dir = tmp.Sub("file");
  BuildStore(dir, segments, tail);
  if (::testing::Test::HasFatalFailure()) return;

  Options options;
  options.create_if_missing = false;
  const uint64_t head = segments / 10 * 9 * kCapacity + 100;
  {
    FaultIo counting;
    Options counted = options;
    counted.io = &counting;
    ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(dir, counted));
    ASSERT_FALSE(file->Damage().has_value()) << *file->Damage();
    EXPECT_TRUE(file->RecoveryLog().empty());
    EXPECT_EQ(file->Size(), size);
    EXPECT_EQ(file->Segments().size(), segments);
    ExpectSampledOffsetsMapRight(*file, 0, size - tail, 2000);

    // The prune costs a meta write and a punch, no system call per segment.
    counting.ResetCounts();
    ASSERT_OK(file->PruneHead(head));
    EXPECT_LE(counting.Calls(), 12u);
    EXPECT_EQ(file->Head(), head);
    EXPECT_EQ(file->PrunedSegments().segments, segments / 10 * 9);
    EXPECT_EQ(SegmentFilesOnDisk(dir).size(), segments) << "the prune deleted segment files itself";
    std::byte b[1];
    EXPECT_ERRNO(file->ReadAt(head - 1, b), ENODATA);
    ExpectSampledOffsetsMapRight(*file, head, size - tail, 500);
    // A bounded step of the deleter, then the process dies.
    ASSERT_OK_AND_ASSIGN(uint64_t left, file->DeletePrunedSegments(segments / 10));
    EXPECT_EQ(left, segments / 10 * 8);
  }
  // Reopening finds the rest pending, deletes none of them itself, and
  // leaves them to the next deleter.
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(dir, options));
  ASSERT_FALSE(file->Damage().has_value()) << *file->Damage();
  EXPECT_TRUE(file->RecoveryLog().empty());
  EXPECT_EQ(file->Head(), head);
  EXPECT_EQ(file->Size(), size);
  EXPECT_EQ(file->PrunedSegments().segments, segments / 10 * 8);
  EXPECT_EQ(file->PrunedSegments().bytes, segments / 10 * 8 * kCapacity);
  ExpectSampledOffsetsMapRight(*file, head, size - tail, 500);
  testing::DeleteAllPruned(*file);
  EXPECT_EQ(SegmentFilesOnDisk(dir).size(), segments - segments / 10 * 9);
  testing::ExpectWellFormed(*file);
}

// The segments a prune leaves for deletion are kept as runs: across a change
// of segment size, the backlog counts both kinds right and the deleter
// removes exactly the files below the head, oldest first.
TEST(ManySegmentsTest, PrunedRunsAcrossASegmentSizeChange) {
  TempDir tmp;
  const std::string dir = tmp.Sub("file");
  Options options;
  options.initial_meta.segment_size = 4096;
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(dir, options));
  const std::string small(10 * 4096, 'a');
  const std::string large(5 * 8192 + 10, 'b');
  ASSERT_OK(file->Append(std::as_bytes(std::span(small))));
  ASSERT_OK(file->SetSegmentSize(8192));
  ASSERT_OK(file->Append(std::as_bytes(std::span(large))));
  // Segments: ten of 4096, then six of 8192 (the last one the tail).
  ASSERT_EQ(file->Segments().size(), 16u);
  const uint64_t head = 10 * 4096 + 3 * 8192 + 5;
  ASSERT_OK(file->PruneHead(head));
  EXPECT_EQ(file->PrunedSegments().segments, 13u);
  EXPECT_EQ(file->PrunedSegments().bytes, 10 * 4096 + 3 * 8192);
  ASSERT_OK_AND_ASSIGN(uint64_t left, file->DeletePrunedSegments(11));
  EXPECT_EQ(left, 2u);
  EXPECT_EQ(file->PrunedSegments().bytes, 2 * 8192);
  auto on_disk = SegmentFilesOnDisk(dir);
  ASSERT_EQ(on_disk.size(), 5u);
  EXPECT_EQ(on_disk.front(), SegmentFileName(10 * 4096 + 8192, 8192));
  testing::DeleteAllPruned(*file);
  on_disk = SegmentFilesOnDisk(dir);
  ASSERT_EQ(on_disk.size(), 3u);
  EXPECT_EQ(on_disk.front(), SegmentFileName(10 * 4096 + 3 * 8192, 8192));
  EXPECT_EQ(file->PrunedSegments().segments, 0u);
  EXPECT_EQ(file->PrunedSegments().bytes, 0u);
  testing::ExpectWellFormed(*file);
}

// What a process wrote and never synced is made durable by the first Sync of
// the next one to open the file, with one syncfs instead of a fdatasync per
// segment: the power loss after it loses nothing.
TEST(ManySegmentsTest, FirstSyncAfterOpenIsOneSyncfsAndKeepsEverything) {
  TempDir tmp;
  const std::string dir = tmp.Sub("file");
  NoFlushIo no_flush;
  FaultIo io(no_flush);
  io.TrackDurability(tmp.path());
  Options options;
  options.io = &io;
  options.initial_meta.segment_size = 4096;
  const uint64_t segments = 200;
  std::string bytes(segments * 4096 - 10, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>('a' + i % 23);
  {
    ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(dir, options));
    ASSERT_OK(file->Sync());  // the new file's meta and entry, nothing else
    ASSERT_OK(file->Append(std::as_bytes(std::span(bytes))));
  }  // closed without a Sync: the segments sit in the page cache
  {
    ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(dir, options));
    EXPECT_EQ(file->DurableSize(), 0u);
    io.ResetCounts();
    ASSERT_OK(file->Sync());
    EXPECT_EQ(io.Calls(static_cast<IoOpMask>(IoOp::kFdatasync)), 0u);
    EXPECT_EQ(io.Calls(static_cast<IoOpMask>(IoOp::kSyncfs)), 1u);
    EXPECT_EQ(file->DurableSize(), bytes.size());
    // Later Syncs are per segment again, and only for what changed.
    ASSERT_OK(file->Append(std::as_bytes(std::span("tail", 4))));
    io.ResetCounts();
    ASSERT_OK(file->Sync());
    EXPECT_EQ(io.Calls(static_cast<IoOpMask>(IoOp::kSyncfs)), 0u);
    EXPECT_EQ(io.Calls(static_cast<IoOpMask>(IoOp::kFdatasync)), 1u);
  }
  ASSERT_OK(io.DropUnsyncedData());
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(dir, options));
  ASSERT_FALSE(file->Damage().has_value()) << *file->Damage();
  ASSERT_EQ(file->Size(), bytes.size() + 4);
  std::string back(bytes.size(), '\0');
  ASSERT_OK_AND_ASSIGN(size_t n, file->ReadAt(0, std::as_writable_bytes(std::span(back))));
  EXPECT_EQ(n, bytes.size());
  EXPECT_TRUE(back == bytes);
}

// A failed syncfs fails that Sync and every later one, as a failed
// fdatasync does: the write-back error it reports is not reported again.
TEST(ManySegmentsTest, FailedFirstSyncfsIsSticky) {
  TempDir tmp;
  const std::string dir = tmp.Sub("file");
  NoFlushIo no_flush;
  FaultIo io(no_flush);
  Options options;
  options.io = &io;
  options.initial_meta.segment_size = 4096;
  {
    ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(dir, options));
    const std::string bytes(100 * 4096, 'x');
    ASSERT_OK(file->Append(std::as_bytes(std::span(bytes))));
  }
  ASSERT_OK_AND_ASSIGN(auto file, HPFile::Open(dir, options));
  io.FailNthCall(1, EIO, static_cast<IoOpMask>(IoOp::kSyncfs));
  EXPECT_ERRNO(file->Sync(), EIO);
  io.Heal();
  EXPECT_ERRNO(file->Sync(), EIO);
  ASSERT_TRUE(file->SyncFailure().has_value());
  EXPECT_NE(file->SyncFailure()->find("syncfs"), std::string::npos);
}

}  // namespace
}  // namespace hpfile
