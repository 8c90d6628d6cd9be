#include "core/fd_cache.h"

#include <fcntl.h>

namespace hpfile {

FdCache::~FdCache() {
  std::lock_guard lock(mu_);
  for (Segment* segment : lru_) {
    segment->cached_fd.reset();
    segment->in_lru = false;
  }
  lru_.clear();
}

std::list<std::shared_ptr<Fd>> FdCache::MakeRoomLocked() {
  std::list<std::shared_ptr<Fd>> evicted;
  while (lru_.size() >= limit_) {
    Segment* victim = lru_.back();
    lru_.pop_back();
    victim->in_lru = false;
    evicted.push_back(std::move(victim->cached_fd));
  }
  return evicted;
}

void FdCache::InsertLocked(Segment& segment, std::shared_ptr<Fd> fd) {
  segment.cached_fd = std::move(fd);
  lru_.push_front(&segment);
  segment.lru_position = lru_.begin();
  segment.in_lru = true;
}

Result<std::shared_ptr<Fd>> FdCache::Get(Segment& segment) {
  std::list<std::shared_ptr<Fd>> evicted;  // closed after the lock is released
  {
    std::lock_guard lock(mu_);
    if (segment.in_lru) {
      lru_.splice(lru_.begin(), lru_, segment.lru_position);
      return segment.cached_fd;
    }
    // Evict before opening, so the cache never holds more than the limit even
    // for a moment.
    if (!segment.retired) evicted = MakeRoomLocked();
  }
  evicted.clear();

  auto opened = Fd::Open(io_, segment.path, O_RDONLY);
  if (!opened) return std::unexpected(opened.error());
  auto fd = std::make_shared<Fd>(std::move(*opened));

  std::lock_guard lock(mu_);
  if (segment.retired) return fd;  // deleted meanwhile: serve this read, cache nothing
  if (segment.in_lru) {
    // Another reader opened it first; use theirs, ours closes on return.
    lru_.splice(lru_.begin(), lru_, segment.lru_position);
    return segment.cached_fd;
  }
  evicted = MakeRoomLocked();
  InsertLocked(segment, fd);
  return fd;
}

void FdCache::Put(Segment& segment, std::shared_ptr<Fd> fd) {
  std::list<std::shared_ptr<Fd>> evicted;
  std::lock_guard lock(mu_);
  if (segment.retired) return;
  if (segment.in_lru) {
    evicted.push_back(std::move(segment.cached_fd));
    lru_.erase(segment.lru_position);
    segment.in_lru = false;
  }
  auto more = MakeRoomLocked();
  evicted.splice(evicted.end(), more);
  InsertLocked(segment, std::move(fd));
}

void FdCache::Retire(Segment& segment) {
  std::shared_ptr<Fd> dropped;
  std::lock_guard lock(mu_);
  segment.retired = true;
  if (segment.in_lru) {
    lru_.erase(segment.lru_position);
    segment.in_lru = false;
    dropped = std::move(segment.cached_fd);
  }
}

bool FdCache::Holds(const Segment& segment, const Fd* fd) const {
  std::lock_guard lock(mu_);
  return segment.in_lru && segment.cached_fd.get() == fd;
}

size_t FdCache::size() const {
  std::lock_guard lock(mu_);
  return lru_.size();
}

}  // namespace hpfile
