// SPDX-License-Identifier: Apache-2.0
// HPFile's read path: offsets to segment pieces, their descriptors, ReadAt
// and MapRange.
#include "core/hpfile.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

namespace hpfile {

// ---- reading -------------------------------------------------------------

uint64_t HPFile::ReadableEnd(const Segment& segment, uint64_t size) const {
  return std::min(segment.sealed_end, size);
}

// Inline: it runs once per read, between the caller and its pread.
inline HPFile::Piece HPFile::LocateOne(uint64_t offset, uint64_t end) const {
  std::shared_lock lock(map_mu_);
  const long index = FindSegmentIndex(segments_, offset);
  if (index < 0) return {};
  const auto& segment = segments_[static_cast<size_t>(index)];
  const uint64_t stop = ReadableEnd(*segment, end);
  if (stop <= offset) return {};
  Piece piece{.begin = offset, .end = stop, .file_offset = offset - segment->base,
              .ends_slot = stop == segment->slot_end(), .fd = fd_cache_.Lookup(*segment)};
  // The segment itself is only needed to open a descriptor for it.
  if (!piece.fd) piece.segment = segment;
  return piece;
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
  auto opened = Fd::Open(io_, segment->path, O_RDONLY);
  if (!opened) return std::unexpected(opened.error());
  auto fd = std::make_shared<Fd>(std::move(*opened));
  std::vector<std::shared_ptr<Fd>> evicted;  // closed after unlocking
  std::unique_lock lock(map_mu_);
  if (segment->retired) return fd;  // deleted meanwhile: serve this read, cache nothing
  if (auto cached = fd_cache_.Lookup(*segment)) return cached;  // another reader was first
  evicted = fd_cache_.Insert(*segment, fd);
  return fd;
}

// Inline: a read calls it once per piece, and a piece usually has its fd.
inline Result<void> HPFile::OpenPieceFd(Piece& piece) const {
  if (piece.fd) return {};
  auto opened = SegmentFd(piece.segment);
  if (!opened) return std::unexpected(opened.error());
  piece.fd = std::move(*opened);
  return {};
}

std::vector<HPFile::Piece> HPFile::Locate(uint64_t offset, uint64_t end) const {
  std::vector<Piece> pieces;
  for (uint64_t position = offset; position < end;) {
    Piece piece = LocateOne(position, end);
    if (piece.end == 0) break;
    position = piece.end;
    const bool ends_slot = piece.ends_slot;
    pieces.push_back(std::move(piece));
    if (!ends_slot) break;  // the request or the segment ends: nothing follows
  }
  return pieces;
}

Result<size_t> HPFile::ExplainMissing(uint64_t offset) const {
  if (offset < Head()) return Errno(ENODATA);
  if (offset >= Size()) return 0;
  // A healthy file lacks bytes below its size only for a moment: a truncate
  // removed them and appends (perhaps still buffered) came back over them.
  // The caller starts over; only a damaged file really misses bytes.
  if (!damage_) return Errno(EAGAIN);
  return Errno(EIO);
}

template <class Read>
auto HPFile::RetryRaces(Read read) const -> decltype(read()) {
  // A handful of tries: each one is lost only to a truncate that ran during it.
  for (int attempt = 0;; ++attempt) {
    auto result = read();
    if (result || !IsErrno(result.error(), EAGAIN)) return result;
    if (attempt == 16) return Errno(EIO);
  }
}

Result<size_t> HPFile::ReadFromSegments(uint64_t offset, uint64_t end, std::byte* out) const {
  // One piece at a time, so the usual read (one segment) allocates nothing.
  size_t done = 0;
  while (offset + done < end) {
    Piece piece = LocateOne(offset + done, end);
    if (piece.end == 0) break;
    if (auto opened = OpenPieceFd(piece); !opened) {
      // ENOENT: deleted after LocateOne found it; a prune or truncate ran.
      if (done > 0 || IsErrno(opened.error(), ENOENT)) break;
      return std::unexpected(opened.error());
    }
    const size_t want = piece.end - piece.begin;
    auto n = ReadFull(io_, piece.fd->get(), std::span(out + done, want), piece.file_offset);
    if (!n) {
      if (done > 0) break;
      return std::unexpected(n.error());
    }
    done += *n;
    if (*n < want || !piece.ends_slot) break;
  }
  // Nothing at all: below the head, at the end, or missing (damaged). A short
  // count otherwise; the next read starting there says why.
  if (done == 0) return ExplainMissing(offset);
  return done;
}

Result<size_t> HPFile::ReadAt(uint64_t offset, std::span<std::byte> buf) const {
  return RetryRaces([&] { return ReadOnce(offset, buf); });
}

Result<size_t> HPFile::ReadOnce(uint64_t offset, std::span<std::byte> buf) const {
  const uint64_t size = Size();
  if (offset < Head()) return Errno(ENODATA);
  if (offset >= size || buf.empty()) return 0;
  const uint64_t end = offset + std::min<uint64_t>(buf.size(), size - offset);
  uint64_t position = offset;
  while (position < end) {
    const uint64_t flushed = flushed_size_.load(std::memory_order_acquire);
    if (position < flushed) {
      const uint64_t stop = std::min(end, flushed);
      auto n = ReadFromSegments(position, stop, buf.data() + (position - offset));
      if (!n) {
        if (position > offset) break;
        return n;
      }
      position += *n;
      if (position < stop) break;
      continue;
    }
    std::lock_guard lock(buffer_mu_);
    const uint64_t flushed_now = flushed_size_.load(std::memory_order_relaxed);
    if (position < flushed_now) continue;  // a flush moved it to the files
    const uint64_t available = flushed_now + buffer_.size();
    if (position >= available) break;  // truncated meanwhile
    const uint64_t stop = std::min(end, available);
    std::memcpy(buf.data() + (position - offset), buffer_.data() + (position - flushed_now), stop - position);
    position = stop;
  }
  // A prune may have moved the head past `offset` and punched the bytes while
  // they were being read: they may be zeros now, so they do not count.
  if (offset < Head()) return Errno(ENODATA);
  return static_cast<size_t>(position - offset);
}

Result<std::vector<Extent>> HPFile::MapRange(uint64_t offset, size_t length) const {
  return RetryRaces([&] { return MapRangeOnce(offset, length); });
}

Result<std::vector<Extent>> HPFile::MapRangeOnce(uint64_t offset, size_t length) const {
  const uint64_t size = Size();
  if (offset < Head()) return Errno(ENODATA);
  std::vector<Extent> extents;
  const uint64_t flushed = flushed_size_.load(std::memory_order_acquire);
  const uint64_t end = std::min<uint64_t>({flushed, size, offset + std::min<uint64_t>(length, size)});
  if (offset >= end) return extents;
  for (Piece& piece : Locate(offset, end)) {
    if (auto opened = OpenPieceFd(piece); !opened) {
      if (IsErrno(opened.error(), ENOENT)) break;
      if (!extents.empty()) break;
      return std::unexpected(opened.error());
    }
    extents.push_back({std::move(piece.fd), piece.file_offset, static_cast<size_t>(piece.end - piece.begin)});
  }
  if (extents.empty()) {
    auto missing = ExplainMissing(offset);
    if (!missing) return std::unexpected(missing.error());
  }
  return extents;
}

}  // namespace hpfile
