// SPDX-License-Identifier: Apache-2.0
// Tiered storage's reads against s3rver on 127.0.0.1 (started here; the
// s3rver path in $HPFS_S3RVER, as tests/tier/with_s3rver.sh sets it):
//   cold remote read: a sequential read of remote segments through an empty
//     chunk cache (ranged GETs, read-ahead, checksums, cache fill), against
//     curl alone downloading the same objects from the same server;
//   cached remote read: the same range once cached, against a local read of
//     an untiered HPFile of the same size (both from the page cache).
// Reads are 128 KiB, what FUSE hands a daemon. Same harness as core_bench:
// interleaved rounds, medians, per-round ratios.
#include <cstdio>
#include <cstdlib>

#include "core/hpfile.h"
#include "core/s3_client.h"
#include "core/tier_cache.h"
#include "core/tiered_file.h"
#include "tests/bench/bench_util.h"
#include "tests/tier/test_server.h"

namespace hpfile::bench {
namespace {

constexpr const char* kBucket = "hpfs-tier-bench";
constexpr size_t kReadSize = 128 * kKiB;
// A throughput below this fraction of its baseline is flagged in the table.
constexpr double kRatioFloor = 0.5;

struct Config : Flags {
  uint64_t segment_size = 16 * kMiB;
  uint64_t remote_segments = 8;  // 128 MiB remote
};

Config QuickConfig() {
  Config c;
  c.segment_size = 8 * kMiB;
  c.remote_segments = 4;
  return c;
}

Config TinyConfig() {
  Config c;
  c.segment_size = 1 * kMiB;
  c.remote_segments = 2;
  return c;
}

std::vector<std::byte> Pattern(uint64_t offset, size_t length) {
  std::vector<std::byte> out(length);
  for (size_t i = 0; i < length; ++i) out[i] = static_cast<std::byte>((offset + i) * 131 >> 3);
  return out;
}

std::unique_ptr<HPFile> MakeFile(const std::string& dir, const Config& config, uint64_t size) {
  Options options;
  options.initial_meta.segment_size = config.segment_size;
  auto file = Must(HPFile::Open(dir, options), "HPFile::Open");
  for (uint64_t off = 0; off < size; off += kMiB) Must(file->Append(Pattern(off, std::min(kMiB, size - off))), "Append");
  Must(file->Sync(), "Sync");
  return file;
}

// Reads [from, to) in kReadSize pieces with `read`.
template <class Read>
Measurement ReadRange(uint64_t from, uint64_t to, Read read) {
  std::vector<std::byte> buf(kReadSize);
  const Stopwatch watch;
  for (uint64_t off = from; off < to;) {
    const size_t n = read(off, std::span(buf).first(std::min<uint64_t>(kReadSize, to - off)));
    if (n == 0) Die("read returned nothing at " + std::to_string(off));
    off += n;
  }
  return watch.Stop((to - from) / kReadSize, to - from);
}

int Main(int argc, char** argv) {
  g_program = "tier_bench";
  const Config config = ParseArgs(argc, argv, "the result table", QuickConfig, TinyConfig);
  MakeScratch(config.parent_dir, "tier-bench");
  const std::string fs_type = ScratchFilesystemType();

  auto server = testing::TestServer::StartS3rver(kBucket);
  if (!server) Die("s3rver: " + server.error());
  auto client = Must(S3Client::Create(S3ClientOptions{
                         .endpoint = (*server)->endpoint(),
                         .bucket = kBucket,
                         .region = testing::TestServer::kRegion,
                         .credentials = {.access_key_id = testing::TestServer::kAccessKeyId,
                                         .secret_access_key = testing::TestServer::kSecretAccessKey,
                                         .session_token = ""},
                     }),
                     "S3Client::Create");
  TierStoreConfig store_config{.store = client.get(), .prefix = "bench"};

  const uint64_t remote_bytes = config.remote_segments * config.segment_size;
  const uint64_t size = remote_bytes + config.segment_size / 2;
  auto tiered_hp = MakeFile(g_scratch + "/tiered", config, size);
  auto local = MakeFile(g_scratch + "/local", config, size);
  auto cache = Must(ChunkCache::Open(store_config, ChunkCacheOptions{.dir = g_scratch + "/cache",
                                                                    .capacity_bytes = 2 * remote_bytes}),
                    "ChunkCache::Open");
  auto opened = TieredFile::Open(*tiered_hp, TieredFileOptions{.config = store_config, .source = cache.get()});
  if (!opened) Die("TieredFile::Open: " + opened.error().message);
  std::unique_ptr<TieredFile> tiered = std::move(*opened);
  auto offloaded = tiered->OffloadDue({.retain_bytes = 0}, 0);
  if (!offloaded || *offloaded != config.remote_segments) Die("offload failed");

  const Manifest manifest = tiered->GetManifest();
  std::string curl = "curl -sS --fail --user " + std::string(testing::TestServer::kAccessKeyId) + ":" +
                     testing::TestServer::kSecretAccessKey + " --aws-sigv4 aws:amz:" + testing::TestServer::kRegion + ":s3" +
                     // The SHA-256 of an empty body, as the S3 client sends for a GET.
                     " -H x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  for (const RemoteSegment& s : manifest.segments) {
    curl += " -o /dev/null " + (*server)->endpoint() + "/" + kBucket + "/" + TierObjectKey("bench", manifest.file_id, s.name());
  }
  auto tiered_read = [&](uint64_t off, std::span<std::byte> buf) {
    return Must(tiered->ReadAt(off, buf), "TieredFile::ReadAt");
  };

