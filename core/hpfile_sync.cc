// SPDX-License-Identifier: Apache-2.0
// HPFile's durability: Sync, its two halves (BeginSync, FinishSync) and the
// meta writes.
#include "core/hpfile.h"

#include <fcntl.h>

#include <algorithm>

namespace hpfile {

// ---- durability ----------------------------------------------------------

Result<void> HPFile::WriteMetaIfDirtySyncLocked() {
  Meta snapshot;
  {
    std::lock_guard lock(meta_mu_);
    if (!meta_dirty_) return {};
    meta_dirty_ = false;
    snapshot = meta_;
  }
  snapshot.head = Head();
  auto written =
      WriteMetaAtomically(io_, dir_, snapshot, meta_unsynced_ ? Durability::kDeferred : Durability::kSynced);
  if (!written) {
    std::lock_guard lock(meta_mu_);
    meta_dirty_ = true;
    return written;
  }
  durable_head_.store(snapshot.head, std::memory_order_release);
  return written;
}

Result<void> HPFile::WriteMetaIfDirty() {
  std::lock_guard lock(sync_mu_);
  return WriteMetaIfDirtySyncLocked();
}

Result<void> HPFile::Sync() {
  auto pending = BeginSync();
  if (!pending) return std::unexpected(pending.error());
  auto synced = SyncSegments(*pending);
  return FinishSync(std::move(*pending), synced);
}

HPFile::PendingSync::PendingSync(PendingSync&& other) noexcept
    : file_(std::exchange(other.file_, nullptr)),
      sync_lock_(std::move(other.sync_lock_)),
      dirty_(std::move(other.dirty_)),
      dir_dirty_(other.dir_dirty_),
      inherited_(other.inherited_),
      tail_(std::move(other.tail_)),
      tail_fd_(std::move(other.tail_fd_)),
      target_(other.target_) {}

HPFile::PendingSync::~PendingSync() {
  if (file_ != nullptr) file_->ReturnUnsynced(*this);
}

Result<HPFile::PendingSync> HPFile::BeginSync() {
  if (damage_) return Errno(EIO);
  std::unique_lock sync_lock(sync_mu_);
  // Linux marks the pages of a failed write-back clean and reports the error
  // once, so an fdatasync that failed may succeed next time without the data
  // ever reaching the disk. Reporting success then would be a lie: once one
  // failed, no Sync of this file succeeds again (as PostgreSQL decided).
  if (sync_failure_.load(std::memory_order_acquire)) return Errno(EIO);
  std::lock_guard lock(writer_mu_);
  if (auto flushed = FlushLocked(); !flushed) return std::unexpected(flushed.error());
  PendingSync pending(*this);
  pending.sync_lock_ = std::move(sync_lock);
  pending.dirty_.swap(dirty_segments_);
  pending.dir_dirty_ = std::exchange(dir_dirty_, false);
  pending.inherited_ = std::exchange(inherited_unsynced_, false);
  pending.tail_ = tail_segment_;
  pending.tail_fd_ = tail_fd_;
  pending.target_ = Size();
  sync_low_water_ = pending.target_;
  return pending;
}

Result<void> HPFile::SyncSegments(const PendingSync& pending) {
  if (pending.inherited_) {
    // What the file held when it was opened may sit unsynced in the page
    // cache: an earlier process need not have synced it before it closed
    // or died, and nothing on disk says which of its segments it did sync.
    // One syncfs of the backing filesystem makes all of it durable, with
    // everything written since (segments, their entries, the meta), at a
    // cost that follows the filesystem's dirty pages instead of one
    // fdatasync per segment. Its failure may be a write-back error of any
    // file there, ours included, which Linux reports once: so, as for a
    // failed fdatasync, no later Sync of this file claims success.
    if (auto synced = io_.Syncfs(dir_lock_.get()); !synced) {
      sync_failure_text_ = "syncfs of the filesystem holding " + dir_ + " failed: " + synced.error().message();
      sync_failure_.store(true, std::memory_order_release);
      return synced;
    }
    return {};
  }
  // Write-back of every segment in a batch starts before the first
  // fdatasync waits: the disk gets their data at once, and on a journaling
  // filesystem the first commit carries the others' allocations, instead of
  // one commit and one cache flush per segment in turn. Batches bound the
  // descriptors held open beyond the segment cache.
  constexpr size_t kSyncBatch = 64;
  struct Batched {
    std::shared_ptr<Fd> fd;
    const Segment* segment;
  };
  const auto& dirty = pending.dirty_;
  std::vector<Batched> batch;
  for (size_t first = 0; first < dirty.size(); first += kSyncBatch) {
    batch.clear();
    for (size_t i = first; i < std::min(dirty.size(), first + kSyncBatch); ++i) {
      std::shared_ptr<Fd> fd = dirty[i] == pending.tail_ ? pending.tail_fd_ : nullptr;
      if (!fd) {
        auto cached = SegmentFd(dirty[i]);
        if (!cached) {
          if (IsErrno(cached.error(), ENOENT)) continue;  // deleted meanwhile: nothing to keep
          return std::unexpected(cached.error());
        }
        fd = *cached;
      }
      batch.push_back({std::move(fd), dirty[i].get()});
    }
    if (batch.size() > 1) {
      for (const Batched& batched : batch) io_.StartWriteback(batched.fd->get());
    }
    for (const Batched& batched : batch) {
      if (auto synced = io_.Fdatasync(batched.fd->get()); !synced) {
        sync_failure_text_ = "fdatasync of " + SegmentPath(*batched.segment) + " failed: " + synced.error().message();
        sync_failure_.store(true, std::memory_order_release);
        return std::unexpected(synced.error());
      }
    }
  }
  if (meta_unsynced_) {
    // The directory's sync makes the meta's name durable: its bytes first.
    auto meta = Fd::Open(io_, dir_ + "/" + std::string(format::kMetaName), O_RDONLY);
    if (!meta) return std::unexpected(meta.error());
    if (auto synced = io_.Fsync(meta->get()); !synced) return synced;
    return SyncDir(io_, dir_);
  }
  if (pending.dir_dirty_) return SyncDir(io_, dir_);
  return {};
}

void HPFile::ReturnUnsynced(PendingSync& pending) {
  // Nothing of it is known durable: the next Sync syncs it all again.
  std::lock_guard lock(writer_mu_);
  pending.dirty_.insert(pending.dirty_.end(), dirty_segments_.begin(), dirty_segments_.end());
  dirty_segments_.swap(pending.dirty_);
  dir_dirty_ = dir_dirty_ || pending.dir_dirty_;
  inherited_unsynced_ = inherited_unsynced_ || pending.inherited_;
  pending.file_ = nullptr;
}

Result<void> HPFile::FinishSync(PendingSync pending, const Result<void>& data_synced) {
  if (!data_synced) {
    ReturnUnsynced(pending);
    return data_synced;
  }
  pending.file_ = nullptr;
  // Everything the file wrote is durable now (SyncSegments, or the caller's
  // sync of the whole filesystem), the meta of a new file included.
  meta_unsynced_ = false;
  if (auto written = WriteMetaIfDirtySyncLocked(); !written) return written;

  std::lock_guard lock(writer_mu_);
  durable_size_.store(std::min({pending.target_, sync_low_water_, Size()}), std::memory_order_release);
  return {};
}

std::optional<std::string> HPFile::SyncFailure() const {
  if (!sync_failure_.load(std::memory_order_acquire)) return std::nullopt;
  return sync_failure_text_;
}

}  // namespace hpfile
