// SPDX-License-Identifier: Apache-2.0
// HPFile: a head-prunable file. One large virtual file stored as a directory of
// segment files (layout in format.h and docs/FORMAT.md). Bytes are only ever
// appended at the end; the head can be pruned and the tail truncated, and byte N
// stays byte N for the whole life of the file.
//
// Thread-safety: any number of threads may call the const methods (PlanRead,
// ReadAt, MapRange, Size, Head, ...) concurrently with each other and with one
// mutating call at a time; mutating calls (Append, AppendAt, Flush, Truncate, GrowTo,
// PruneHead, ApplyRetention, SetSegmentSize, UpdateMeta) are serialized internally, so several threads may
// issue them but they run one after the other. Sync may run concurrently with
// all of them: no lock that a reader or an appender needs is held across a disk
// sync, and readers never wait for another thread's I/O.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "core/fd_cache.h"
#include "core/format.h"
#include "core/io.h"
#include "core/meta.h"
#include "core/result.h"
#include "core/retention.h"
#include "core/segment.h"

namespace hpfile {

struct Options {
  // The I/O layer; nullptr means PosixIo::Default(). Must outlive the HPFile.
  Io* io = nullptr;
  // Create the directory and meta when DIR holds no HPFile; otherwise ENOENT.
  bool create_if_missing = true;
  // A file created here is durable (its meta, and its entry in DIR's parent)
  // when Open returns. False defers that, as a local filesystem does for a
  // new file: the meta is written but not synced, and so is every meta
  // change until the first Sync (or FinishSync), which makes the file's
  // meta and entries durable; DIR's own entry is the caller's. Until then a
  // power loss may leave DIR without its meta, so the caller must not make
  // DIR's entry durable (fsync its parent) before that first sync: the
  // daemon builds a new file apart and keeps this order.
  bool durable_create = true;
  // The meta written when the file is created (segment_size, mode, uid, gid,
  // retention). Ignored for an existing file, which keeps its own.
  Meta initial_meta;
  // Segment descriptors kept open for reading; when full, roughly the least
  // recently used is closed first (CLOCK). The writer holds one more for the
  // tail segment.
  size_t max_open_segments = 64;
  // Removes a segment file a truncate cut away, given its path; once it
  // returns the file must be gone from DIR. Unset, the file is unlinked at
  // once. Freeing a large file's blocks costs tens of milliseconds on ext4
  // (at the unlink, or at the last close), so a caller that wants Truncate
  // to cost only renames can move the file aside here and delete it on a
  // thread of its own. Pruned segments never come here: see
  // DeletePrunedSegments.
  std::function<Result<void>(const std::string& segment_path)> discard_segment;
  // PruneHead leaves the punch inside the oldest remaining segment (up to a
  // segment's bytes for the backing filesystem to free) to a later
  // PunchBelowHead, so that a prune costs only the whole segments it drops.
  // Bytes below the head read as zeros either way; only the space comes back
  // later.
  bool defer_head_punch = false;
  // Bytes of appends collected in memory before one write to the backing file.
  // 0 writes every append through at once, so a process crash loses nothing
  // that Append returned.
  size_t write_buffer_size = 0;
  // Whether an append that rolls to a new segment enforces the meta's
  // retention (see Append). Off for a file a TieredFile owns: the total
  // retention counts its remote segments too, which only the TieredFile
  // knows, so the owner runs TieredFile::ApplyRetention instead.
  bool retain_on_roll = true;
  // Told of every enforcement of retention that dropped segments or failed,
  // whether ApplyRetention or a segment roll inside Append started it, so an
  // owner can invalidate caches of the dropped range and log it. Called on
  // the enforcing thread with no lock of the HPFile held.
  std::function<void(const RetentionResult&)> on_retention;
};

struct SegmentInfo {
  uint64_t base = 0;      // virtual offset of the segment's first byte
  uint64_t capacity = 0;  // slot size; the next segment starts at base + capacity
  uint64_t length = 0;    // bytes the segment holds (capacity unless it is the tail)
  std::string file_name;
};

// A piece of the file as it lies in a backing segment, for zero-copy readers
// (splice). `fd` stays open for as long as the caller holds it.
struct Extent {
  std::shared_ptr<const Fd> fd;
  uint64_t file_offset = 0;
  size_t length = 0;
};

// What a read of [offset, offset + length) returns, planned for one state of
// the file: `zeros` zero bytes (the part below the head, which reads as
// zeros), then the bytes of `extents` in order, then `buffered` (appends
// still in the write buffer, copied). It covers the range clipped at `eof`,
// and stops short of it only where the bytes went while it was made (a
// truncate) or where a damaged file misses them. The extents keep their
// descriptors open for as long as the plan, or a copy of them, lives.
struct ReadPlan {
  uint64_t zeros = 0;
  std::vector<Extent> extents;
  std::vector<std::byte> buffered;
  uint64_t eof = 0;  // where the file's readable data ends: its size
  // Bytes the plan makes up.
  uint64_t size() const;
};

class HPFile {
 public:
  // Opens the HPFile in `dir`, creating it if allowed. Recovery runs first:
  // interrupted rolls, prunes, truncates and meta replacements are completed or
  // rolled back (see RecoveryLog). Inconsistencies no crash can produce open the
  // file damaged instead (see Damage); recovery never deletes data to fix one,
  // and never rebuilds a lost meta (its owner and mode cannot be guessed):
  // that is PlanRepair's, on an operator's request.
  // One object owns a directory: Open takes an flock on DIR (through a
  // descriptor held for the object's life, CloseDescriptors included) before
  // it reads anything, and fails with EBUSY while another HPFile, in this
  // process or another, has it open. The lock follows the directory through
  // renames, and the kernel drops it when the owner closes or dies.
  // Errors: ENOENT (no HPFile and !create_if_missing), ENOTDIR, EACCES,
  // EBUSY, EIO...
  [[nodiscard]] static Result<std::unique_ptr<HPFile>> Open(const std::string& dir, const Options& options = {});
  ~HPFile();
  HPFile(const HPFile&) = delete;
  HPFile& operator=(const HPFile&) = delete;

