// SPDX-License-Identifier: Apache-2.0
// RecordLog: an append-only log of elements addressed by 0-based position, on
// top of HPFile (the capability of Grin's AppendOnlyFile, without its full-file
// rewrite to prune the head, its remove-then-rename replace and its single
// unsegmented file). Layout, recovery and costs: docs/RECORDS.md.
//
// Elements are fixed-size (one data HPFile, element p at a computable offset)
// or variable-size (a data HPFile plus an index HPFile of fixed entries).
// Appends stay pending, readable, until Flush makes them durable; Rewind moves
// the end back until the next Flush; Discard drops everything pending.
// PruneHead drops elements from the head in O(segments) and positions never
// shift. Compaction (WriteTmpPruned + ReplaceWithTmp) writes a new log without
// some positions and switches to it atomically; positions after a removed one
// move down (the new log is dense). Snapshot gives a read-only view that stays
// valid while the log changes.
//
// Thread-safety: any number of threads may call the const methods (Read,
// ReadInto, Size, SizeUnsynced, First, Snapshot, ...) concurrently with each
// other and with the mutating calls; mutating calls (Append, Flush, Discard,
// Rewind, PruneHead, WriteTmpPruned, ReplaceWithTmp, Compact) are serialized
// internally. Readers never wait for a writer's disk I/O.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "core/format.h"
#include "core/io.h"
#include "core/result.h"

namespace hpfile {

struct RecordLogOptions {
  // The I/O layer; nullptr means PosixIo::Default(). Must outlive the log and
  // its snapshots.
  Io* io = nullptr;
  // Create the log when DIR holds none; otherwise ENOENT.
  bool create_if_missing = true;
  // Bytes per element, or 0 for variable-size elements. Fixed when the log is
  // created; opening an existing log with a different value fails (EINVAL).
  uint32_t element_size = 0;
  // Segment size of the HPFiles of a new log (and of later generations).
  uint64_t segment_size = format::kDefaultSegmentSize;
  // Per HPFile (see Options::max_open_segments).
  size_t max_open_segments = 64;
};

class HPFile;
struct RecordGeneration;
struct RecordSnapshotState;
struct RecordLogOwner;

// A read-only view of a log as it was when taken, pending elements included.
// Stays valid, and unchanged, while the log appends, flushes, rewinds, prunes
// and compacts, and after the log is closed: it holds the log directory's
// lock (see RecordLog::Open), so no other process can open the log while it
// lives, and a log opened again in this process protects it as the first
// one did. Copyable (copies share the view); safe to read from any number of
// threads.
class RecordSnapshot {
 public:
  // The element at `position`. ENODATA below First(), ERANGE at or past
  // Size(), EIO when the bytes cannot be read back.
  [[nodiscard]] Result<std::vector<std::byte>> Read(uint64_t position) const;
  // Same, into `out` (resized to the element), reusing its memory.
  [[nodiscard]] Result<void> ReadInto(uint64_t position, std::vector<std::byte>& out) const;
  uint64_t First() const;
  // One past the last position of the view.
  uint64_t Size() const;

 private:
  friend class RecordLog;
  explicit RecordSnapshot(std::shared_ptr<RecordSnapshotState> state) : state_(std::move(state)) {}
  std::shared_ptr<RecordSnapshotState> state_;
};

class RecordLog {
  friend class RecordReader;

 public:
  // Opens the log in `dir`, creating it if allowed. Recovery runs first: an
  // interrupted compaction or creation is rolled back, a torn element or index
  // entry is cut, data an index never reached (a crash between the two) is
  // cut, an index that points past its data is cut back to the last element it
  // holds, and an unflushed prune whose punched entries came back is finished.
  // Anything else (a bad index entry inside the log, a damaged HPFile, an
  // unreadable CURRENT) opens the log damaged: reads work where they can,
  // mutations fail with EIO, Damage() says why.
  // One object owns a log: Open takes an flock on DIR before recovery and
  // fails with EBUSY while another RecordLog, in this process or another,
  // has it open, or while a snapshot taken through a log of another process
  // lives. The kernel drops the lock when the owner (and its snapshots) go,
  // or the process dies; a forked child does not inherit the ownership.
  // Errors: ENOENT (no log and !create_if_missing), EINVAL (element_size
  // differs from the log's, bad segment size), EACCES, EBUSY, EIO...
  [[nodiscard]] static Result<std::unique_ptr<RecordLog>> Open(const std::string& dir,
                                                               const RecordLogOptions& options = {});
  ~RecordLog();
  RecordLog(const RecordLog&) = delete;
  RecordLog& operator=(const RecordLog&) = delete;

  // Adds `element` at the end, pending until Flush, and returns its position.
  // EINVAL when a fixed-size log gets another size or an element is larger
  // than record_format::kMaxElementSize; EIO when damaged.
  [[nodiscard]] Result<uint64_t> Append(std::span<const std::byte> element);

