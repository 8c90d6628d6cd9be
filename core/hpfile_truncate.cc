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
  if (n <= Head()) {
    // The file keeps no segment, and only segments after them tell a reopen
    // that pruned segments are not a tail whose end the meta's head lies
    // beyond (what an unsynced truncate of an earlier version left); and
    // segments appended from n on must not meet them. The durable head
    // still lies above them, so deleting them first is safe at any crash
    // point; the meta write below makes the deletions durable.
    if (auto deleted = DeleteAllPrunedLocked(); !deleted) return fail(old_size, deleted.error());
  }
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
    if (auto removed = DiscardSegmentFile(SegmentPath(*newest)); !removed) return fail(end, removed.error());
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
    auto opened = Fd::Open(io_, SegmentPath(*first), O_WRONLY);
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
  {
    std::lock_guard lock(writer_mu_);
    if (auto ok = CheckWritable(); !ok) return ok;
    if (auto pruned = PruneHeadLocked(n); !pruned) return pruned;
  }
  // After the writer lock, since meta writes take sync_mu_ first: appends go
  // on while the meta is written.
  return WriteMetaIfDirty();
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
  RetireBelowHeadLocked();
  return PunchBelowHeadLocked();
}

void HPFile::RetireBelowHeadLocked() {
  const uint64_t head = Head();
  size_t count = 0;
  while (count < segments_.size() && segments_[count]->slot_end() <= head) ++count;
  if (count == 0) return;
  // Only what the files' deletion needs is kept in pruned_; the Segment
  // objects die in the deleter's call (retired_entries_).
  std::vector<std::shared_ptr<Segment>> retired;
  retired.reserve(count);
  std::vector<std::shared_ptr<Fd>> closing;  // closed after unlocking
  {
    std::unique_lock lock(map_mu_);
    for (size_t i = 0; i < count; ++i) {
      Segment& segment = *segments_[i];
      segment.retired = true;
      if (segment.in_cache) closing.push_back(fd_cache_.Remove(segment));
    }
    retired.insert(retired.end(), std::make_move_iterator(segments_.begin()),
                   std::make_move_iterator(segments_.begin() + static_cast<long>(count)));
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<long>(count));
  }
  // Nothing below the head needs syncing: its bytes are never read again.
  std::erase_if(dirty_segments_, [](const std::shared_ptr<Segment>& segment) { return segment->retired; });
  segments_retired_ += count;
  std::lock_guard lock(pruned_mu_);
  for (const auto& segment : retired) AddPrunedLocked(segment->base, segment->capacity);
  retired_entries_.push_back(std::move(retired));
}

void HPFile::AddPrunedLocked(uint64_t base, uint64_t capacity) {
  if (!pruned_.empty()) {
    PrunedRun& last = pruned_.back();
    if (last.capacity == capacity && base == last.base + last.count * capacity) {
      ++last.count;
      ++pruned_count_;
      pruned_bytes_ += capacity;
      return;
    }
  }
  pruned_.push_back({.base = base, .capacity = capacity, .count = 1});
  ++pruned_count_;
  pruned_bytes_ += capacity;
}

Result<uint64_t> HPFile::DeletePrunedSegments(uint64_t max_segments) {
  bool head_unwritten = false;
  std::vector<std::vector<std::shared_ptr<Segment>>> freeing;  // freed after unlocking
  {
    std::lock_guard lock(pruned_mu_);
    freeing.swap(retired_entries_);
    if (pruned_.empty()) return 0;
    head_unwritten = pruned_.front().base + pruned_.front().capacity > durable_head_.load(std::memory_order_acquire);
  }
  // A retention prune leaves its head to be written: a deletion above the
  // durable head would let a power loss bring back a file with a hole.
  if (head_unwritten) {
    if (auto written = WriteMetaIfDirty(); !written) return std::unexpected(written.error());
  }
  std::lock_guard lock(pruned_mu_);
  const uint64_t durable = durable_head_.load(std::memory_order_acquire);
  for (uint64_t deleted = 0; deleted < max_segments && !pruned_.empty(); ++deleted) {
    PrunedRun& oldest = pruned_.front();
    if (oldest.base + oldest.capacity > durable) break;
    auto removed = io_.Unlink(SegmentPath(oldest.base, oldest.capacity));
    if (!removed && !IsErrno(removed.error(), ENOENT)) return std::unexpected(removed.error());
    pruned_bytes_ -= oldest.capacity;
    --pruned_count_;
    oldest.base += oldest.capacity;
    if (--oldest.count == 0) pruned_.pop_front();
  }
  return pruned_count_;
}

Result<void> HPFile::DeleteAllPrunedLocked() {
  std::lock_guard lock(pruned_mu_);
  while (!pruned_.empty()) {
    PrunedRun& run = pruned_.back();
    auto removed = io_.Unlink(SegmentPath(run.base + (run.count - 1) * run.capacity, run.capacity));
    if (!removed && !IsErrno(removed.error(), ENOENT)) return removed;
    pruned_bytes_ -= run.capacity;
    --pruned_count_;
    if (--run.count == 0) pruned_.pop_back();
  }
  return {};
}

HPFile::PrunedBacklog HPFile::PrunedSegments() const {
  std::lock_guard lock(pruned_mu_);
  return {.segments = pruned_count_, .bytes = pruned_bytes_};
}

// ---- retention -------------------------------------------------------------

Result<bool> HPFile::RetainOneLocked(const RetentionPolicy& policy, int64_t now, size_t index) {
  // The tail is the segment being written: never dropped, whatever its age.
  if (index + 1 >= segments_.size()) return false;
  const Segment& oldest = *segments_[index];
  if (policy.BytesAllowDrop(oldest.slot_end(), Size())) return true;
  if (!policy.retain_seconds) return false;
  // A sealed segment is never written again, so its mtime is its last write.
  auto st = io_.Stat(SegmentPath(oldest));
  if (!st) return std::unexpected(st.error());
  return policy.AgeAllowsDrop(st->st_mtim.tv_sec, now);
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
  // Finds how far the policy lets the head go, then prunes there once: the
  // segments leave the map together and their files go to the deleter.
  size_t droppable = 0;
  while (droppable < max_segments) {
    auto drop = RetainOneLocked(policy, now, droppable);
    if (!drop) {
      result.error = drop.error();
      break;
    }
    if (!*drop) break;
    ++droppable;
  }
  if (droppable > 0) {
    const uint64_t retired_before = segments_retired_;
    if (auto pruned = PruneHeadLocked(segments_[droppable - 1]->slot_end()); !pruned) result.error = pruned.error();
    result.segments = segments_retired_ - retired_before;
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
      step = RetainLocked(now, kRetentionBatch);
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