  // Appends `data` at the end and returns the offset of its first byte. The
  // bytes are split across segments as their capacities require. On error
  // (ENOSPC, EIO; EIO for a damaged file; EFBIG past format::kMaxFileSize)
  // nothing of `data` is visible and the file's size is unchanged.
  [[nodiscard]] Result<uint64_t> Append(std::span<const std::byte> data);
  // What AppendAt does when the file ends below its offset.
  enum class Gap {
    kRefuse,     // ESTALE, as for any other end
    kFillZeros,  // sparse zeros from the end up to the offset first, as a growing Truncate
  };
  // Append at `offset`, but only if the file ends there when the writer's
  // turn comes, or, with Gap::kFillZeros, anywhere below it. The check, the
  // zeros and the data happen in one turn of the writer lock, so no other
  // append, truncate or prune can come between them, and on failure nothing
  // of the zeros or of `data` stays: the size is unchanged. An empty `data`
  // writes no zeros either. Returns `offset`. ESTALE, with nothing written,
  // when the end is past `offset` (or, with Gap::kRefuse, below it);
  // otherwise as Append.
  [[nodiscard]] Result<uint64_t> AppendAt(uint64_t offset, std::span<const std::byte> data, Gap gap = Gap::kRefuse);

  // Plans a read of [offset, offset + length) (see ReadPlan) in one turn of
  // the reader lock, reading no byte itself: for a zero-copy reader (splice)
  // and for ReadAt and MapRange. Below the head it answers with zeros, never
  // an error; a prune or truncate running meanwhile gives the plan of the
  // state before or after it. EIO when not one byte can be planned because
  // a damaged file misses the range; the error of opening a segment when
  // that is what stops the plan before its first byte.
  [[nodiscard]] Result<ReadPlan> PlanRead(uint64_t offset, size_t length) const;

