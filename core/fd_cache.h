// SPDX-License-Identifier: Apache-2.0
// Bounded set of read descriptors for segments, so a file with any number of
// segments needs at most `limit` of them. Eviction follows the CLOCK policy:
// a close approximation of least-recently-used whose hit path only sets a flag,
// so readers that find their descriptor never write shared state but that one
// relaxed bit, and that only once per sweep of the hand.
//
// Externally synchronized by the owner's reader-writer lock (HPFile's segment
// map lock): Lookup needs it held shared, every other call held exclusively.
// Nothing here opens or closes a descriptor: evicted ones are handed back so
// the caller can close them after unlocking.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "core/io.h"
#include "core/segment.h"

namespace hpfile {

class FdCache {
 public:
  explicit FdCache(size_t limit) : limit_(limit == 0 ? 1 : limit) {}
  ~FdCache();

  // The descriptor cached for `segment`, or null. Lock held shared.
  std::shared_ptr<Fd> Lookup(const Segment& segment) const {
    if (!segment.in_cache) return nullptr;
    // Readers on other cores share this cache line: a store on every hit
    // would bounce it between them, so write the bit only when it is clear.
    if (!segment.referenced.load(std::memory_order_relaxed)) {
      segment.referenced.store(true, std::memory_order_relaxed);
    }
    return segment.cached_fd;
  }
  // Evicts until one more fits. Lock held exclusively.
  [[nodiscard]] std::vector<std::shared_ptr<Fd>> MakeRoom();
  // Caches `fd` for `segment` (replacing its current one). Lock held exclusively.
  [[nodiscard]] std::vector<std::shared_ptr<Fd>> Insert(Segment& segment, std::shared_ptr<Fd> fd);
  // Forgets `segment`'s descriptor. Lock held exclusively.
  [[nodiscard]] std::shared_ptr<Fd> Remove(Segment& segment);
  // Forgets every descriptor. Lock held exclusively.
  [[nodiscard]] std::vector<std::shared_ptr<Fd>> Clear();
  // Descriptors held. Lock held shared.
  size_t size() const { return ring_.size(); }

 private:
  const size_t limit_;
  std::vector<Segment*> ring_;  // the segments holding a descriptor
  size_t hand_ = 0;             // the next eviction candidate in ring_
};

}  // namespace hpfile
