// SPDX-License-Identifier: Apache-2.0
// RecordLog's snapshots: taking one, reading it, copying into the live ones
// the bytes a prune or truncate is about to destroy in place, and the
// ownership of the log directory that snapshots share with the log.
#include <fcntl.h>
#include <pthread.h>

#include <algorithm>
#include <map>
#include <thread>
#include <utility>

#include "core/record_internal.h"

namespace hpfile {

using namespace record_detail;

namespace {

// The owners alive in this process, by directory identity.
struct OwnerRegistry {
  std::mutex mu;
  std::map<std::pair<dev_t, ino_t>, std::weak_ptr<RecordLogOwner>> owners;  // mu

  static OwnerRegistry& Get() {
    // Never destroyed: snapshots may outlive the statics.
    static OwnerRegistry* const registry = [] {
      auto* made = new OwnerRegistry;
      // A forked child inherits the descriptors, not the ownership: its
      // opens must find the logs locked, as any other process does.
      ::pthread_atfork([] { Get().mu.lock(); }, [] { Get().mu.unlock(); },
                       [] {
                         Get().owners.clear();
                         Get().mu.unlock();
                       });
      return made;
    }();
    return *registry;
  }

  // The owner of DIR for a RecordLog about to open it: the one a closed log
  // of this process left to its snapshots, or a new one holding the lock.
  // EBUSY when a RecordLog object has it open, or another process holds it.
  Result<std::shared_ptr<RecordLogOwner>> Acquire(Io& io, const std::string& dir) {
    auto fd = Fd::Open(io, dir, O_RDONLY | O_DIRECTORY);
    if (!fd) return std::unexpected(fd.error());
    auto st = io.Fstat(fd->get());
    if (!st) return std::unexpected(st.error());
    const std::pair<dev_t, ino_t> key{st->st_dev, st->st_ino};
    std::unique_lock lock(mu);
    for (auto it = owners.find(key); it != owners.end(); it = owners.find(key)) {
      if (auto owner = it->second.lock()) {
        if (owner->log_open) return Errno(EBUSY);
        owner->log_open = true;
        return owner;
      }
      // Its last holder is letting go: once its destructor has closed the
      // descriptor (and erased the entry) the lock is free.
      lock.unlock();
      std::this_thread::yield();
      lock.lock();
    }
    if (auto locked = io.TryLockExclusive(fd->get()); !locked) return std::unexpected(locked.error());
    auto owner = std::make_shared<RecordLogOwner>();
    owner->lock = std::move(*fd);
    owner->key = key;
    owner->log_open = true;
    owners[key] = owner;
    return owner;
  }