  // Reads up to buf.size() bytes at `offset` into `buf`. Returns the count,
  // which is short only at the end of the file (0 at or past it). Sees every
  // byte an Append has returned, buffered or not. ENODATA when `offset` is
  // below the head; EIO for a range that a damaged file is missing.
  [[nodiscard]] Result<size_t> ReadAt(uint64_t offset, std::span<std::byte> buf) const;

  // The backing pieces of [offset, offset + length), clipped at the end of the
  // file (empty at or past it). Bytes still in the write buffer have no backing
  // piece: the extents stop where the buffer begins (Flush first to avoid it).
  // Same errors as ReadAt.
  [[nodiscard]] Result<std::vector<Extent>> MapRange(uint64_t offset, size_t length) const;

  // Writes the user-space write buffer (if any) to the backing files.
  [[nodiscard]] Result<void> Flush();

  // Makes every byte appended before the call, and the head, segment size and
  // attributes, durable: fdatasync of each segment written since the last sync
  // (oldest first), fsync of the directory when segments were created or
  // deleted, then the meta if it changed. When the directory or the meta
  // cannot be synced, the unsynced state is kept and the next Sync tries
  // again. When a segment's fdatasync fails, the kernel may already have
  // dropped the bytes it could not write, so that Sync returns the error and
  // every later one EIO, until the file is reopened (SyncFailure says why).
  [[nodiscard]] Result<void> Sync();
  // Why every Sync fails, once a segment's fdatasync failed: a sentence
  // naming the segment and the error; nullopt before that.
  std::optional<std::string> SyncFailure() const;

  // Sync in two halves, for an owner of many files on one backing filesystem
  // (a daemon at unmount) that makes their data durable with one syncfs(2)
  // instead of a fdatasync per segment. BeginSync writes the write buffer to
  // the backing files and takes what is to be synced off the file's books;
  // the caller then syncs the filesystem holding dir() and hands the outcome
  // to FinishSync, which then writes the meta if it changed (with its own
  // fsync) and moves DurableSize up as Sync does. Given a failure, it puts
  // everything back for the next Sync and returns that failure. Other Syncs
  // and meta writes of this file wait from BeginSync until FinishSync. A
  // PendingSync dropped without FinishSync counts as a failed sync. The
  // HPFile must outlive it. BeginSync: EIO for a damaged file, or why the
  // write buffer could not be written.
  class PendingSync {
   public:
    PendingSync(PendingSync&& other) noexcept;
    PendingSync& operator=(PendingSync&&) = delete;
    ~PendingSync();

   private:
    friend class HPFile;
    explicit PendingSync(HPFile& file) : file_(&file) {}
    HPFile* file_;  // null once FinishSync took it, or moved from
    std::unique_lock<std::mutex> sync_lock_;  // the file's sync_mu_
    std::vector<std::shared_ptr<Segment>> dirty_;
    bool dir_dirty_ = false;
    bool inherited_ = false;  // the file's inherited_unsynced_, taken off it
    std::shared_ptr<Segment> tail_;
    std::shared_ptr<Fd> tail_fd_;
    uint64_t target_ = 0;  // Size() at BeginSync
  };
  [[nodiscard]] Result<PendingSync> BeginSync();
  [[nodiscard]] Result<void> FinishSync(PendingSync pending, const Result<void>& data_synced);

  // n < Size(): drops the tail (segments wholly at or above n are deleted
  // newest first; the one holding n is cut). n > Size(): appends zeros, sparse.
  // n < Head(): leaves an empty file with Head() == Size() == n.
  // n <= Head() deletes every segment (the ones prunes left for
  // DeletePrunedSegments first, all of them), so before the last one goes it is cut
  // to the new end and synced, and the meta records n as the head (durably,
  // with the writer lock held): a crash cannot reopen the file shorter than n
  // or hide later appends below an old head. On failure the file ends where
  // its segments then end, never below n.
  // EIO for a damaged file, EFBIG past format::kMaxFileSize.
  [[nodiscard]] Result<void> Truncate(uint64_t n);

