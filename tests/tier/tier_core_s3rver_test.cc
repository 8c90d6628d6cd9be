// SPDX-License-Identifier: Apache-2.0
// Tiered storage's core layer against a real S3-compatible server (s3rver,
// started here through the harness): a file's segments go to the bucket
// (one of them as a multipart upload), are read back through the chunk
// cache cold and after a reopen, a prune deletes their objects, and the
// bucket check agrees with the manifest at each stage.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "core/s3_client.h"
#include "core/tier_cache.h"
#include "core/tiered_file.h"
#include "tests/core/test_util.h"
#include "tests/tier/test_server.h"

namespace hpfile::testing {
namespace {

constexpr const char* kBucket = "hpfs-tier-core";

TEST(TierS3rver, SegmentsRoundTripThroughARealServer) {
  auto server = TestServer::StartS3rver(kBucket);
  ASSERT_TRUE(server) << server.error();
  auto client = S3Client::Create(S3ClientOptions{
      .endpoint = (*server)->endpoint(),
      .bucket = kBucket,
      .region = TestServer::kRegion,
      .credentials = {.access_key_id = TestServer::kAccessKeyId,
                      .secret_access_key = TestServer::kSecretAccessKey,
                      .session_token = ""},
      .connect_timeout = std::chrono::milliseconds(2000),
      .request_timeout = std::chrono::milliseconds(30000),
  });
  ASSERT_TRUE(client) << client.error().message();

  // 6 MiB segments: the first goes as two parts (5 MiB, S3's smallest,
  // and 1 MiB), the others as one Put each.
  constexpr uint64_t kSeg = 6ull << 20;
  TierStoreConfig config{.store = client->get(), .prefix = "tiered"};
  config.upload = UploadOptions{.multipart_threshold = 5ull << 20, .part_size = 5ull << 20};
  config.retry.initial_backoff = std::chrono::milliseconds(50);
  TempDir tmp;
  std::unique_ptr<HPFile> file;
  std::unique_ptr<ChunkCache> cache;
  std::unique_ptr<TieredFile> tiered;
  auto open = [&] {
    tiered.reset();
    cache.reset();
    file.reset();
    Options options;
    options.initial_meta.segment_size = kSeg;
    auto f = HPFile::Open(tmp / "f", options);
    ASSERT_TRUE(f);
    file = std::move(*f);
    auto c = ChunkCache::Open(config, ChunkCacheOptions{.dir = tmp / "cache", .capacity_bytes = 64ull << 20});
    ASSERT_TRUE(c);
    cache = std::move(*c);
    auto t = TieredFile::Open(*file, TieredFileOptions{.config = config, .source = cache.get()});
    ASSERT_TRUE(t) << t.error().message;
    tiered = std::move(*t);
  };
  auto expect_content = [&](uint64_t from) {
    std::vector<std::byte> buf(128 << 10);
    for (uint64_t off = from; off < tiered->Size();) {
      auto n = tiered->ReadAt(off, buf);
      ASSERT_TRUE(n) << "at " << off << ": " << n.error().message();
      ASSERT_GT(*n, 0u);
      ASSERT_TRUE(std::equal(buf.begin(), buf.begin() + static_cast<long>(*n), PatternBytes(off, *n).begin()))
          << "at " << off;
      off += *n;
    }
  };
  auto check = [&] {
    auto report = CheckRemote(config, {tiered->GetManifest()}, false);
    EXPECT_TRUE(report) << report.error().message;
    return report ? *report : RemoteCheckReport{};
  };

  open();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  const uint64_t size = 3 * kSeg + 12345;
  for (uint64_t off = 0; off < size; off += 1 << 20) {
    ASSERT_TRUE(file->Append(PatternBytes(off, std::min<uint64_t>(1 << 20, size - off))));
  }
  auto done = tiered->OffloadDue({.retain_bytes = kSeg}, 0);
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_EQ(*done, 2u);
  EXPECT_EQ(tiered->Stats().remote_segments, 2u);
  auto listed = ListAllObjects(**client, "tiered/" + tiered->file_id() + "/");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].key, TierObjectKey("tiered", tiered->file_id(), {0, kSeg}));
  EXPECT_EQ((*listed)[0].size, kSeg);
  EXPECT_TRUE(check().ok());

  expect_content(0);
  const auto cold = cache->stats();
  // Each chunk fetched once, most of them ahead of the reader.
  EXPECT_EQ(cold.misses + cold.prefetched, 2 * kSeg / kDefaultTierChunkSize);
  EXPECT_GT(cold.prefetched, cold.misses);
  open();  // a remount: the cache is still there
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  expect_content(0);
  EXPECT_EQ(cache->stats().misses, 0u);

