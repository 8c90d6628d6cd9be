// SPDX-License-Identifier: Apache-2.0
#include "core/fd_cache.h"

#include <utility>

namespace hpfile {

FdCache::~FdCache() {
  for (Segment* segment : ring_) {
    segment->cached_fd.reset();
    segment->in_cache = false;
  }
}

std::vector<std::shared_ptr<Fd>> FdCache::MakeRoom() {
  std::vector<std::shared_ptr<Fd>> evicted;
  while (ring_.size() >= limit_) {
    if (hand_ >= ring_.size()) hand_ = 0;
    Segment* candidate = ring_[hand_];
    // A second chance for every segment read since the hand last passed it.
    if (candidate->referenced.exchange(false, std::memory_order_relaxed)) {
      ++hand_;
      continue;
    }
    evicted.push_back(Remove(*candidate));
  }
  return evicted;
}

std::vector<std::shared_ptr<Fd>> FdCache::Insert(Segment& segment, std::shared_ptr<Fd> fd) {
  std::vector<std::shared_ptr<Fd>> evicted;
  if (segment.in_cache) {
    evicted.push_back(std::exchange(segment.cached_fd, std::move(fd)));
    return evicted;
  }
  evicted = MakeRoom();
  segment.cached_fd = std::move(fd);
  segment.in_cache = true;
  segment.referenced.store(true, std::memory_order_relaxed);
  segment.cache_slot = ring_.size();
  ring_.push_back(&segment);
  return evicted;
}

std::vector<std::shared_ptr<Fd>> FdCache::Clear() {
  std::vector<std::shared_ptr<Fd>> evicted;
  evicted.reserve(ring_.size());
  while (!ring_.empty()) evicted.push_back(Remove(*ring_.back()));
  hand_ = 0;
  return evicted;
}

std::shared_ptr<Fd> FdCache::Remove(Segment& segment) {
  if (!segment.in_cache) return nullptr;
  // Fill the hole with the last entry: O(1), and the order of a CLOCK ring
  // does not matter beyond the hand's sweep.
  Segment* last = ring_.back();
  ring_[segment.cache_slot] = last;
  last->cache_slot = segment.cache_slot;
  ring_.pop_back();
  segment.in_cache = false;
  return std::move(segment.cached_fd);
}

}  // namespace hpfile
