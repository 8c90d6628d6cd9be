// SPDX-License-Identifier: Apache-2.0
// HPFile's read path: the read plan (offsets to segment pieces and their
// descriptors, in one turn of the reader lock), and ReadAt and MapRange over it.
#include "core/hpfile.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

namespace hpfile {

uint64_t ReadPlan::size() const {
  uint64_t total = zeros + buffered.size();
  for (const Extent& extent : extents) total += extent.length;
  return total;
}

uint64_t HPFile::ReadableEnd(const Segment& segment, uint64_t size) const {
  return std::min(segment.sealed_end, size);
}

HPFile::Piece HPFile::PieceAtLocked(uint64_t offset, uint64_t end, bool cached_fd) const {
  const long index = FindSegmentIndex(segments_, offset);
  if (index < 0) return {};
  const auto& segment = segments_[static_cast<size_t>(index)];
  const uint64_t stop = ReadableEnd(*segment, end);
  if (stop <= offset) return {};
  Piece piece{.begin = offset, .end = stop, .file_offset = offset - segment->base,
              .ends_slot = stop == segment->slot_end()};
  if (cached_fd) piece.fd = fd_cache_.Lookup(*segment);
  // The segment itself is only needed to open a descriptor for it.
  if (!piece.fd) piece.segment = segment;
  return piece;
}

std::vector<HPFile::Piece> HPFile::LocateLocked(uint64_t offset, uint64_t end) const {
  std::vector<Piece> pieces;
  for (uint64_t position = offset; position < end;) {
    // Only the first piece takes its cached descriptor along: a reader that
    // takes the pieces one by one then holds at most one beyond the cache.
    Piece piece = PieceAtLocked(position, end, /*cached_fd=*/pieces.empty());
    if (piece.end == 0) break;  // a damaged file's gap
    position = piece.end;
    const bool ends_slot = piece.ends_slot;
    pieces.push_back(std::move(piece));
    if (!ends_slot) break;  // the request or the segment ends: nothing follows
  }
  return pieces;
}

Result<std::shared_ptr<Fd>> HPFile::SegmentFd(const std::shared_ptr<Segment>& segment) const {
  {
    std::shared_lock lock(map_mu_);
    if (auto cached = fd_cache_.Lookup(*segment)) return cached;
  }
  {
    // Room first, so the descriptors open never exceed the limit, even for
    // the moment between this open and the insert.
    std::vector<std::shared_ptr<Fd>> evicted;  // closed after unlocking
    std::unique_lock lock(map_mu_);
    evicted = fd_cache_.MakeRoom();
    lock.unlock();
  }
  auto opened = Fd::Open(io_, SegmentPath(*segment), O_RDONLY);
  if (!opened) return std::unexpected(opened.error());
  auto fd = std::make_shared<Fd>(std::move(*opened));
  std::vector<std::shared_ptr<Fd>> evicted;  // closed after unlocking
  std::unique_lock lock(map_mu_);
  if (segment->retired) return fd;  // deleted meanwhile: serve this read, cache nothing
  if (auto cached = fd_cache_.Lookup(*segment)) return cached;  // another reader was first
  evicted = fd_cache_.Insert(*segment, fd);
  return fd;
}

template <class Take>
Result<void> HPFile::Plan(uint64_t offset, size_t length, ReadPlan& plan, Take take) const {
  std::vector<Piece> pieces;
  uint64_t data_begin = 0;
  uint64_t segments_end = 0;  // the pieces cover [data_begin, segments_end); the buffer follows
  {
    // One turn of the reader lock: no segment joins or leaves the map during
    // it, and the head and size it reads fit the segments it finds. A prune
    // stores the head before it drops segments, a truncate the size before
    // it drops segments, an append the size after it adds them.
    std::shared_lock lock(map_mu_);
    const uint64_t size = Size();
    const uint64_t head = Head();
    plan.eof = size;
    if (offset >= size || length == 0) return {};
    const uint64_t end = offset + std::min<uint64_t>(length, size - offset);
    plan.zeros = offset < head ? std::min(head, end) - offset : 0;
    data_begin = offset + plan.zeros;
    uint64_t flushed = flushed_size_.load(std::memory_order_acquire);
    if (write_buffer_size_ > 0 && end > flushed) {
      std::lock_guard buffer_lock(buffer_mu_);
      flushed = flushed_size_.load(std::memory_order_relaxed);
      const uint64_t from = std::max(data_begin, flushed);
      const uint64_t to = std::min(end, flushed + buffer_.size());
      if (from < to) {
        plan.buffered.assign(buffer_.begin() + static_cast<ptrdiff_t>(from - flushed),
                             buffer_.begin() + static_cast<ptrdiff_t>(to - flushed));
      }
    }
    segments_end = std::max(data_begin, std::min(end, flushed));
    pieces = LocateLocked(data_begin, segments_end);
  }

  // Descriptors the cache lacked are opened outside the lock, so no writer
  // waits for a reader's open. A segment deleted in between (ENOENT) was
  // dropped by a prune, when its bytes are below the head now and read as
  // zeros like those before it, or by a truncate, when the file ends there.
  uint64_t covered = data_begin;
  bool stopped = false;  // by `take`, or because the bytes went
  std::error_code failure;
  for (Piece& piece : pieces) {
    std::shared_ptr<Fd> fd = std::move(piece.fd);
    if (!fd) {
      auto opened = SegmentFd(piece.segment);
      if (!opened && IsErrno(opened.error(), ENOENT) && piece.end <= Head()) {
        plan.zeros = piece.end - offset;
        plan.extents.clear();
        covered = piece.end;
        continue;
      }
      if (!opened && IsErrno(opened.error(), ENOENT)) {
        plan.eof = covered;
        stopped = true;
        break;
      }
      if (!opened) {
        failure = opened.error();
        break;
      }
      fd = std::move(*opened);
    }
    if (!take(Extent{std::move(fd), piece.file_offset, static_cast<size_t>(piece.end - piece.begin)})) {
      stopped = true;
      break;
    }
    covered = piece.end;
  }
  if (covered == segments_end) return {};
  // The buffered bytes follow the segments' only when nothing is missing.
  plan.buffered.clear();
  if (!stopped && plan.zeros == 0 && covered == data_begin) {
    // Not one byte: an open failed, or bytes below the size that no segment
    // holds, which only a damaged file misses (a healthy file's segments
    // cover [head, size) in every state the lock lets this see).
    if (failure) return std::unexpected(failure);
    return Errno(EIO);
  }
  return {};
}

Result<ReadPlan> HPFile::PlanRead(uint64_t offset, size_t length) const {
  ReadPlan plan;
  auto planned = Plan(offset, length, plan, [&plan](Extent&& extent) {
    plan.extents.push_back(std::move(extent));
    return true;
  });
  if (!planned) return std::unexpected(planned.error());
  return plan;
}

Result<size_t> HPFile::ReadAt(uint64_t offset, std::span<std::byte> buf) const {
  ReadPlan plan;
  size_t done = 0;
  bool whole = true;  // every extent read in full, so the buffered bytes follow
  std::error_code read_error;
  // Each extent is read as soon as its descriptor is there and let go
  // before the next is opened: a reader holds at most one descriptor beyond
  // the cache.
  auto planned = Plan(offset, buf.size(), plan, [&](Extent&& extent) {
    auto n = ReadFull(io_, extent.fd->get(), buf.subspan(done, extent.length), extent.file_offset);
    if (!n) {
      read_error = n.error();
      whole = false;
      return false;
    }
    done += *n;
    // Short: a truncate cut the segment after the plan was made.
    whole = *n == extent.length;
    return whole;
  });
  if (!planned) return std::unexpected(planned.error());
  // A prune may have moved the head past `offset` and punched the bytes while
  // they were being read: they may be zeros now, so they do not count.
  if (plan.zeros > 0 || offset < Head()) return Errno(ENODATA);
  if (done == 0 && read_error) return std::unexpected(read_error);
  if (whole && !plan.buffered.empty()) {
    std::memcpy(buf.data() + done, plan.buffered.data(), plan.buffered.size());
    done += plan.buffered.size();
  }
  return done;
}

Result<std::vector<Extent>> HPFile::MapRange(uint64_t offset, size_t length) const {
  auto plan = PlanRead(offset, length);
  if (!plan) return std::unexpected(plan.error());
  if (plan->zeros > 0) return Errno(ENODATA);
  return std::move(plan->extents);
}

}  // namespace hpfile