  ASSERT_TRUE(tiered->PruneHead(kSeg + 10));
  EXPECT_EQ(tiered->Head(), kSeg + 10);
  listed = ListAllObjects(**client, "tiered/");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 1u);
  EXPECT_TRUE(check().ok());
  expect_content(kSeg + 10);
  if (::testing::Test::HasFailure()) std::cerr << "s3rver's log:\n" << (*server)->log();
}

// Runs `command` through the shell; its output and exit status.
std::pair<std::string, int> RunShell(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {"popen failed", -1};
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  const int status = ::pclose(pipe);
  return {output, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

// `hpfsctl check --remote` on a backing directory whose bucket lost an
// object and gained an orphan: both reported, exit 4; --repair deletes the
// orphan only (exit 1|4), and the remaining problem is still reported.
TEST(TierS3rver, HpfsctlCheckRemoteReportsAndRepairs) {
  const char* hpfsctl = std::getenv("HPFS_HPFSCTL");
  ASSERT_NE(hpfsctl, nullptr) << "HPFS_HPFSCTL is not set";
  auto server = TestServer::StartS3rver(kBucket);
  ASSERT_TRUE(server) << server.error();
  auto client = S3Client::Create(S3ClientOptions{
      .endpoint = (*server)->endpoint(),
      .bucket = kBucket,
      .credentials = {.access_key_id = TestServer::kAccessKeyId,
                      .secret_access_key = TestServer::kSecretAccessKey,
                      .session_token = ""},
  });
  ASSERT_TRUE(client);
  TempDir tmp;
  const std::string backing = tmp / "backing";
  ASSERT_TRUE(std::filesystem::create_directories(backing + "/sub"));
  TierStoreConfig config{.store = client->get(), .prefix = "check"};
  std::string id;
  {
    Options options;
    options.initial_meta.segment_size = 64 << 10;
    auto file = HPFile::Open(backing + "/sub/app.log", options);
    ASSERT_TRUE(file);
    ASSERT_TRUE((*file)->Append(PatternBytes(0, 200 << 10)));
    auto tiered = TieredFile::Open(**file, TieredFileOptions{.config = config});
    ASSERT_TRUE(tiered);
    ASSERT_TRUE((*tiered)->OffloadDue({.retain_bytes = 0}, 0));
    ASSERT_EQ((*tiered)->Stats().remote_segments, 3u);
    id = (*tiered)->file_id();
  }
  const std::string creds = tmp / "credentials";
  WriteFileText(creds, std::string("[default]\naws_access_key_id = ") + TestServer::kAccessKeyId +
                           "\naws_secret_access_key = " + TestServer::kSecretAccessKey + "\n");
  const std::string check = std::string(hpfsctl) + " check --remote --tier-url=s3://" + kBucket +
                            "/check --tier-endpoint=" + (*server)->endpoint() + " --tier-credentials=" + creds;
  auto [clean, clean_status] = RunShell(check + " " + backing);
  EXPECT_EQ(clean_status, 0) << clean;
  EXPECT_THAT(clean, ::testing::HasSubstr("checked 3 remote segments of 1 tiered files: 0 missing"));

  const std::string lost = TierObjectKey("check", id, {64 << 10, 64 << 10});
  const std::string orphan = TierObjectKey("check", id, {1 << 30, 64 << 10});
  ASSERT_TRUE((*client)->Delete(lost));
  ASSERT_TRUE((*client)->Put(orphan, PatternBytes(0, 100)));
  auto [found, found_status] = RunShell(check + " " + backing);
  EXPECT_EQ(found_status, 4) << found;
  EXPECT_THAT(found, ::testing::HasSubstr(lost + ": missing"));
  EXPECT_THAT(found, ::testing::HasSubstr(orphan + ": orphan"));
  auto [repaired, repaired_status] = RunShell(check + " --repair " + backing);
  EXPECT_EQ(repaired_status, 1 | 4) << repaired;
  EXPECT_THAT(repaired, ::testing::HasSubstr("(1 deleted)"));
  EXPECT_FALSE((*client)->Head(orphan));
  auto [after, after_status] = RunShell(check + " " + backing);
  EXPECT_EQ(after_status, 4) << after;
  EXPECT_THAT(after, ::testing::HasSubstr("0 orphans"));

  auto [usage, usage_status] = RunShell(std::string(hpfsctl) + " check --remote --tier-url=http://x " + backing);
  EXPECT_EQ(usage_status, 16) << usage;
}

}  // namespace
}  // namespace hpfile::testing