  // Truncate's grow, made conditional: extends the file with sparse zeros to
  // n when it ends below n, and leaves it alone otherwise (an append that got
  // past n first is never cut back). The check and the grow are one turn of
  // the writer lock. On failure the file keeps its end. EIO for a damaged
  // file, EFBIG past format::kMaxFileSize.
  [[nodiscard]] Result<void> GrowTo(uint64_t n);

  // Moves the head to min(max(Head(), n), Size()) and makes the new head
  // durable (one meta write) before returning. Segments wholly below the new
  // head leave the segment map at once and are never read again; their files
  // stay on disk until DeletePrunedSegments removes them, so the call costs
  // no system call per segment. The part of the first remaining segment
  // below the head is released with FALLOC_FL_PUNCH_HOLE where the backing
  // filesystem supports it (with Options::defer_head_punch, by the next
  // PunchBelowHead instead). When the new head is the end of a full tail, an
  // empty tail is created there first, so the segments say where the file
  // ends even if the meta write fails. On failure the head may have moved in
  // memory (the next Sync or prune writes it); nothing is deleted.
  // EIO for a damaged file.
  [[nodiscard]] Result<void> PruneHead(uint64_t n);

  // Deletes up to `max_segments` of the segment files that prunes (PruneHead,
  // retention) took off the map, oldest first, and returns how many are left
  // to delete. For a background thread: it never takes the writer lock, so
  // appends and reads go on meanwhile. Only files wholly below the head the
  // meta holds on disk are deleted; when a prune's head has not reached the
  // disk yet, the meta is written first. No fsync follows the deletions: a
  // power loss may bring some back, still below the durable head, and the
  // next open finds them pending again. Files a previous process left
  // pending are found by Open and deleted here too.
  // Errors: why the meta could not be written or a file not deleted (one
  // already gone is fine); the rest stays pending for the next call.
  [[nodiscard]] Result<uint64_t> DeletePrunedSegments(uint64_t max_segments);
  // What DeletePrunedSegments has still to delete.
  struct PrunedBacklog {
    uint64_t segments = 0;
    // Their slots' bytes: an upper bound of the space they hold (a sparse
    // gap segment, or one punched below the head, holds less).
    uint64_t bytes = 0;
  };
  PrunedBacklog PrunedSegments() const;

  // With Options::defer_head_punch: releases the part of the oldest segment
  // below the head, which PruneHead left in place; nothing when the head is
  // at a segment's start, and a range punched before frees nothing more.
  // Holds the writer lock only to look up the segment, not across the
  // punch. EOPNOTSUPP from the backing filesystem is not an error (the bytes
  // stay allocated but unreachable).
  [[nodiscard]] Result<void> PunchBelowHead();

  // Enforces the meta's retention limits (core/retention.h) at `now`, in
  // seconds since the epoch: drops sealed segments from the head, oldest
  // first, while the policy lets the oldest go; never the tail. The segments
  // leave the map as in PruneHead, their files left to DeletePrunedSegments;
  // each turn of the writer lock examines at most kRetentionBatch of them, so
  // an Append waits for little. Append also enforces the limits itself,
  // dropping every segment they let go whenever it created a segment; a
  // failure there does not fail the append and reaches
  // Options::on_retention only. Unlike PruneHead, the new head is not
  // written at once: the next Sync, close or DeletePrunedSegments writes it
  // (a lost retention prune is only done again). `error` in the result: EIO
  // for a damaged file, or why a segment could not be examined.
  [[nodiscard]] RetentionResult ApplyRetention(int64_t now);