  // The element at `position`, pending or flushed. ENODATA below First()
  // (pruned or compacted away), ERANGE at or past SizeUnsynced(), EIO when
  // its index entry is corrupt or its bytes are missing.
  [[nodiscard]] Result<std::vector<std::byte>> Read(uint64_t position) const;
  [[nodiscard]] Result<void> ReadInto(uint64_t position, std::vector<std::byte>& out) const;

  // Makes the pending rewind and appends (and earlier prunes) durable: the
  // data is appended and synced before the index, so the index never points
  // past durable data. On error what is still pending stays pending and a
  // later Flush retries; a rewind that reached the disk stays applied. After
  // a failed fdatasync every later Flush fails with EIO until the log is
  // reopened (HPFile::Sync).
  [[nodiscard]] Result<void> Flush();
  // Drops the pending appends and the pending rewind.
  void Discard();
  // Moves the end back to `position` (SizeUnsynced() becomes `position`),
  // dropping pending elements past it; flushed elements past it are dropped
  // at the next Flush, or kept by Discard. EINVAL below First() or past
  // SizeUnsynced(); EIO when damaged.
  [[nodiscard]] Result<void> Rewind(uint64_t position);

  // Drops flushed elements below `position`: First() becomes
  // min(max(First(), position), the flushed end after any pending rewind).
  // Positions never shift. Takes effect at once and becomes durable at the
  // next Flush. EIO when damaged.
  [[nodiscard]] Result<void> PruneHead(uint64_t position);

  // Writes a new generation holding the flushed elements [First(), Size())
  // except `positions` (in any order; positions below First() are ignored),
  // durable but not yet in use. Replaces an earlier unused one. Mutations wait
  // for it (it copies the data); readers do not. EINVAL for a position at or
  // past Size(); EBUSY with pending changes; EIO when damaged.
  [[nodiscard]] Result<void> WriteTmpPruned(std::span<const uint64_t> positions);
  // Switches to the generation WriteTmpPruned wrote, atomically: after a crash
  // at any point the log opens as the old or the new one. Elements past a
  // removed position move down by the number removed below them; First()
  // stays. Readers and snapshots of the old generation keep it until they let
  // go; its files are deleted then (or by the next Open after a crash).
  // ENOENT without a WriteTmpPruned; ESTALE (and the new generation is
  // dropped) when the log changed since; EBUSY with pending changes.
  [[nodiscard]] Result<void> ReplaceWithTmp();
  // WriteTmpPruned then ReplaceWithTmp.
  [[nodiscard]] Result<void> Compact(std::span<const uint64_t> positions);

  // A read-only view of the log as it is now, pending elements included.
  // Costs O(segments) plus a copy of the pending elements; later prunes and
  // rewinds copy the bytes they are about to destroy into the live snapshots
  // that can still see them (at most a segment per HPFile each).
  [[nodiscard]] Result<RecordSnapshot> Snapshot() const;

  // The first readable position.
  uint64_t First() const { return first_.load(std::memory_order_acquire); }
  // One past the last flushed element (before a pending rewind).
  uint64_t Size() const { return flushed_end_.load(std::memory_order_acquire); }
  // One past the last element, pending ones included, after a pending rewind.
  uint64_t SizeUnsynced() const;
  // 0 for variable-size elements.
  uint32_t element_size() const { return element_size_; }
  const std::string& dir() const { return dir_; }
  const std::optional<std::string>& Damage() const { return damage_; }
  // What recovery did on Open, one sentence per action.
  const std::vector<std::string>& RecoveryLog() const { return recovery_log_; }

 private:
  RecordLog(Io& io, std::string dir, const RecordLogOptions& options);

  struct Pending {
    std::vector<std::byte> bytes;
    std::vector<uint64_t> ends;  // end of each pending element in `bytes`
  };
  struct TmpGeneration;

