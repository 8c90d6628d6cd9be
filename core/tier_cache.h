// SPDX-License-Identifier: Apache-2.0
// Reads of remote segments: the RemoteSegmentSource interface TieredFile
// (core/tiered_file.h) reads remote ranges through, and ChunkCache, its
// implementation: ranged GETs into a bounded on-disk LRU of chunks.
//
// A chunk is the manifest's chunk_size piece of one object (the last one
// shorter), stored as one file in the cache directory, written under a
// temporary name and renamed, so a reader never sees half a chunk. Every
// chunk fetched is checked against the manifest's CRC-32 before it is kept
// or returned, and a chunk found on disk at startup is checked once before
// its first use (it was not synced: a power loss may have left it short or
// stale), so neither a store's short or wrong answer nor a damaged cache file
// reaches a reader. A chunk that fails its check is fetched again, up to
// `max_attempts` fetches in all, then the read fails with EIO and one log
// line naming the object.
//
// Read-ahead: a read that continues where the previous read of the same
// object stopped (or starts at the object's start) fetches up to
// `readahead_chunks` chunks in one GET, since one large GET costs about what
// one small one does in latency, and each time it enters a new chunk it
// keeps the next `readahead_chunks` chunks cached or on their way: a
// background thread fetches them (at most kMaxPrefetchJobs GETs queued), so
// the store's transfer overlaps the reader's work. A reader that needs a
// chunk being prefetched waits for that fetch rather than asking twice.
//
// Thread-safety: safe from any number of threads. Fetches run without the
// index lock; two readers missing the same chunk at once may both fetch it.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/io.h"
#include "core/object_store.h"
#include "core/tier_manifest.h"
#include "core/tier_uploader.h"

namespace hpfile {

class RemoteSegmentSource {
 public:
  virtual ~RemoteSegmentSource() = default;
  // Reads exactly out.size() bytes at `offset` of `segment` (a line of the
  // manifest of file `file_id`, whose chunk size is `chunk_size`) into `out`.
  // The range lies within segment.size. EIO (or the store's errno) when the
  // bytes cannot be had within the source's bounds.
  [[nodiscard]] virtual TierResult<void> ReadRemote(std::string_view file_id, const RemoteSegment& segment,
                                                    uint64_t chunk_size, uint64_t offset,
                                                    std::span<std::byte> out) = 0;
  // The object was dropped: whatever the source keeps of it can go.
  virtual void Forget(std::string_view file_id, SegmentName segment) {
    (void)file_id;
    (void)segment;
  }
};

struct ChunkCacheOptions {
  // The cache directory (created if missing), e.g. BACKING/.hpfs-tier-cache.
  std::string dir;
  // Bytes of chunks kept at most; the least recently used go first. A
  // chunk larger than this is returned to its reader but not kept.
  uint64_t capacity_bytes = 1ull << 30;
  // Chunks one sequential miss fetches at most (itself included).
  size_t readahead_chunks = 8;
  // Fetches of one chunk at most (each a store call with the retries of
  // config.retry for transport errors), then EIO.
  int max_attempts = 3;
  // Told one line per read that failed, naming the object; unset: stderr.
  std::function<void(const std::string&)> log;
  Io* io = nullptr;  // nullptr: PosixIo::Default()
};

class ChunkCache final : public RemoteSegmentSource {
 public:
  // Opens the cache in options.dir: chunks already there are indexed (oldest
  // modification first, as least recently used) and temp files removed.
  [[nodiscard]] static Result<std::unique_ptr<ChunkCache>> Open(const TierStoreConfig& config,
                                                                ChunkCacheOptions options);

  TierResult<void> ReadRemote(std::string_view file_id, const RemoteSegment& segment, uint64_t chunk_size,
                              uint64_t offset, std::span<std::byte> out) override;

  // Drops every cached chunk of the object (after it was deleted, or so a
  // test can read cold).
  void Forget(std::string_view file_id, SegmentName segment) override;

  struct Stats {
    uint64_t hits = 0;        // chunks served from the cache
    uint64_t misses = 0;      // chunks fetched for a reader
    uint64_t prefetched = 0;  // chunks fetched ahead of a reader
    uint64_t bad_chunks = 0;  // fetched or cached chunks that failed their check
    uint64_t bytes = 0;       // bytes cached now
    uint64_t chunks = 0;      // chunks cached now
  };
  Stats stats() const;

 private:
  struct Entry {
    uint64_t size = 0;
    bool verified = false;  // checked since this process opened the cache
    std::list<std::string>::iterator lru;
    // Open while the chunk is among the kOpenChunks most recently opened, so
    // a reader of cached data pays one pread, as a local read does.
    std::shared_ptr<Fd> fd;
  };
  static constexpr size_t kOpenChunks = 32;
  ChunkCache(const TierStoreConfig& config, ChunkCacheOptions options);
 public:
  ~ChunkCache() override;
  ChunkCache(const ChunkCache&) = delete;
  ChunkCache& operator=(const ChunkCache&) = delete;

 private:
  struct PrefetchJob {
    std::string file_id;
    RemoteSegment segment;
    uint64_t chunk_size = 0;
    uint64_t first = 0;
    uint64_t count = 0;
  };
  static constexpr size_t kMaxPrefetchJobs = 2;
  // Queues a fetch of the chunks after `index` that are neither cached nor
  // on their way, up to readahead_chunks ahead.
  void SchedulePrefetch(std::string_view file_id, const RemoteSegment& segment, uint64_t chunk_size,
                        uint64_t index);
  void PrefetchLoop();
  // Waits while the chunk is being prefetched; true if it was.
  bool WaitForPrefetch(const std::string& name);

  static std::string ChunkName(std::string_view file_id, SegmentName segment, uint64_t index);
  // The chunk from the cache when there and sound.
  bool ReadCached(const std::string& name, uint32_t crc, uint64_t offset, std::span<std::byte> out);
  // Fetches chunks [first, first + count) of the object, checks and caches
  // them; `out` is filled from chunk `first` at `offset`. A prefetch (empty
  // `out`) makes one attempt and logs nothing: the reader that needs the
  // chunk fetches it again and reports.
  TierResult<void> Fetch(std::string_view file_id, const RemoteSegment& segment, uint64_t chunk_size,
                         uint64_t first, uint64_t count, uint64_t offset, std::span<std::byte> out);
  void Store(const std::string& name, std::span<const std::byte> data);
  // Drops entries from the LRU end until the cache fits; returns the paths
  // to unlink (after the lock is released).
  std::vector<std::string> EvictLocked();
  void RemoveLocked(const std::string& name);
  std::string PathOf(const std::string& name) const { return options_.dir + "/" + name; }
  void Log(const std::string& line) const;

  const TierStoreConfig config_;
  const ChunkCacheOptions options_;
  Io& io_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> index_;
  std::list<std::string> lru_;  // front: least recently used
  uint64_t bytes_ = 0;
  // Per object key: the last chunk a reader asked for.
  std::map<std::string, uint64_t, std::less<>> last_chunk_;
  // Chunks whose Entry holds a descriptor, oldest opened first.
  std::list<std::string> open_;
  Stats stats_;
  uint64_t temp_counter_ = 0;
  // Prefetching: chunks queued or being fetched, the queue, its thread.
  std::set<std::string> in_flight_;
  std::deque<PrefetchJob> jobs_;
  bool stopping_ = false;
  std::condition_variable jobs_cv_;
  std::condition_variable in_flight_cv_;
  std::thread prefetcher_;
};

}  // namespace hpfile