  // Segment size for segments created from now on (the tail keeps its own),
  // durable before returning; on failure nothing changes. EINVAL unless
  // ValidSegmentSize(size), EIO for a damaged file.
  [[nodiscard]] Result<void> SetSegmentSize(uint64_t size);

  // Changes the meta attributes (mode, uid, gid, retention, unknown keys) and
  // makes the change durable before returning; on failure nothing changes.
  // Changes of head or segment_size
  // made by `edit` are ignored (use PruneHead/SetSegmentSize). EINVAL for a
  // mode beyond the permission bits (07777), EIO for a damaged file.
  [[nodiscard]] Result<void> UpdateMeta(const std::function<void(Meta&)>& edit);

  uint64_t Size() const { return size_.load(std::memory_order_acquire); }
  uint64_t Head() const { return head_.load(std::memory_order_acquire); }
  // Every byte below this survives a power loss as it is now.
  uint64_t DurableSize() const { return durable_size_.load(std::memory_order_acquire); }
  Meta GetMeta() const;
  // The meta's mode alone (nullopt when none is stored), for a check on
  // every write that must not copy the whole meta.
  std::optional<uint32_t> Mode() const;
  std::vector<SegmentInfo> Segments() const;
  // Why the file is damaged, or nullopt when it is not.
  const std::optional<std::string>& Damage() const { return damage_; }
  // What recovery did when the file was opened, one sentence per action.
  const std::vector<std::string>& RecoveryLog() const { return recovery_log_; }
  const std::string& dir() const { return dir_; }
  // Segment descriptors currently open for this file (cache plus the
  // writer's); the directory lock's descriptor is not counted.
  size_t OpenDescriptors() const;
  // Closes every segment descriptor the file holds (after writing the write
  // buffer); later calls open what they need again. For a caller that keeps
  // many files open but idle and must bound its descriptors. The directory
  // lock's descriptor stays, since closing it would give up the ownership
  // (see Open): an idle open HPFile costs one descriptor. Extents already
  // handed out keep theirs.
  [[nodiscard]] Result<void> CloseDescriptors();
  // Changes each time a truncate starts or finishes (odd while one runs).
  // PreReader uses it to drop cached bytes a truncate may have replaced.
  uint64_t TruncateGeneration() const { return truncate_generation_.load(std::memory_order_acquire); }

 private:
  HPFile(Io& io, std::string dir, Fd dir_lock, const Options& options);

  // A contiguous piece of one segment: virtual [begin, end). end == 0: none.
  struct Piece {
    uint64_t begin = 0;
    uint64_t end = 0;
    uint64_t file_offset = 0;  // of `begin` in the segment file
    bool ends_slot = false;    // the piece reaches the end of its segment's slot
    std::shared_ptr<Fd> fd;    // the cached descriptor, when there was one
    std::shared_ptr<Segment> segment;  // set when `fd` is not, to open one
  };
  // The piece of [offset, end) in the segment holding `offset` (end 0 when
  // none does), with the cached descriptor if `cached_fd`; map_mu_ held.
  Piece PieceAtLocked(uint64_t offset, uint64_t end, bool cached_fd) const;
  // The pieces covering [offset, end) as far as they go without a gap;
  // map_mu_ held. The one place that maps offsets to segments.
  std::vector<Piece> LocateLocked(uint64_t offset, uint64_t end) const;
  // PlanRead's work, with each extent handed to `take` once its descriptor
  // is open instead of kept (`take` returns false to stop the plan there):
  // ReadAt reads each one and lets it go before the next.
  template <class Take>
  [[nodiscard]] Result<void> Plan(uint64_t offset, size_t length, ReadPlan& plan, Take take) const;
  // A read descriptor for `segment`, from the cache or opened (and cached).
  [[nodiscard]] Result<std::shared_ptr<Fd>> SegmentFd(const std::shared_ptr<Segment>& segment) const;
  uint64_t ReadableEnd(const Segment& segment, uint64_t size) const;
  // DIR/<the segment's name>.
  std::string SegmentPath(uint64_t base, uint64_t capacity) const;
  std::string SegmentPath(const Segment& segment) const { return SegmentPath(segment.base, segment.capacity); }