  std::vector<Workload> all;
  all.push_back(Workload{
      .name = "cold remote read",
      .variants = {
          Variant{.label = "curl", .run = [&] {
                    const Stopwatch watch;
                    if (std::system(curl.c_str()) != 0) Die("curl failed: " + curl);
                    return watch.Stop(remote_bytes / kReadSize, remote_bytes);
                  }},
          Variant{.label = "chunk cache fill", .run = [&] {
                    for (const RemoteSegment& s : manifest.segments) cache->Forget(manifest.file_id, s.name());
                    return ReadRange(0, remote_bytes, tiered_read);
                  }},
      }});
  all.push_back(Workload{
      .name = "cached remote read",
      .variants = {
          Variant{.label = "local HPFile", .run = [&] {
                    return ReadRange(0, remote_bytes, [&](uint64_t off, std::span<std::byte> buf) {
                      return Must(local->ReadAt(off, buf), "HPFile::ReadAt");
                    });
                  }},
          Variant{.label = "cached remote", .run = [&] {
                    // Fills what an earlier cold round dropped, untimed.
                    (void)ReadRange(0, remote_bytes, tiered_read);
                    return ReadRange(0, remote_bytes, tiered_read);
                  }},
      }});
  std::vector<Workload> workloads = SelectWorkloads(std::move(all), config.only);
  RunRounds(workloads, config.warmup_rounds, config.rounds);

  const Table table = ThroughputTable(workloads, kRatioFloor);
  const std::string legend = "Mode " + config.mode + ", " + std::to_string(config.rounds) + " rounds after " +
                             std::to_string(config.warmup_rounds) + " warm-up, " +
                             std::to_string(remote_bytes / kMiB) + " MiB remote in " +
                             std::to_string(config.segment_size / kMiB) + " MiB segments, s3rver on 127.0.0.1, " +
                             fs_type + " under " + config.parent_dir +
                             ". Cells: median [min-max]. Ratio: variant throughput / baseline throughput in the "
                             "same round. The tier's targets: cold >= 0.5 of curl, cached >= 0.9 of local.";
  std::printf("tier: remote reads vs curl and vs local reads\n%s\n\n%s\n", legend.c_str(), table.Text().c_str());
  std::fflush(stdout);
  if (!config.json_path.empty()) {
    WriteTextFile(config.json_path, "{\n  \"mode\": " + JsonString(config.mode) +
                                        ", \"rounds\": " + std::to_string(config.rounds) +
                                        ",\n  \"workloads\": " + WorkloadsJson(workloads, {.mb_per_s = true}) + "\n}\n");
  }
  if (!config.markdown_path.empty()) {
    WriteTextFile(config.markdown_path, "## tier: remote reads vs curl and vs local reads\n\n" + legend + "\n\n" +
                                            table.Markdown());
  }
  workloads.clear();
  tiered.reset();
  cache.reset();
  tiered_hp.reset();
  local.reset();
  RemoveScratch();
  return 0;
}

}  // namespace
}  // namespace hpfile::bench

int main(int argc, char** argv) { return hpfile::bench::Main(argc, argv); }
