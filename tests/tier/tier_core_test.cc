// SPDX-License-Identifier: Apache-2.0
// Tiered storage's core layer against the in-memory store: the manifest and
// file identity, the uploader (with faults of the store and of the disk, and
// a crash at each of its steps), the remote chunk cache, remote retention
// and the bucket check.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/fake_object_store.h"
#include "core/fault_io.h"
#include "core/format.h"
#include "core/hpfile.h"
#include "core/meta.h"
#include "core/text_file.h"
#include "core/tier_manifest.h"
#include "tests/core/test_util.h"

namespace hpfile::testing {
namespace {

constexpr std::string_view kId = "0123456789abcdef0123456789abcdef";

Manifest SampleManifest() {
  Manifest m{.file_id = std::string(kId), .chunk_size = 4};
  m.segments.push_back({.base = 0, .capacity = 16, .size = 16, .etag = "e1", .chunk_crcs = {1, 2, 3, 4}});
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
           {"format=1\nfile_id=" + std::string(kId) + "\nchunk_size=4\nsegment=0 10 16 e 1,2,3\n", "checksum count"},
           {"format=1\nfile_id=" + std::string(kId) + "\nchunk_size=4\nsegment=0 10 17 e 1,2,3,4,5\n", "size"},
           {"format=1\nfile_id=" + std::string(kId) + "\nchunk_size=4\nsegment=10 10 1 e 1\nsegment=0 10 1 e 1\n",
            "out of order"},
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

}  // namespace
}  // namespace hpfile::testing