  [[nodiscard]] Result<void> CheckWritable() const;
  // Whether `length` more bytes after `start` stay within the largest file
  // size; a file an earlier version grew past it may not grow at all.
  static bool FitsMaxFileSize(uint64_t start, uint64_t length);
  [[nodiscard]] Result<uint64_t> AppendLocked(std::span<const std::byte> data);
  // AppendAt's check and gap fill, then AppendLocked.
  [[nodiscard]] Result<uint64_t> AppendAtLocked(uint64_t offset, Gap gap, std::span<const std::byte> data);
  // Append (no `offset`) and AppendAt: appends, then lets retention drop
  // what a roll made droppable.
  [[nodiscard]] Result<uint64_t> AppendWithRetention(std::optional<uint64_t> offset, Gap gap,
                                                     std::span<const std::byte> data);
  // Writes `zeros` sparse zeros then `data` at the end of the backing files,
  // rolling segments as needed. On failure the backing files are put back as
  // they were, zeros included. Returns the new end.
  [[nodiscard]] Result<uint64_t> ExtendLocked(uint64_t zeros, std::span<const std::byte> data);
  // A failed append could not cut the tail back: retry before writing more.
  [[nodiscard]] Result<void> TrimOverhangLocked();
  [[nodiscard]] Result<void> FlushLocked();
  // The shrinking part of Truncate; sync_mu_ held when n <= Head() (it
  // writes the meta).
  [[nodiscard]] Result<void> ShrinkLocked(uint64_t n);
  // Truncate(n) would delete every segment.
  bool TruncateLeavesNoSegment(uint64_t n) const;
  // The growing part of Truncate and GrowTo: n > Size(), writer_mu_ held.
  [[nodiscard]] Result<void> GrowLocked(uint64_t n);
  [[nodiscard]] Result<void> PruneHeadLocked(uint64_t n);
  // Moves the segments wholly below the head from the map to pruned_.
  void RetireBelowHeadLocked();
  // Deletes every pruned segment, newest first, for a truncate that leaves
  // no segment.
  [[nodiscard]] Result<void> DeleteAllPrunedLocked();
  // Drops up to `max_segments` segments the retention policy lets go.
  [[nodiscard]] RetentionResult RetainLocked(int64_t now, uint64_t max_segments);
  // Whether the policy lets segments_[index] go (with every one before it);
  // never the tail.
  [[nodiscard]] Result<bool> RetainOneLocked(const RetentionPolicy& policy, int64_t now, size_t index);
  // Segments ApplyRetention examines (a stat each, for an age limit) in one
  // turn of the writer lock.
  static constexpr uint64_t kRetentionBatch = 1024;
  // The tail's read-write descriptor, opened when the writer has none; it
  // stays open while writer_mu_ is held and the tail does not change.
  [[nodiscard]] Result<int> TailFdLocked();
  // Creates an empty segment at `base` of `capacity` and makes it the tail.
  [[nodiscard]] Result<void> AddSegmentLocked(uint64_t base, uint64_t capacity);
  // The capacity of segments created from now on (the meta's segment_size).
  uint64_t CurrentSegmentSize() const;
  // The capacity of the segment a grow by `remaining` bytes of zeros creates
  // next: the whole slots of `segment_size` before the last one, within
  // gap_capacity_limit_; `segment_size` when there are none.
  uint64_t GapSegmentCapacityLocked(uint64_t remaining, uint64_t segment_size) const;
  // Deletes the tail when it is empty (ends at `end`, its base) and wider
  // than `segment_size`.
  [[nodiscard]] Result<void> DropEmptyWideTailLocked(uint64_t end, uint64_t segment_size);
  // Removes the newest or the oldest segment from the map and the cache (the
  // file itself is unlinked by the caller first).
  void DropSegmentLocked(bool newest);
  void MarkDirtyLocked(const std::shared_ptr<Segment>& segment);
  // Applies `edit` to the meta and writes it; on failure puts the old one back.
  [[nodiscard]] Result<void> EditMeta(const std::function<void(Meta&)>& edit);
  // Writes the meta if it changed since it was last written. Takes sync_mu_.
  [[nodiscard]] Result<void> WriteMetaIfDirty();
  [[nodiscard]] Result<void> WriteMetaIfDirtySyncLocked();
  // Sync's middle: fdatasync of the pending segments, oldest first, then of
  // the directory if entries changed.
  [[nodiscard]] Result<void> SyncSegments(const PendingSync& pending);
  // Puts what `pending` took off the books back, for the next Sync.
  void ReturnUnsynced(PendingSync& pending);
  // Releases the part of the oldest segment below the head, now or, with
  // Options::defer_head_punch, at the next PunchBelowHead.
  [[nodiscard]] Result<void> PunchBelowHeadLocked();
  // What a punch below the head must cover: the oldest segment's descriptor
  // (null when nothing lies below the head) and the byte count from its start.
  struct HeadPunch {
    std::shared_ptr<Fd> fd;
    uint64_t length = 0;
  };
  [[nodiscard]] Result<HeadPunch> HeadPunchLocked();
  [[nodiscard]] Result<void> RunHeadPunch(const HeadPunch& punch);

