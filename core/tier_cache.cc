// SPDX-License-Identifier: Apache-2.0
#include "core/tier_cache.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/format.h"
#include "core/str_cat.h"
#include "core/text_file.h"

namespace hpfile {
namespace {

constexpr std::string_view kChunkSuffix = ".chunk";

uint64_t ChunkCount(uint64_t size, uint64_t chunk_size) { return size / chunk_size + (size % chunk_size != 0); }

}  // namespace

ChunkCache::ChunkCache(const TierStoreConfig& config, ChunkCacheOptions options)
    : config_(config), options_(std::move(options)), io_(options_.io != nullptr ? *options_.io : PosixIo::Default()) {
  if (options_.readahead_chunks > 1) prefetcher_ = std::thread([this] { PrefetchLoop(); });
}

ChunkCache::~ChunkCache() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  jobs_cv_.notify_all();
  if (prefetcher_.joinable()) prefetcher_.join();
}

void ChunkCache::PrefetchLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    jobs_cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (stopping_) break;
    PrefetchJob job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    (void)Fetch(job.file_id, job.segment, job.chunk_size, job.first, job.count, 0, {});
    lock.lock();
    for (uint64_t i = 0; i < job.count; ++i) in_flight_.erase(ChunkName(job.file_id, job.segment.name(), job.first + i));
    in_flight_cv_.notify_all();
  }
  // Jobs never started: their chunks are no longer on their way.
  for (const PrefetchJob& job : jobs_) {
    for (uint64_t i = 0; i < job.count; ++i) in_flight_.erase(ChunkName(job.file_id, job.segment.name(), job.first + i));
  }
  jobs_.clear();
  in_flight_cv_.notify_all();
}

void ChunkCache::SchedulePrefetch(std::string_view file_id, const RemoteSegment& segment, uint64_t chunk_size,
                                  uint64_t index) {
  if (!prefetcher_.joinable()) return;
  const uint64_t chunks = segment.chunk_crcs.size();
  const uint64_t window_end = std::min<uint64_t>(chunks, index + 1 + options_.readahead_chunks);
  {
    std::lock_guard lock(mu_);
    if (stopping_ || jobs_.size() >= kMaxPrefetchJobs) return;
    uint64_t first = index + 1;
    auto ready = [&](uint64_t i) {
      const std::string name = ChunkName(file_id, segment.name(), i);
      return index_.contains(name) || in_flight_.contains(name);
    };
    while (first < window_end && ready(first)) ++first;
    if (first >= window_end) return;
    // One full batch from the first chunk missing, as a sequential miss takes.
    uint64_t count = 0;
    while (count < options_.readahead_chunks && first + count < chunks && !ready(first + count)) ++count;
    for (uint64_t i = 0; i < count; ++i) in_flight_.insert(ChunkName(file_id, segment.name(), first + i));
    jobs_.push_back(PrefetchJob{.file_id = std::string(file_id), .segment = segment, .chunk_size = chunk_size,
                                .first = first, .count = count});
  }
  jobs_cv_.notify_one();
}

bool ChunkCache::WaitForPrefetch(const std::string& name) {
  std::unique_lock lock(mu_);
  if (!in_flight_.contains(name)) return false;
  // Bounded: the fetch is, by the store's timeouts.
  in_flight_cv_.wait(lock, [&] { return !in_flight_.contains(name); });
  return true;
}

Result<std::unique_ptr<ChunkCache>> ChunkCache::Open(const TierStoreConfig& config, ChunkCacheOptions options) {
  if (config.store == nullptr || options.dir.empty() || options.max_attempts < 1) return Errno(EINVAL);
  std::unique_ptr<ChunkCache> cache(new ChunkCache(config, std::move(options)));
  Io& io = cache->io_;
  if (auto made = EnsureDirectory(io, cache->options_.dir, true); !made) return std::unexpected(made.error());
  auto names = io.ListDir(cache->options_.dir);
  if (!names) return std::unexpected(names.error());
  struct Found {
    std::string name;
    uint64_t size;
    timespec mtime;
  };
  std::vector<Found> found;
  for (const std::string& name : *names) {
    const std::string path = cache->PathOf(name);
    if (name.ends_with(format::kTempSuffix)) {
      (void)io.Unlink(path);  // a fill a crash interrupted
      continue;
    }
    if (!name.ends_with(kChunkSuffix)) continue;
    auto st = io.Stat(path);
    if (!st || !S_ISREG(st->st_mode)) continue;
    found.push_back({name, static_cast<uint64_t>(st->st_size), st->st_mtim});
  }
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    return a.mtime.tv_sec != b.mtime.tv_sec ? a.mtime.tv_sec < b.mtime.tv_sec : a.mtime.tv_nsec < b.mtime.tv_nsec;
  });
  std::vector<std::string> evicted;
  {
    std::lock_guard lock(cache->mu_);
    for (Found& f : found) {
      cache->lru_.push_back(f.name);
      cache->index_[f.name] = Entry{.size = f.size, .verified = false, .lru = std::prev(cache->lru_.end())};
      cache->bytes_ += f.size;
    }
    // A smaller tier_cache than at the last mount takes effect at once.
    evicted = cache->EvictLocked();
  }
  for (const std::string& path : evicted) (void)io.Unlink(path);
  return cache;
}

