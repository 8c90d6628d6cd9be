// SPDX-License-Identifier: Apache-2.0
// HPFile's mutations of the file's bounds: Truncate and GrowTo, PruneHead with its head
// punch, and retention.
#include "core/hpfile.h"

#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>

namespace hpfile {

Result<void> HPFile::ShrinkLocked(uint64_t n) {
  const uint64_t old_size = Size();
  const uint64_t old_head = Head();
  // On failure the file ends at `end`, where the segments still on disk end.
  auto fail = [&](uint64_t end, std::error_code error) -> Result<void> {
    head_.store(std::min(old_head, end), std::memory_order_release);
    size_.store(end, std::memory_order_release);
    flushed_size_.store(end, std::memory_order_release);
    return std::unexpected(error);
  };
  // Readers must stop asking for bytes above n before any of them go.
  size_.store(n, std::memory_order_release);
  if (n < Head()) {
    // Appends will land below the old head: no deferred punch computed with
    // it may still be running.
    { std::lock_guard punch_done(punch_mu_); }
    head_.store(n, std::memory_order_release);
    std::lock_guard lock(meta_mu_);
    meta_dirty_ = true;
  }
  sync_low_water_ = std::min(sync_low_water_, n);
  durable_size_.store(std::min(DurableSize(), n), std::memory_order_release);

  // Without segments only the meta says where the file ends, and a crash
  // must not find it saying an older head: the file would reopen shorter,
  // or with later appends below its head.
  auto record_head = [&] {
    {
      std::lock_guard lock(meta_mu_);
      meta_dirty_ = true;
    }
    return WriteMetaIfDirtySyncLocked();
  };
  if (segments_.empty() && n < old_head) {
    if (auto recorded = record_head(); !recorded) return fail(old_size, recorded.error());
  }
  // Newest first, so an interruption leaves a contiguous run.
  uint64_t end = old_size;
  for (;;) {
    if (segments_.empty()) break;
    std::shared_ptr<Segment> newest = segments_.back();
    // Once n reaches down to the head, the file is empty and keeps no segment.
    if (newest->base < n && n > Head()) break;
    if (segments_.size() == 1) {
      // The last segment keeps the end until the meta does: it is cut to the
      // new end and synced (a power loss must not bring its bytes back under
      // the lower head), then the meta is written, and only then it goes.
      const uint64_t cut_end = std::max(n, newest->base);
      auto fd = TailFdLocked();
      Result<void> recorded = fd ? io_.Ftruncate(*fd, cut_end - newest->base) : std::unexpected(fd.error());
      if (recorded) {
        end = cut_end;
        recorded = io_.Fdatasync(*fd);
      }
      if (recorded) recorded = record_head();
      if (!recorded) return fail(end, recorded.error());
    }
    if (auto removed = DiscardSegmentFile(newest->path); !removed) return fail(end, removed.error());
    DropSegmentLocked(/*newest=*/true);
    end = newest->base;
  }
  if (!segments_.empty() && end > n) {
    auto fd = TailFdLocked();
    Result<void> cut = fd ? io_.Ftruncate(*fd, n - tail_segment_->base) : std::unexpected(fd.error());
    if (!cut) return fail(end, cut.error());
    MarkDirtyLocked(tail_segment_);
  }
  flushed_size_.store(n, std::memory_order_release);
  return {};
}

bool HPFile::TruncateLeavesNoSegment(uint64_t n) const { return n < Size() && n <= Head(); }

Result<void> HPFile::Truncate(uint64_t n) {
  // A truncate that leaves no segment writes the meta, under sync_mu_, which
  // is taken before writer_mu_ (as Sync takes them): so the check is repeated
  // once both are held.
  std::unique_lock sync_lock(sync_mu_, std::defer_lock);
  std::unique_lock lock(writer_mu_);
  while (TruncateLeavesNoSegment(n) && !sync_lock.owns_lock()) {
    lock.unlock();
    sync_lock.lock();
    lock.lock();
  }
  if (auto ok = CheckWritable(); !ok) return ok;
  const uint64_t size = Size();
  if (n == size) return {};
  if (n > size) return GrowLocked(n);

  // Odd while bytes may change under a reader (see PreReader).
  truncate_generation_.fetch_add(1, std::memory_order_acq_rel);
  Result<void> status;
  const uint64_t flushed = flushed_size_.load(std::memory_order_relaxed);
  if (n >= flushed) {
    std::lock_guard buffer_lock(buffer_mu_);
    buffer_.resize(n - flushed);
    size_.store(n, std::memory_order_release);
  } else {
    {
      std::lock_guard buffer_lock(buffer_mu_);
      buffer_.clear();
    }
    status = ShrinkLocked(n);
  }
  truncate_generation_.fetch_add(1, std::memory_order_acq_rel);
  return status;
}

Result<void> HPFile::GrowTo(uint64_t n) {
  std::lock_guard lock(writer_mu_);
  if (auto ok = CheckWritable(); !ok) return ok;
  if (n <= Size()) return {};
  return GrowLocked(n);
}

Result<void> HPFile::GrowLocked(uint64_t n) {
  const uint64_t size = Size();
  if (!FitsMaxFileSize(size, n - size)) return Errno(EFBIG);
  // The zeros go after the backing files' end, so the write buffer goes first.
  if (auto flushed = FlushLocked(); !flushed) return flushed;
  auto end = ExtendLocked(n - size, {});
  if (!end) return std::unexpected(end.error());
  flushed_size_.store(*end, std::memory_order_release);
  size_.store(*end, std::memory_order_release);
  return {};
}

Result<HPFile::HeadPunch> HPFile::HeadPunchLocked() {
  const uint64_t head = Head();
  if (segments_.empty() || segments_.front()->base >= head) return HeadPunch{};
  const std::shared_ptr<Segment>& first = segments_.front();
  HeadPunch punch{.length = std::min(head, first->sealed_end) - first->base};
  if (first == tail_segment_ && tail_fd_) {
    punch.fd = tail_fd_;
  } else {
    // A read-only cached descriptor cannot punch.
    auto opened = Fd::Open(io_, first->path, O_WRONLY);
    if (!opened) return std::unexpected(opened.error());
    punch.fd = std::make_shared<Fd>(std::move(*opened));
  }
  return punch;
}

Result<void> HPFile::RunHeadPunch(const HeadPunch& punch) {
  if (!punch.fd) return {};
  auto punched = io_.Fallocate(punch.fd->get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, punch.length);
  // Where the backing filesystem cannot punch, the bytes stay allocated but
  // unreachable; the head is what makes them gone.
  if (!punched && IsErrno(punched.error(), EOPNOTSUPP)) return {};
  return punched;
}

Result<void> HPFile::PunchBelowHeadLocked() {
  if (defer_head_punch_) return {};
  auto punch = HeadPunchLocked();
  if (!punch) return std::unexpected(punch.error());
  return RunHeadPunch(*punch);
}

Result<void> HPFile::PunchBelowHead() {
  std::unique_lock lock(writer_mu_);
  auto punch = HeadPunchLocked();
  if (!punch) return std::unexpected(punch.error());
  std::lock_guard punch_lock(punch_mu_);
  lock.unlock();
  return RunHeadPunch(*punch);
}

Result<void> HPFile::PruneHead(uint64_t n) {
  std::lock_guard lock(writer_mu_);
  if (auto ok = CheckWritable(); !ok) return ok;
  return PruneHeadLocked(n);
}

Result<void> HPFile::PruneHeadLocked(uint64_t n) {
  // Keeps head <= flushed size, so the write buffer never holds bytes below
  // the head and a flush never writes a segment that is already pruned.
  if (n > flushed_size_.load(std::memory_order_relaxed)) {
    if (auto flushed = FlushLocked(); !flushed) return flushed;
  }
  const uint64_t new_head = std::min(std::max(Head(), n), Size());
  if (new_head != Head()) {
    head_.store(new_head, std::memory_order_release);
    std::lock_guard meta_lock(meta_mu_);
    meta_dirty_ = true;
  }
  // The end of a file without segments lives only in the meta, which this
  // does not write: so the last segment never goes before an empty tail at
  // the new head takes its place (the next append would create it anyway).
  if (!segments_.empty() && segments_.back()->slot_end() <= new_head) {
    if (auto added = AddSegmentLocked(new_head, CurrentSegmentSize()); !added) return added;
  }
  // Runs even when the head did not move: it finishes a prune whose deletions
  // failed before.
  // Oldest first, so an interruption leaves a contiguous run above the head.
  for (;;) {
    if (segments_.empty() || segments_.front()->slot_end() > new_head) break;
    std::shared_ptr<Segment> oldest = segments_.front();
    if (auto removed = DiscardSegmentFile(oldest->path); !removed) return removed;
    DropSegmentLocked(/*newest=*/false);
  }
  return PunchBelowHeadLocked();
}

// ---- retention -------------------------------------------------------------

Result<bool> HPFile::RetainOneLocked(const RetentionPolicy& policy, int64_t now) {
  // The tail is the segment being written: never dropped, whatever its age.
  if (segments_.size() < 2) return false;
  const std::shared_ptr<Segment> oldest = segments_.front();
  bool drop = policy.BytesAllowDrop(oldest->slot_end(), Size());
  if (!drop && policy.retain_seconds) {
    // A sealed segment is never written again, so its mtime is its last write.
    auto st = io_.Stat(oldest->path);
    if (!st) return std::unexpected(st.error());
    drop = policy.AgeAllowsDrop(st->st_mtim.tv_sec, now);
  }
  if (!drop) return false;
  if (auto pruned = PruneHeadLocked(oldest->slot_end()); !pruned) return std::unexpected(pruned.error());
  return true;
}

RetentionResult HPFile::RetainLocked(int64_t now, uint64_t max_segments) {
  RetentionResult result{.old_head = Head(), .new_head = Head()};
  if (damage_) return result;
  RetentionPolicy policy;
  {
    std::lock_guard lock(meta_mu_);
    policy = RetentionPolicy::FromMeta(meta_);
  }
  if (policy.empty()) return result;
  while (result.segments < max_segments) {
    auto dropped = RetainOneLocked(policy, now);
    if (!dropped) {
      result.error = dropped.error();
      break;
    }
    if (!*dropped) break;
    ++result.segments;
  }
  result.new_head = Head();
  return result;
}

RetentionResult HPFile::ApplyRetention(int64_t now) {
  RetentionResult total{.old_head = Head(), .new_head = Head()};
  if (damage_) {
    total.error = Errno(EIO).error();
    return total;
  }
  for (bool first = true;; first = false) {
    RetentionResult step;
    {
      std::lock_guard lock(writer_mu_);
      step = RetainLocked(now, 1);
    }
    if (first) total.old_head = step.old_head;
    total.new_head = step.new_head;
    total.segments += step.segments;
    if (step.error) {
      total.error = step.error;
      break;
    }
    if (!step.pruned()) break;
  }
  if (on_retention_ && (total.pruned() || total.error)) on_retention_(total);
  return total;
}

}  // namespace hpfile