  [[nodiscard]] Result<void> OpenExisting();
  [[nodiscard]] Result<void> Create();
  [[nodiscard]] Result<void> Recover();
  [[nodiscard]] Result<void> CheckWritable() const;
  // HPFile::PruneHead, then the deletion of the segments it dropped.
  [[nodiscard]] static Result<void> PruneAndDelete(HPFile& file, uint64_t offset);
  [[nodiscard]] Result<std::shared_ptr<RecordGeneration>> OpenGeneration(uint64_t number, uint64_t base,
                                                                          bool create);
  [[nodiscard]] Result<void> WriteCurrent(uint64_t generation, uint64_t base);
  [[nodiscard]] Result<void> ReadOnce(uint64_t position, std::vector<std::byte>& out, uint64_t& seq) const;
  // The start of every read of `position`: ENODATA or ERANGE; or a pending
  // element, copied into `out` (and null returned); or the generation whose
  // files hold it. `seq` is change_seq_ as of the figures used.
  [[nodiscard]] Result<std::shared_ptr<RecordGeneration>> StartRead(uint64_t position, std::vector<std::byte>& out,
                                                                     uint64_t& seq) const;
  // Brings the files back to the flushed elements [.., end) (after a rewind
  // or a failed Flush): index first and synced, so it never points past data.
  [[nodiscard]] Result<void> CutTo(uint64_t end);
  // Copies [begin, end) of the current generation's data or index file, as
  // far as it lies in the segment file at `segment_path`, into every live
  // snapshot that still reads it from that file, before a prune or truncate
  // changes those bytes in place.
  [[nodiscard]] Result<void> PreserveForSnapshots(bool index, const std::string& segment_path, uint64_t begin,
                                                  uint64_t end);
  [[nodiscard]] Result<void> PreserveTruncate(bool index, uint64_t n);
  [[nodiscard]] Result<void> PreservePrune(bool index, uint64_t n);
  // Data offset where the element at `position` (flushed, >= First()) starts,
  // or where the next appended element will start when position == end.
  [[nodiscard]] Result<uint64_t> DataOffsetOf(const RecordGeneration& gen, uint64_t position, uint64_t end) const;

  Io& io_;
  const std::string dir_;
  // The directory's lock and the live snapshots, shared with the snapshots
  // (see Open). Declared early so that it is released last.
  std::shared_ptr<RecordLogOwner> owner_;
  const RecordLogOptions options_;
  uint32_t element_size_ = 0;

  // One mutation at a time; held across I/O. Readers never take it.
  mutable std::mutex writer_mu_;

  // Guards gen_, pending_, rewind_ and the figures' changes; never held across
  // a sync. Snapshot holds it shared while it maps the files.
  mutable std::shared_mutex mu_;
  std::shared_ptr<RecordGeneration> gen_;
  Pending pending_;
  // The pending rewind: positions at or past it are not read from the files.
  std::optional<uint64_t> rewind_;
  std::atomic<uint64_t> first_{0};
  std::atomic<uint64_t> flushed_end_{0};
  // Bumped before anything destroys bytes readers may be reading (truncate,
  // prune, generation switch); a read that saw it change starts over.
  std::atomic<uint64_t> change_seq_{0};

  // Data offset where the next flushed element starts (variable-size only).
  uint64_t data_end_ = 0;  // writer_mu_
  std::unique_ptr<TmpGeneration> tmp_;  // writer_mu_
  // Counts flushes, prunes and rewinds reaching the files, for ESTALE.
  uint64_t mutation_count_ = 0;  // writer_mu_

  std::optional<std::string> damage_;
  std::vector<std::string> recovery_log_;
};

// An element's bytes, valid for as long as the view is held: it shares the
// buffer they lie in.
struct RecordView {
  std::shared_ptr<const std::vector<std::byte>> buffer;
  std::span<const std::byte> bytes;
};

// Reads without a copy per element, for one thread (the way qmdb's
// PreReader and Grin's mmap-backed reads are used): one large read fills a
// buffer with the elements from the one asked for onwards (and, for
// variable-size elements, another with their index entries), and Read
// returns views into it. A sequential scan costs one pread per buffer, not
// one or two per element. A view held by the caller keeps its buffer; the
// reader then fills a new one. Never returns bytes a prune, rewind or
// compaction has replaced since they were read. After a compaction the
// reader keeps the old generation's files until its next Read. Not
// thread-safe: one reader per thread. The log must outlive it.
class RecordReader {
 public:
  explicit RecordReader(const RecordLog& log, size_t buffer_size = 1 << 20);
  // The element at `position`; same errors as RecordLog::Read. A pending
  // element is copied, into a buffer of its own.
  [[nodiscard]] Result<RecordView> Read(uint64_t position);

 private:
  // Bytes [start, start + filled) of one HPFile of generation `gen_`.
  struct ReadAhead {
    std::shared_ptr<std::vector<std::byte>> buffer;
    uint64_t start = 0;
    size_t filled = 0;
  };
  [[nodiscard]] Result<RecordView> ReadOnce(uint64_t position, uint64_t& seq);
  // [offset, offset + length) of `file`, from `ahead` or read into it.
  [[nodiscard]] Result<RecordView> View(ReadAhead& ahead, const HPFile& file, uint64_t offset,
                                        uint64_t length) const;

  const RecordLog& log_;
  const size_t buffer_size_;
  std::shared_ptr<RecordGeneration> gen_;  // what the buffers were read from
  uint64_t seq_ = 0;                       // the log's change counter then
  ReadAhead data_;
  ReadAhead index_;
};

}  // namespace hpfile