std::string ChunkCache::ChunkName(std::string_view file_id, SegmentName segment, uint64_t index) {
  char text[96];
  const int n = std::snprintf(text, sizeof(text), "-%016llx-%llx-%llx", static_cast<unsigned long long>(segment.base),
                              static_cast<unsigned long long>(segment.capacity), static_cast<unsigned long long>(index));
  return StrCat(file_id, std::string_view(text, static_cast<size_t>(n)), kChunkSuffix);
}

void ChunkCache::RemoveLocked(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return;
  bytes_ -= it->second.size;
  lru_.erase(it->second.lru);
  if (it->second.fd) open_.remove(name);
  index_.erase(it);
}

std::vector<std::string> ChunkCache::EvictLocked() {
  std::vector<std::string> paths;
  while (bytes_ > options_.capacity_bytes && !lru_.empty()) {
    const std::string name = lru_.front();
    RemoveLocked(name);
    paths.push_back(PathOf(name));
  }
  return paths;
}

bool ChunkCache::ReadCached(const std::string& name, uint32_t crc, uint64_t offset, std::span<std::byte> out) {
  std::shared_ptr<Fd> fd;
  bool verified = false;
  uint64_t size = 0;
  {
    std::lock_guard lock(mu_);
    auto it = index_.find(name);
    if (it == index_.end()) return false;
    lru_.splice(lru_.end(), lru_, it->second.lru);
    fd = it->second.fd;
    verified = it->second.verified;
    size = it->second.size;
  }
  auto drop = [&] {
    {
      std::lock_guard lock(mu_);
      RemoveLocked(name);
      ++stats_.bad_chunks;
    }
    (void)io_.Unlink(PathOf(name));
    return false;
  };
  if (offset + out.size() > size) return drop();
  if (!fd) {
    auto opened = Fd::Open(io_, PathOf(name), O_RDONLY);
    if (!opened) return drop();
    fd = std::make_shared<Fd>(std::move(*opened));
    std::lock_guard lock(mu_);
    auto it = index_.find(name);
    if (it != index_.end() && !it->second.fd) {
      it->second.fd = fd;
      open_.push_back(name);
      while (open_.size() > kOpenChunks) {
        auto oldest = index_.find(open_.front());
        if (oldest != index_.end()) oldest->second.fd.reset();
        open_.pop_front();
      }
    }
  }
  if (!verified) {
    // Not synced when written: a power loss may have left it short or stale.
    std::vector<std::byte> whole(size);
    auto n = ReadFull(io_, fd->get(), whole, 0);
    if (!n || *n != size || Crc32(whole) != crc) return drop();
    std::memcpy(out.data(), whole.data() + offset, out.size());
    std::lock_guard lock(mu_);
    if (auto it = index_.find(name); it != index_.end()) it->second.verified = true;
    return true;
  }
  auto n = ReadFull(io_, fd->get(), out, offset);
  if (!n || *n != out.size()) return drop();
  return true;
}

void ChunkCache::Store(const std::string& name, std::span<const std::byte> data) {
  if (data.size() > options_.capacity_bytes) return;
  std::string temp;
  {
    std::lock_guard lock(mu_);
    if (index_.contains(name)) return;
    temp = StrCat(name, ".", ++temp_counter_, format::kTempSuffix);
  }
  // A cache: no fsync. A chunk a power loss damaged fails its check at its
  // first use after the restart and is fetched again.
  const std::string temp_path = PathOf(temp);
  {
    auto fd = Fd::Open(io_, temp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!fd) return;
    if (!WriteFull(io_, fd->get(), data, 0)) {
      (void)io_.Unlink(temp_path);
      return;
    }
  }
  if (!io_.Rename(temp_path, PathOf(name))) {
    (void)io_.Unlink(temp_path);
    return;
  }
  std::vector<std::string> evicted;
  {
    std::lock_guard lock(mu_);
    if (!index_.contains(name)) {
      lru_.push_back(name);
      index_[name] = Entry{.size = data.size(), .verified = true, .lru = std::prev(lru_.end())};
      bytes_ += data.size();
      evicted = EvictLocked();
    }
  }
  for (const std::string& path : evicted) (void)io_.Unlink(path);
}

void ChunkCache::Log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