  // Options::discard_segment, or an unlink.
  [[nodiscard]] Result<void> DiscardSegmentFile(const std::string& path);

  Io& io_;
  const std::string dir_;
  // Open on dir_ for the object's whole life, holding its lock: the
  // ownership of the directory (see Open). Declared early so that it is
  // released last, after every write the destructor makes.
  const Fd dir_lock_;
  const size_t write_buffer_size_;
  const std::function<Result<void>(const std::string&)> discard_segment_;
  const std::function<void(const RetentionResult&)> on_retention_;
  const bool retain_on_roll_;
  const bool defer_head_punch_;

  // Segments in base order. Readers copy what they need under a shared lock.
  // Holders of writer_mu_ are the only ones to change the deque, under an
  // exclusive lock with no I/O inside; they read it without map_mu_.
  mutable std::shared_mutex map_mu_;
  std::deque<std::shared_ptr<Segment>> segments_;

  // Invariant: head_ <= flushed_size_ <= size_ once every mutation finishes.
  std::atomic<uint64_t> size_{0};
  std::atomic<uint64_t> head_{0};
  std::atomic<uint64_t> durable_size_{0};
  std::atomic<uint64_t> truncate_generation_{0};
  mutable FdCache fd_cache_;  // guarded by map_mu_ (see fd_cache.h)

  // One mutation at a time. Held across an fsync only by a truncate that
  // leaves no segment (it writes the meta before the last one goes).
  mutable std::mutex writer_mu_;
  // The writer's read-write descriptor and the segment it belongs to.
  std::shared_ptr<Segment> tail_segment_;   // writer_mu_
  std::shared_ptr<Fd> tail_fd_;             // writer_mu_
  std::vector<std::shared_ptr<Segment>> dirty_segments_;  // writer_mu_: written since last sync
  bool dir_dirty_ = false;                  // writer_mu_: entries created/deleted since last sync
  // writer_mu_: what Open found may not be durable yet (an earlier process
  // need not have synced it); the first Sync covers it with one syncfs.
  bool inherited_unsynced_ = false;
  // More segments than this found by Open are synced with one syncfs.
  static constexpr size_t kInheritedFdatasyncLimit = 64;
  uint64_t sync_low_water_ = 0;             // writer_mu_: lowest size since the running Sync began
  bool tail_overhang_ = false;              // writer_mu_: the tail file is longer than flushed_size_
  uint64_t segments_created_ = 0;           // writer_mu_: segments ever created (a roll adds one)
  // writer_mu_: the largest gap segment to try; lowered when the backing
  // filesystem refuses a file that large.
  uint64_t gap_capacity_limit_ = format::kMaxFileSize;

