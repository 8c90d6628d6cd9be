// Bounded cache of read descriptors for segments, least recently used evicted
// first, so a file with any number of segments needs at most `limit` of them.
//
// Thread-safe. The mutex is held only for bookkeeping: opening and closing
// descriptors happen outside it, so one reader's open never delays another.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>

#include "core/io.h"
#include "core/result.h"
#include "core/segment.h"

namespace hpfile {

class FdCache {
 public:
  FdCache(Io& io, size_t limit) : io_(io), limit_(limit == 0 ? 1 : limit) {}
  ~FdCache();

  // A descriptor open on `segment`'s file (read-only unless one was Put). The
  // returned pointer keeps it open after eviction until released.
  [[nodiscard]] Result<std::shared_ptr<Fd>> Get(Segment& segment);
  // Caches a descriptor opened elsewhere (the writer's read-write one).
  void Put(Segment& segment, std::shared_ptr<Fd> fd);
  // Drops `segment`'s descriptor and never caches one for it again. Must be
  // called before a Segment leaves its file.
  void Retire(Segment& segment);
  // Descriptors held by the cache.
  size_t size() const;
  // Whether `fd` is the descriptor cached for `segment`.
  bool Holds(const Segment& segment, const Fd* fd) const;

 private:
  // Evicts until there is room for one more. Returns the evicted descriptors so
  // the caller can close them after unlocking.
  std::list<std::shared_ptr<Fd>> MakeRoomLocked();
  void InsertLocked(Segment& segment, std::shared_ptr<Fd> fd);

  Io& io_;
  const size_t limit_;
  mutable std::mutex mu_;
  std::list<Segment*> lru_;  // front = most recently used
};

}  // namespace hpfile