TierResult<void> ChunkCache::Fetch(std::string_view file_id, const RemoteSegment& segment, uint64_t chunk_size,
                                   uint64_t first, uint64_t count, uint64_t offset, std::span<std::byte> out) {
  const std::string key = TierObjectKey(config_.prefix, file_id, segment.name());
  const uint64_t start = first * chunk_size;
  const uint64_t end = std::min(segment.size, (first + count) * chunk_size);
  std::vector<std::byte> buffer(end - start);
  const bool prefetch = out.empty();
  std::string why;
  for (int attempt = 1; attempt <= (prefetch ? 1 : options_.max_attempts); ++attempt) {
    auto got = WithRetries(config_.retry, [&] { return config_.store->GetRange(key, start, buffer); });
    if (!got) {
      why = got.error().message;
      if (!got.error().retryable()) break;
      continue;
    }
    bool wanted_ok = false;
    for (uint64_t i = 0; i < count && start + i * chunk_size < end; ++i) {
      const auto piece = std::span(buffer).subspan(i * chunk_size, std::min(chunk_size, end - start - i * chunk_size));
      if (Crc32(piece) != segment.chunk_crcs[first + i]) {
        std::lock_guard lock(mu_);
        ++stats_.bad_chunks;
        continue;
      }
      if (i == 0) wanted_ok = true;
      Store(ChunkName(file_id, segment.name(), first + i), piece);
      std::lock_guard lock(mu_);
      if (prefetch || i > 0) ++stats_.prefetched;
    }
    if (wanted_ok) {
      if (!prefetch) std::memcpy(out.data(), buffer.data() + offset, out.size());
      return {};
    }
    why = StrCat("chunk ", first, " does not match its checksum");
  }
  if (prefetch) return std::unexpected(TierError{.err = EIO, .retryable = true, .message = why});
  const std::string line = StrCat("tier: read of ", key, " bytes [", start, ", ", end, ") failed after ",
                                  options_.max_attempts, " attempts: ", why);
  Log(line);
  // A reader sees EIO whatever the store said (403, 404, a timeout), as for
  // any failed read of a disk; the log line says which.
  return std::unexpected(TierError{.err = EIO, .retryable = true, .message = line});
}

TierResult<void> ChunkCache::ReadRemote(std::string_view file_id, const RemoteSegment& segment, uint64_t chunk_size,
                                        uint64_t offset, std::span<std::byte> out) {
  if (chunk_size == 0 || offset + out.size() > segment.size ||
      segment.chunk_crcs.size() != ChunkCount(segment.size, chunk_size)) {
    return std::unexpected(TierError{.err = EINVAL, .retryable = false, .message = "tier: read outside the object"});
  }
  const std::string key = TierObjectKey(config_.prefix, file_id, segment.name());
  const uint64_t chunks = segment.chunk_crcs.size();
  size_t done = 0;
  while (done < out.size()) {
    const uint64_t pos = offset + done;
    const uint64_t index = pos / chunk_size;
    const uint64_t in_chunk = pos % chunk_size;
    const uint64_t chunk_len = std::min(chunk_size, segment.size - index * chunk_size);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size() - done, chunk_len - in_chunk));
    const auto piece = out.subspan(done, n);
    const std::string name = ChunkName(file_id, segment.name(), index);
    bool sequential = index == 0;
    bool new_chunk = true;
    {
      std::lock_guard lock(mu_);
      auto it = last_chunk_.find(key);
      if (it != last_chunk_.end()) {
        sequential = sequential || it->second + 1 == index || it->second == index;
        new_chunk = it->second != index;
        it->second = index;
      } else {
        // Bounded: one entry per object read lately.
        if (last_chunk_.size() >= 4096) last_chunk_.clear();
        last_chunk_.emplace(key, index);
      }
    }
    if (sequential && new_chunk) SchedulePrefetch(file_id, segment, chunk_size, index);
    bool cached = ReadCached(name, segment.chunk_crcs[index], in_chunk, piece);
    if (!cached && WaitForPrefetch(name)) cached = ReadCached(name, segment.chunk_crcs[index], in_chunk, piece);
    if (cached) {
      std::lock_guard lock(mu_);
      ++stats_.hits;
    } else {
      uint64_t count = 1;
      if (sequential) {
        std::lock_guard lock(mu_);
        while (count < options_.readahead_chunks && index + count < chunks &&
               !index_.contains(ChunkName(file_id, segment.name(), index + count)) &&
               !in_flight_.contains(ChunkName(file_id, segment.name(), index + count))) {
          ++count;
        }
      }
      {
        std::lock_guard lock(mu_);
        ++stats_.misses;
      }
      if (auto fetched = Fetch(file_id, segment, chunk_size, index, count, in_chunk, piece); !fetched) return fetched;
    }
    done += n;
  }
  return {};
}

void ChunkCache::Forget(std::string_view file_id, SegmentName segment) {
  const std::string prefix = StrCat(ChunkName(file_id, segment, 0));
  const std::string stem = prefix.substr(0, prefix.size() - kChunkSuffix.size() - 1);  // without the index
  std::vector<std::string> paths;
  {
    std::lock_guard lock(mu_);
    std::vector<std::string> names;
    for (const auto& [name, entry] : index_) {
      if (name.starts_with(stem) && name.find('-', stem.size()) == std::string::npos) names.push_back(name);
    }
    for (const std::string& name : names) {
      RemoveLocked(name);
      paths.push_back(PathOf(name));
    }
  }
  for (const std::string& path : paths) (void)io_.Unlink(path);
}

ChunkCache::Stats ChunkCache::stats() const {
  std::lock_guard lock(mu_);
  Stats s = stats_;
  s.bytes = bytes_;
  s.chunks = index_.size();
  return s;
}

}  // namespace hpfile