  // Held across a deferred punch, taken after writer_mu_. A truncate that
  // lowers the head waits on it, so no punch still running with the old
  // head can hit bytes appended below it afterwards.
  std::mutex punch_mu_;

  // The meta as it should be on disk (head_ is copied in when it is written).
  mutable std::mutex meta_mu_;
  Meta meta_;                // meta_mu_
  bool meta_dirty_ = false;  // meta_mu_: meta_ or head_ differs from the file
  // sync_mu_: created without Options::durable_create and not synced since:
  // meta writes skip their syncs, and the first Sync fsyncs the meta before
  // the directory.
  bool meta_unsynced_ = false;

  // Appends not yet written to the backing files: bytes [flushed_size_, size_).
  // Modified only under writer_mu_ *and* buffer_mu_; readers take buffer_mu_.
  mutable std::mutex buffer_mu_;
  std::vector<std::byte> buffer_;
  std::atomic<uint64_t> flushed_size_{0};

  // Serializes Sync and meta writes; held across fsync, but only they (and a
  // truncate that writes the meta) take it. Taken before writer_mu_.
  std::mutex sync_mu_;
  // Set once, by the first fdatasync that failed; the text is written before
  // the flag and never changed after it.
  std::atomic<bool> sync_failure_{false};
  std::string sync_failure_text_;

  // The head of the meta on disk: DeletePrunedSegments deletes only below it.
  std::atomic<uint64_t> durable_head_{0};
  // Segments taken off the map by a prune, oldest first, whose files are
  // still to be deleted: as runs of contiguous slots of one capacity, so a
  // prune of any number of segments costs a few entries here. Taken after
  // writer_mu_ and map_mu_, never before.
  struct PrunedRun {
    uint64_t base = 0;  // of the oldest segment left in the run
    uint64_t capacity = 0;
    uint64_t count = 0;
  };
  void AddPrunedLocked(uint64_t base, uint64_t capacity);  // pruned_mu_ held
  mutable std::mutex pruned_mu_;
  std::deque<PrunedRun> pruned_;  // pruned_mu_
  uint64_t pruned_count_ = 0;     // pruned_mu_: segments in pruned_
  uint64_t pruned_bytes_ = 0;     // pruned_mu_
  // pruned_mu_: the map entries a prune took out, freed by the next
  // DeletePrunedSegments rather than in the prune: freeing a million of
  // them is most of what such a prune would cost.
  std::vector<std::vector<std::shared_ptr<Segment>>> retired_entries_;
  uint64_t segments_retired_ = 0;                // writer_mu_: segments ever moved to pruned_

  std::optional<std::string> damage_;
  std::vector<std::string> recovery_log_;
};

// Read-ahead for one sequential reader: fills a private buffer with large reads
// and serves small reads from it. Never returns bytes that a truncate has since
// replaced. Not thread-safe: one PreReader per reading thread. The HPFile must
// outlive it.
class PreReader {
 public:
  explicit PreReader(const HPFile& file, size_t buffer_size = 1 << 20);
  // Same contract as HPFile::ReadAt.
  [[nodiscard]] Result<size_t> ReadAt(uint64_t offset, std::span<std::byte> buf);

 private:
  const HPFile& file_;
  std::vector<std::byte> buffer_;
  uint64_t start_ = 0;       // virtual offset of buffer_[0]
  size_t filled_ = 0;        // valid bytes in buffer_
  uint64_t generation_ = 1;  // TruncateGeneration() when filled; odd = nothing cached
};

}  // namespace hpfile
