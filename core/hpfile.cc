// SPDX-License-Identifier: Apache-2.0
#include "core/hpfile.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <limits>

#include "core/format.h"
#include "core/recovery.h"
#include "core/segment_name.h"

namespace hpfile {
namespace {

// Creates DIR as a new, empty HPFile. A crash midway leaves either nothing, an
// empty directory (a plain directory to the filesystem layer) or the file.
Result<void> CreateStore(Io& io, const std::string& dir, Meta meta) {
  if (!ValidSegmentSize(meta.segment_size)) return Errno(EINVAL);
  meta.head = 0;
  if (auto made = io.Mkdir(dir, 0755); !made && !IsErrno(made.error(), EEXIST)) return made;
  if (auto written = WriteMetaAtomically(io, dir, meta); !written) return written;
  return SyncDir(io, ParentDir(dir));
}

// Whether `length` more bytes after `start` stay within the largest file
// size; a file an earlier version grew past it may not grow at all.
bool FitsMaxFileSize(uint64_t start, uint64_t length) {
  return start <= format::kMaxFileSize && length <= format::kMaxFileSize - start;
}

}  // namespace

HPFile::HPFile(Io& io, std::string dir, Fd dir_lock, const Options& options)
    : io_(io),
      dir_(std::move(dir)),
      dir_lock_(std::move(dir_lock)),
      write_buffer_size_(options.write_buffer_size),
      discard_segment_(options.discard_segment),
      on_retention_(options.on_retention),
      defer_head_punch_(options.defer_head_punch),
      fd_cache_(options.max_open_segments) {}

Result<void> HPFile::DiscardSegmentFile(const std::string& path) {
  if (discard_segment_) return discard_segment_(path);
  return io_.Unlink(path);
}

HPFile::~HPFile() {
  // Buffered appends were acknowledged, and a moved head is part of the state
  // a reopen must find: write both out. Making data durable is Sync's job, and
  // a failure here has nobody left to report to.
  {
    std::lock_guard lock(writer_mu_);
    (void)FlushLocked();
  }
  if (!damage_) (void)WriteMetaIfDirty();
}

Result<std::unique_ptr<HPFile>> HPFile::Open(const std::string& dir, const Options& options) {
  Io& io = options.io != nullptr ? *options.io : PosixIo::Default();
  auto st = io.Stat(dir);
  if (!st && !IsErrno(st.error(), ENOENT)) return std::unexpected(st.error());
  if (st && !S_ISDIR(st->st_mode)) return Errno(ENOTDIR);
  if (!st) {
    if (!options.create_if_missing) return Errno(ENOENT);
    if (auto made = io.Mkdir(dir, 0755); !made && !IsErrno(made.error(), EEXIST)) return std::unexpected(made.error());
  }
  // Before anything is read: recovery and creation change the directory, and
  // so would a second owner's writes (EBUSY).
  auto lock = LockDirectory(io, dir);
  if (!lock) return std::unexpected(lock.error());

  auto scan = ScanStore(io, dir);
  if (scan && !scan->has_meta && scan->segments.empty() && scan->problems.empty()) {
    // An empty directory: a new file.
    if (!options.create_if_missing) return Errno(ENOENT);
    if (auto created = CreateStore(io, dir, options.initial_meta); !created) return std::unexpected(created.error());
    scan = ScanStore(io, dir);
  }
  if (!scan) return std::unexpected(scan.error());

  RecoveryPlan plan = PlanRecovery(*scan);
  std::unique_ptr<HPFile> file(new HPFile(io, dir, std::move(*lock), options));
  file->meta_ = scan->meta.value_or(Meta{});
  if (!plan.damage) {
    if (auto applied = ApplyRecovery(io, dir, file->meta_, plan); !applied) return std::unexpected(applied.error());
  }
  file->meta_.head = plan.head;
  file->damage_ = plan.damage;
  file->recovery_log_ = plan.log;

  uint64_t end = plan.head;
  for (const ScannedSegment& scanned : plan.segments) {
    auto segment =
        std::make_shared<Segment>(scanned.name.base, scanned.name.capacity, dir + "/" + scanned.file_name);
    // A healthy file's sealed segments are full; a damaged file's may not be,
    // and what lies past a slot belongs to no offset.
    segment->sealed_end = plan.damage ? scanned.name.base + std::min(scanned.length, scanned.name.capacity)
                                      : segment->slot_end();
    end = scanned.name.base + std::min(scanned.length, scanned.name.capacity);
    file->segments_.push_back(std::move(segment));
  }
  file->head_.store(std::min(plan.head, end));
  file->size_.store(end);
  file->flushed_size_.store(end);
  // What an earlier process wrote may still sit unsynced in the page cache, so
  // nothing above the head counts as durable until the first Sync covers it.
  file->durable_size_.store(std::min(plan.head, end));
  if (!plan.damage) {
    file->dirty_segments_.assign(file->segments_.begin(), file->segments_.end());
    file->dir_dirty_ = true;  // so may the directory entries of those segments
  }
  return file;
}

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
  auto segment = std::make_shared<Segment>(base, capacity, dir_ + "/" + FormatSegmentName({base, capacity}));
  segment->sealed_end = segment->slot_end();
  // O_TRUNC: a file by this name that is not in the map is debris of a failed
  // rollback, never data.
  auto opened = Fd::Open(io_, segment->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
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
  auto opened = Fd::Open(io_, tail->path, O_RDWR);
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
  if (auto removed = io_.Unlink(tail->path); !removed) return removed;
  DropSegmentLocked(/*newest=*/true);
  return {};
}

Result<uint64_t> HPFile::ExtendLocked(const std::byte* data, uint64_t length) {
  const uint64_t start = flushed_size_.load(std::memory_order_relaxed);
  if (!FitsMaxFileSize(start, length)) return Errno(EFBIG);
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

  const uint64_t end = start + length;
  uint64_t position = start;
  Result<void> status;
  while (position < end) {
    bool wide_gap_segment = false;
    if (segments_.empty() || position >= segments_.back()->slot_end()) {
      const uint64_t capacity =
          data == nullptr ? GapSegmentCapacityLocked(end - position, segment_size) : segment_size;
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
    const uint64_t stop = std::min(end, tail->slot_end());
    if (data != nullptr) {
      status = WriteFull(io_, *fd, std::span(data + (position - start), stop - position), position - tail->base);
    } else {
      status = io_.Ftruncate(*fd, stop - tail->base);
      if (!status && wide_gap_segment && IsErrno(status.error(), EFBIG)) {
        // The backing filesystem holds no file this large (ext4: 16 TiB):
        // this one goes, and the gap is covered by smaller ones.
        gap_capacity_limit_ = std::max(segment_size, tail->capacity / 2);
        if (auto removed = io_.Unlink(tail->path); !removed) {
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
    (void)io_.Unlink(newest->path);
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
  auto end = ExtendLocked(buffer_.data(), buffer_.size());
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

Result<uint64_t> HPFile::Append(std::span<const std::byte> data) { return AppendWithRetention(std::nullopt, data); }

Result<uint64_t> HPFile::AppendAt(uint64_t expected_end, std::span<const std::byte> data) {
  return AppendWithRetention(expected_end, data);
}

Result<uint64_t> HPFile::AppendWithRetention(std::optional<uint64_t> expected_end, std::span<const std::byte> data) {
  std::unique_lock lock(writer_mu_);
  if (expected_end && *expected_end != Size()) return Errno(ESTALE);
  const uint64_t created_before = segments_created_;
  Result<uint64_t> start = AppendLocked(data);
  // A roll is when retention can have something new to drop: everything the
  // policy lets go, since one write larger than several segments makes
  // several droppable at once, and leaving them to the background would let
  // the file sit far above its limit. Deletions are renames into a trash for
  // the daemon (Options::discard_segment), so the append waits for little.
  if (!start || segments_created_ == created_before) return start;
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
  auto end = ExtendLocked(data.data(), data.size());
  if (!end) return std::unexpected(end.error());
  flushed_size_.store(*end, std::memory_order_release);
  size_.store(*end, std::memory_order_release);
  return start;
}

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
  if (n > size) {
    if (!FitsMaxFileSize(size, n - size)) return Errno(EFBIG);
    if (auto flushed = FlushLocked(); !flushed) return flushed;
    auto end = ExtendLocked(nullptr, n - size);
    if (!end) return std::unexpected(end.error());
    flushed_size_.store(*end, std::memory_order_release);
    size_.store(*end, std::memory_order_release);
    return {};
  }

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
    total.error = std::error_code(EIO, std::generic_category());
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

Result<void> HPFile::SetSegmentSize(uint64_t size) {
  if (!ValidSegmentSize(size)) return Errno(EINVAL);
  return EditMeta([size](Meta& meta) { meta.segment_size = size; });
}

Result<void> HPFile::UpdateMeta(const std::function<void(Meta&)>& edit) {
  return EditMeta([&edit](Meta& meta) {
    const uint64_t head = meta.head;
    const uint64_t segment_size = meta.segment_size;
    edit(meta);
    meta.head = head;
    meta.segment_size = segment_size;
  });
}

Result<void> HPFile::EditMeta(const std::function<void(Meta&)>& edit) {
  if (auto ok = CheckWritable(); !ok) return ok;
  // sync_mu_ across the whole edit, so that on failure the old meta can be put
  // back without undoing anybody else's change.
  std::lock_guard sync_lock(sync_mu_);
  Meta old;
  {
    std::lock_guard lock(meta_mu_);
    Meta edited = meta_;
    edit(edited);
    // Permission bits only: the file type is not the meta's to record.
    if (edited.mode && *edited.mode > 07777) return Errno(EINVAL);
    if (edited == meta_) return {};
    old = std::exchange(meta_, std::move(edited));
    meta_dirty_ = true;
  }
  auto written = WriteMetaIfDirtySyncLocked();
  if (!written) {
    // The caller is told the change failed, so it must not appear later.
    std::lock_guard lock(meta_mu_);
    meta_ = std::move(old);
  }
  return written;
}

uint64_t HPFile::CurrentSegmentSize() const {
  std::lock_guard lock(meta_mu_);
  return meta_.segment_size;
}

Meta HPFile::GetMeta() const {
  std::lock_guard lock(meta_mu_);
  Meta meta = meta_;
  meta.head = Head();
  return meta;
}

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
  auto written = WriteMetaAtomically(io_, dir_, snapshot);
  if (!written) {
    std::lock_guard lock(meta_mu_);
    meta_dirty_ = true;
  }
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
  pending.tail_ = tail_segment_;
  pending.tail_fd_ = tail_fd_;
  pending.target_ = Size();
  sync_low_water_ = pending.target_;
  return pending;
}

Result<void> HPFile::SyncSegments(const PendingSync& pending) {
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
        sync_failure_text_ = "fdatasync of " + batched.segment->path + " failed: " + synced.error().message();
        sync_failure_.store(true, std::memory_order_release);
        return std::unexpected(synced.error());
      }
    }
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
  pending.file_ = nullptr;
}

Result<void> HPFile::FinishSync(PendingSync pending, const Result<void>& data_synced) {
  if (!data_synced) {
    ReturnUnsynced(pending);
    return data_synced;
  }
  pending.file_ = nullptr;
  if (auto written = WriteMetaIfDirtySyncLocked(); !written) return written;

  std::lock_guard lock(writer_mu_);
  durable_size_.store(std::min({pending.target_, sync_low_water_, Size()}), std::memory_order_release);
  return {};
}

std::optional<std::string> HPFile::SyncFailure() const {
  if (!sync_failure_.load(std::memory_order_acquire)) return std::nullopt;
  return sync_failure_text_;
}

Result<void> HPFile::CloseDescriptors() {
  std::vector<std::shared_ptr<Fd>> closing;
  {
    std::lock_guard lock(writer_mu_);
    if (auto flushed = FlushLocked(); !flushed) return flushed;
    std::unique_lock map_lock(map_mu_);
    closing = fd_cache_.Clear();
    closing.push_back(std::move(tail_fd_));
  }
  // The descriptors close here, outside the locks.
  return {};
}

// ---- introspection -------------------------------------------------------

std::vector<SegmentInfo> HPFile::Segments() const {
  const uint64_t size = Size();
  std::vector<SegmentInfo> infos;
  std::shared_lock lock(map_mu_);
  infos.reserve(segments_.size());
  for (const auto& segment : segments_) {
    const uint64_t end = std::max(segment->base, ReadableEnd(*segment, size));
    infos.push_back({segment->base, segment->capacity, end - segment->base,
                     segment->path.substr(segment->path.rfind('/') + 1)});
  }
  return infos;
}

size_t HPFile::OpenDescriptors() const {
  std::lock_guard lock(writer_mu_);
  std::shared_lock map_lock(map_mu_);
  size_t count = fd_cache_.size();
  if (tail_fd_ && fd_cache_.Lookup(*tail_segment_) != tail_fd_) ++count;
  return count;
}

}  // namespace hpfile
