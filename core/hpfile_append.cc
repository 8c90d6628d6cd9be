// SPDX-License-Identifier: Apache-2.0
// HPFile's append path: writing at the end of the backing files, segment
// rolls and their undo, the write buffer.
#include "core/hpfile.h"

#include <fcntl.h>

#include <algorithm>
#include <ctime>
#include <limits>

#include "core/segment_name.h"

namespace hpfile {

bool HPFile::FitsMaxFileSize(uint64_t start, uint64_t length) {
  return start <= format::kMaxFileSize && length <= format::kMaxFileSize - start;
}

// ---- writing -------------------------------------------------------------

Result<void> HPFile::CheckWritable() const {
  if (damage_) return Errno(EIO);
  return {};
}

void HPFile::MarkDirtyLocked(const std::shared_ptr<Segment>& segment) {
  // Writes are sequential, so a segment already listed is the last one listed.
  if (dirty_segments_.empty() || dirty_segments_.back() != segment) dirty_segments_.push_back(segment);
}

Result<void> HPFile::AddSegmentLocked(uint64_t base, uint64_t capacity) {
  if (base > format::kMaxSlotEnd - capacity) return Errno(EFBIG);
  auto segment = std::make_shared<Segment>(base, capacity);
  segment->sealed_end = segment->slot_end();
  // O_TRUNC: a file by this name that is not in the map is debris of a failed
  // rollback, never data.
  auto opened = Fd::Open(io_, SegmentPath(*segment), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (!opened) return std::unexpected(opened.error());
  tail_fd_ = std::make_shared<Fd>(std::move(*opened));
  tail_segment_ = segment;
  {
    std::vector<std::shared_ptr<Fd>> evicted;  // closed after unlocking
    std::unique_lock lock(map_mu_);
    segments_.push_back(segment);
    evicted = fd_cache_.Insert(*segment, tail_fd_);
  }
  dir_dirty_ = true;
  ++segments_created_;
  MarkDirtyLocked(segment);
  return {};
}

Result<int> HPFile::TailFdLocked() {
  const std::shared_ptr<Segment>& tail = segments_.back();
  if (tail_fd_ && tail_segment_ == tail) return tail_fd_->get();
  auto opened = Fd::Open(io_, SegmentPath(*tail), O_RDWR);
  if (!opened) return std::unexpected(opened.error());
  tail_fd_ = std::make_shared<Fd>(std::move(*opened));
  tail_segment_ = tail;
  std::vector<std::shared_ptr<Fd>> evicted;  // closed after unlocking
  std::unique_lock lock(map_mu_);
  evicted = fd_cache_.Insert(*tail, tail_fd_);
  return tail_fd_->get();
}

void HPFile::DropSegmentLocked(bool newest) {
  std::shared_ptr<Segment> dropped;
  std::shared_ptr<Fd> dropped_fd;  // closed after unlocking
  {
    std::unique_lock lock(map_mu_);
    if (newest) {
      dropped = std::move(segments_.back());
      segments_.pop_back();
    } else {
      dropped = std::move(segments_.front());
      segments_.pop_front();
    }
    dropped->retired = true;
    dropped_fd = fd_cache_.Remove(*dropped);
  }
  std::erase(dirty_segments_, dropped);
  if (tail_segment_ == dropped) {
    tail_segment_.reset();
    tail_fd_.reset();
  }
  dir_dirty_ = true;
}

Result<void> HPFile::TrimOverhangLocked() {
  if (!tail_overhang_) return {};
  auto fd = TailFdLocked();
  if (!fd) return std::unexpected(fd.error());
  const uint64_t end = flushed_size_.load(std::memory_order_relaxed);
  if (auto cut = io_.Ftruncate(*fd, end - tail_segment_->base); !cut) return cut;
  tail_overhang_ = false;
  return {};
}

uint64_t HPFile::GapSegmentCapacityLocked(uint64_t remaining, uint64_t segment_size) const {
  // Every whole slot before the one the last byte falls into, as one sparse
  // segment: a grow of any size costs a few files and no data written. The
  // capacity is a multiple of the segment size, so the slots after it stay
  // on the grid they would have had, and the last slot is an ordinary tail.
  const uint64_t whole_slots = (remaining - 1) / segment_size;
  const uint64_t limit_slots = gap_capacity_limit_ / segment_size;
  return std::max<uint64_t>(1, std::min(whole_slots, limit_slots)) * segment_size;
}

Result<void> HPFile::DropEmptyWideTailLocked(uint64_t end, uint64_t segment_size) {
  if (segments_.empty()) return {};
  const std::shared_ptr<Segment>& tail = segments_.back();
  // An empty tail wider than a segment is what a grow leaves when it stops
  // between creating a gap segment and sizing it (a crash, a power loss).
  // Filled, it would take appends into a slot retention cannot drop until
  // it is full; it holds nothing, so it goes and the slot is made again.
  if (tail->base != end || tail->capacity <= segment_size) return {};
  if (auto removed = io_.Unlink(SegmentPath(*tail)); !removed) return removed;
  DropSegmentLocked(/*newest=*/true);
  return {};
}

Result<uint64_t> HPFile::ExtendLocked(uint64_t zeros, std::span<const std::byte> data) {
  const uint64_t start = flushed_size_.load(std::memory_order_relaxed);
  if (!FitsMaxFileSize(start, zeros) || !FitsMaxFileSize(start + zeros, data.size())) return Errno(EFBIG);
  if (auto trimmed = TrimOverhangLocked(); !trimmed) return std::unexpected(trimmed.error());
  const uint64_t segment_size = CurrentSegmentSize();
  if (auto replaced = DropEmptyWideTailLocked(start, segment_size); !replaced) {
    return std::unexpected(replaced.error());
  }
  // The writer reads segments_ without map_mu_: only holders of writer_mu_
  // change it, and they take map_mu_ exclusively for that, to keep readers out.
  // For the same reason the loop refers to the tail and its descriptor without
  // copying their shared_ptrs, which would cost atomic refcount updates on
  // every append: nothing else can drop them while this call runs.
  const size_t segments_before = segments_.size();
  const uint64_t old_tail_length = segments_before > 0 ? start - segments_.back()->base : 0;

  const uint64_t data_start = start + zeros;
  const uint64_t end = data_start + data.size();
  uint64_t position = start;
  Result<void> status;
  while (position < end) {
    const bool filling = position < data_start;
    bool wide_gap_segment = false;
    if (segments_.empty() || position >= segments_.back()->slot_end()) {
      const uint64_t capacity =
          filling ? GapSegmentCapacityLocked(data_start - position, segment_size) : segment_size;
      wide_gap_segment = capacity > segment_size;
      if (auto added = AddSegmentLocked(position, capacity); !added) {
        status = std::unexpected(added.error());
        break;
      }
    }
    const std::shared_ptr<Segment>& tail = segments_.back();
    auto fd = TailFdLocked();
    if (!fd) {
      status = std::unexpected(fd.error());
      break;
    }
    const uint64_t stop = std::min(filling ? data_start : end, tail->slot_end());
    if (!filling) {
      status = WriteFull(io_, *fd, data.subspan(position - data_start, stop - position), position - tail->base);
    } else {
      status = io_.Ftruncate(*fd, stop - tail->base);
      if (!status && wide_gap_segment && IsErrno(status.error(), EFBIG)) {
        // The backing filesystem holds no file this large (ext4: 16 TiB):
        // this one goes, and the gap is covered by smaller ones.
        gap_capacity_limit_ = std::max(segment_size, tail->capacity / 2);
        if (auto removed = io_.Unlink(SegmentPath(*tail)); !removed) {
          status = removed;
          break;
        }
        DropSegmentLocked(/*newest=*/true);
        status = {};
        continue;
      }
    }
    if (!status) break;
    MarkDirtyLocked(tail);
    position = stop;
  }
  if (status) return position;

  // Undo: segments this call created go, the old tail gets its old length
  // back. Readers never saw any of it: size_ has not moved.
  for (;;) {
    if (segments_.size() <= segments_before) break;
    std::shared_ptr<Segment> newest = segments_.back();
    // Dropped from the map even if the unlink fails: the next segment created
    // by that name truncates the debris.
    (void)io_.Unlink(SegmentPath(*newest));
    DropSegmentLocked(/*newest=*/true);
  }
  if (segments_before > 0) {
    auto fd = TailFdLocked();
    if (!fd || !io_.Ftruncate(*fd, old_tail_length)) tail_overhang_ = true;
  }
  return std::unexpected(status.error());
}

Result<void> HPFile::FlushLocked() {
  if (buffer_.empty()) return {};
  auto end = ExtendLocked(0, buffer_);
  if (!end) return std::unexpected(end.error());
  std::lock_guard lock(buffer_mu_);
  flushed_size_.store(*end, std::memory_order_release);
  buffer_.clear();
  return {};
}

Result<void> HPFile::Flush() {
  std::lock_guard lock(writer_mu_);
  return FlushLocked();
}

Result<uint64_t> HPFile::Append(std::span<const std::byte> data) {
  return AppendWithRetention(std::nullopt, Gap::kRefuse, data);
}

Result<uint64_t> HPFile::AppendAt(uint64_t offset, std::span<const std::byte> data, Gap gap) {
  return AppendWithRetention(offset, gap, data);
}

Result<uint64_t> HPFile::AppendWithRetention(std::optional<uint64_t> offset, Gap gap,
                                             std::span<const std::byte> data) {
  std::unique_lock lock(writer_mu_);
  const uint64_t created_before = segments_created_;
  Result<uint64_t> start = offset ? AppendAtLocked(*offset, gap, data) : AppendLocked(data);
  // A roll is when retention can have something new to drop: everything the
  // policy lets go, since one write larger than several segments makes
  // several droppable at once, and leaving them to the background would let
  // the file sit far above its limit. Deletions are renames into a trash for
  // the daemon (Options::discard_segment), so the append waits for little.
  if (!start || segments_created_ == created_before || !retain_on_roll_) return start;
  const RetentionResult retention =
      RetainLocked(static_cast<int64_t>(std::time(nullptr)), std::numeric_limits<uint64_t>::max());
  lock.unlock();
  if (on_retention_ && (retention.pruned() || retention.error)) on_retention_(retention);
  return start;
}

// Inline: each frame between Append and the write's system call costs a
// small append measurably (about 7 ns here, mispredicted returns after the
// kernel has run), next to ~1 us for the whole call.
inline Result<uint64_t> HPFile::AppendLocked(std::span<const std::byte> data) {
  if (auto ok = CheckWritable(); !ok) return std::unexpected(ok.error());
  const uint64_t start = Size();
  if (!FitsMaxFileSize(start, data.size())) return Errno(EFBIG);
  if (data.empty()) return start;

  if (write_buffer_size_ > 0) {
    if (buffer_.size() + data.size() > write_buffer_size_) {
      if (auto flushed = FlushLocked(); !flushed) return std::unexpected(flushed.error());
    }
    if (data.size() < write_buffer_size_) {
      std::lock_guard buffer_lock(buffer_mu_);
      buffer_.insert(buffer_.end(), data.begin(), data.end());
      size_.store(start + data.size(), std::memory_order_release);
      return start;
    }
  }
  auto end = ExtendLocked(0, data);
  if (!end) return std::unexpected(end.error());
  flushed_size_.store(*end, std::memory_order_release);
  size_.store(*end, std::memory_order_release);
  return start;
}

Result<uint64_t> HPFile::AppendAtLocked(uint64_t offset, Gap gap, std::span<const std::byte> data) {
  const uint64_t size = Size();
  if (offset == size) return AppendLocked(data);
  if (offset < size || gap == Gap::kRefuse) return Errno(ESTALE);
  if (auto ok = CheckWritable(); !ok) return std::unexpected(ok.error());
  if (data.empty()) return offset;
  if (!FitsMaxFileSize(size, offset - size) || !FitsMaxFileSize(offset, data.size())) return Errno(EFBIG);
  // The zeros and the data go in one extension, whose undo takes both back;
  // it writes after the backing files' end, so the write buffer goes first.
  if (auto flushed = FlushLocked(); !flushed) return std::unexpected(flushed.error());
  auto end = ExtendLocked(offset - size, data);
  if (!end) return std::unexpected(end.error());
  flushed_size_.store(*end, std::memory_order_release);
  size_.store(*end, std::memory_order_release);
  return offset;
}

}  // namespace hpfile