  void Release(RecordLogOwner& owner) {
    std::lock_guard lock(mu);
    owner.log_open = false;
  }
};

}  // namespace

Result<std::shared_ptr<RecordLogOwner>> AcquireRecordLogOwner(Io& io, const std::string& dir) {
  return OwnerRegistry::Get().Acquire(io, dir);
}

void ReleaseRecordLogOwner(RecordLogOwner& owner) { OwnerRegistry::Get().Release(owner); }

RecordLogOwner::~RecordLogOwner() {
  OwnerRegistry& registry = OwnerRegistry::Get();
  std::lock_guard guard(registry.mu);
  lock.Reset();
  if (auto it = registry.owners.find(key); it != registry.owners.end() && it->second.expired()) {
    registry.owners.erase(it);
  }
}

std::vector<std::shared_ptr<RecordSnapshotState>> RecordLogOwner::LiveSnapshots(uint64_t generation) {
  std::vector<std::shared_ptr<RecordSnapshotState>> live;
  std::lock_guard lock(mu);
  std::erase_if(snapshots, [](const std::weak_ptr<RecordSnapshotState>& w) { return w.expired(); });
  for (auto& weak : snapshots) {
    if (auto state = weak.lock(); state && state->generation == generation) live.push_back(std::move(state));
  }
  return live;
}

void RecordLogOwner::AddSnapshot(std::weak_ptr<RecordSnapshotState> snapshot) {
  std::lock_guard lock(mu);
  std::erase_if(snapshots, [](const std::weak_ptr<RecordSnapshotState>& w) { return w.expired(); });
  snapshots.push_back(std::move(snapshot));
}

Result<std::vector<std::byte>> RecordSnapshot::Read(uint64_t position) const {
  std::vector<std::byte> out;
  if (auto got = ReadInto(position, out); !got) return std::unexpected(got.error());
  return out;
}

Result<void> RecordSnapshot::ReadInto(uint64_t position, std::vector<std::byte>& out) const {
  return state_->ReadInto(position, out);
}

uint64_t RecordSnapshot::First() const { return state_->first; }
uint64_t RecordSnapshot::Size() const { return state_->end; }

Result<RecordSnapshot> RecordLog::Snapshot() const {
  auto state = std::make_shared<RecordSnapshotState>();
  state->io = &io_;
  state->owner = owner_;
  state->element_size = element_size_;
  // Held shared throughout: the figures, the generation and the pending
  // elements stay put, and a prune cannot start destroying bytes before this
  // snapshot is registered to receive them.
  std::shared_lock lock(mu_);
  const RecordGeneration& gen = *gen_;
  state->generation = gen.number;
  state->base = gen.base;
  state->first = first_.load();
  state->flushed_end = std::max(state->first, rewind_.value_or(flushed_end_.load()));
  state->end = state->flushed_end + pending_.ends.size();
  state->pending_bytes = pending_.bytes;
  state->pending_ends = pending_.ends;
  if (state->first < state->flushed_end) {
    if (gen.fixed()) {
      if (auto mapped = state->data.Map(*gen.data, gen.FixedOffset(state->first), gen.FixedOffset(state->flushed_end));
          !mapped) {
        return std::unexpected(mapped.error());
      }
    } else {
      auto first_entry = gen.ReadEntry(state->first);
      if (!first_entry) return std::unexpected(first_entry.error());
      auto last_entry = gen.ReadEntry(state->flushed_end - 1);
      if (!last_entry) return std::unexpected(last_entry.error());
      if (auto mapped = state->index.Map(*gen.index, gen.IndexOffset(state->first), gen.IndexOffset(state->flushed_end));
          !mapped) {
        return std::unexpected(mapped.error());
      }
      if (auto mapped = state->data.Map(*gen.data, first_entry->offset, last_entry->end()); !mapped) {
        return std::unexpected(mapped.error());
      }
    }
  }
  owner_->AddSnapshot(state);
  return RecordSnapshot(std::move(state));
}

Result<void> RecordLog::PreserveForSnapshots(bool index, const std::string& segment_path, uint64_t begin,
                                             uint64_t end) {
  if (begin >= end) return {};
  std::vector<std::shared_ptr<RecordSnapshotState>> live = owner_->LiveSnapshots(gen_->number);
  if (live.empty()) return {};
  // A snapshot may see other files at these offsets (a truncate deleted the
  // ones it holds and appends made new ones): only the segment about to be
  // changed in place is copied from.
  auto target = io_.Stat(segment_path);
  if (!target) return std::unexpected(target.error());
  const HPFile& file = index ? *gen_->index : *gen_->data;
  for (auto& state : live) {
    FrozenFile& frozen = index ? state->index : state->data;
    const uint64_t lo = std::max({begin, frozen.begin, file.Head()});
    const uint64_t hi = std::min(end, frozen.end);
    if (lo >= hi) continue;
    auto piece = std::upper_bound(frozen.pieces.begin(), frozen.pieces.end(), lo,
                                  [](uint64_t value, const FrozenFile::Piece& p) { return value < p.begin; });
    if (piece != frozen.pieces.begin()) --piece;
    for (; piece != frozen.pieces.end() && piece->begin < hi; ++piece) {
      const uint64_t from_piece = std::max(lo, piece->begin);
      const uint64_t to_piece = std::min(hi, piece->begin + piece->length);
      if (from_piece >= to_piece) continue;
      auto st = io_.Fstat(piece->fd->get());
      if (!st) return std::unexpected(st.error());
      if (st->st_dev != target->st_dev || st->st_ino != target->st_ino) continue;
      // Only this writer adds overlays, so reading them unlocked is safe here.
      for (auto [from, to] : frozen.Uncovered(from_piece, to_piece)) {
        std::vector<std::byte> bytes(to - from);
        auto n = file.ReadAt(from, bytes);
        if (!n) return std::unexpected(n.error());
        if (*n != bytes.size()) return Errno(EIO);
        std::unique_lock lock(frozen.mu);
        frozen.overlays.emplace(from, std::move(bytes));
      }
    }
  }
  return {};
}

// Segments wholly past `n` are deleted (the snapshots' descriptors keep them);
// only the one holding `n` is cut in place.
Result<void> RecordLog::PreserveTruncate(bool index, uint64_t n) {
  const HPFile& file = index ? *gen_->index : *gen_->data;
  for (const SegmentInfo& s : file.Segments()) {
    if (s.base <= n && n < s.base + s.capacity) {
      return PreserveForSnapshots(index, file.dir() + "/" + s.file_name, n,
                                  std::min(s.base + s.capacity, file.Size()));
    }
  }
  return {};
}

// Segments wholly below `n` are deleted; the first one kept is punched below
// `n` (a full tail ending at `n` may be kept, and punched whole).
Result<void> RecordLog::PreservePrune(bool index, uint64_t n) {
  const HPFile& file = index ? *gen_->index : *gen_->data;
  for (const SegmentInfo& s : file.Segments()) {
    if (s.base < n && n <= s.base + s.capacity) {
      if (auto kept = PreserveForSnapshots(index, file.dir() + "/" + s.file_name, s.base, n); !kept) return kept;
    }
  }
  return {};
}

}  // namespace hpfile
