// SPDX-License-Identifier: Apache-2.0
// One segment file of an HPFile and the offset arithmetic over a run of them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

namespace hpfile {

class Fd;

struct Segment {
  Segment(uint64_t base, uint64_t capacity) : base(base), capacity(capacity) {}

  // The file's name follows from these two (segment_name.h): a path per
  // segment would double what a segment costs in memory.
  const uint64_t base;
  const uint64_t capacity;
  // Where this segment's bytes end when it is not the tail. base + capacity in
  // a healthy file; a damaged file's short or overlong segments end earlier.
  uint64_t sealed_end = 0;

  uint64_t slot_end() const { return base + capacity; }

  // FdCache bookkeeping, guarded by the owner's segment map lock (see
  // fd_cache.h); `referenced` is also set by readers holding it shared.
  std::shared_ptr<Fd> cached_fd;
  bool in_cache = false;
  size_t cache_slot = 0;
  mutable std::atomic<bool> referenced{false};
  // Removed from the file (map lock): a descriptor opened for it is not cached.
  bool retired = false;
};

// Index of the segment whose slot holds `offset` in a base-ordered run, or -1
// when `offset` falls before the first segment, after the last slot, or in a
// gap between slots. The only place that maps an offset to a segment.
long FindSegmentIndex(const std::deque<std::shared_ptr<Segment>>& segments, uint64_t offset);

}  // namespace hpfile
