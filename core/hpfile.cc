// SPDX-License-Identifier: Apache-2.0
// HPFile (core/hpfile.h): opening and closing, the meta attributes, and
// introspection. The other concerns live beside it: hpfile_read.cc (reads),
// hpfile_append.cc (appends, segment rolls), hpfile_truncate.cc (truncate,
// head prune, retention) and hpfile_sync.cc (durability).
#include "core/hpfile.h"

#include <fcntl.h>

#include <algorithm>

#include "core/recovery.h"
#include "core/segment_name.h"
#include "core/text_file.h"

namespace hpfile {

namespace {

// Creates DIR as a new, empty HPFile. A crash midway leaves either nothing, an
// empty directory (a plain directory to the filesystem layer) or the file.
// Without `durable`, nothing of it is synced (Options::durable_create).
Result<void> CreateStore(Io& io, const std::string& dir, Meta meta, bool durable) {
  if (!ValidSegmentSize(meta.segment_size)) return Errno(EINVAL);
  meta.head = 0;
  if (auto made = io.Mkdir(dir, 0755); !made && !IsErrno(made.error(), EEXIST)) return made;
  if (auto written =
          WriteMetaAtomically(io, dir, meta, durable ? Durability::kSynced : Durability::kDeferred);
      !written) {
    return written;
  }
  if (!durable) return {};
  return SyncDir(io, ParentDir(dir));
}

}  // namespace

HPFile::HPFile(Io& io, std::string dir, Fd dir_lock, const Options& options)
    : io_(io),
      dir_(std::move(dir)),
      dir_lock_(std::move(dir_lock)),
      write_buffer_size_(options.write_buffer_size),
      discard_segment_(options.discard_segment),
      on_retention_(options.on_retention),
      retain_on_roll_(options.retain_on_roll),
      defer_head_punch_(options.defer_head_punch),
      fd_cache_(options.max_open_segments) {}

std::string HPFile::SegmentPath(uint64_t base, uint64_t capacity) const {
  return dir_ + "/" + FormatSegmentName({base, capacity});
}

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
  // A directory made here needs no parent sync yet: CreateStore syncs the
  // parent once the meta is in it.
  if (auto made = EnsureDirectory(io, dir, options.create_if_missing); !made) return std::unexpected(made.error());
  // Before anything is read: recovery and creation change the directory, and
  // so would a second owner's writes (EBUSY).
  auto lock = LockDirectory(io, dir);
  if (!lock) return std::unexpected(lock.error());

  auto scan = ScanStore(io, dir);
  bool created = false;
  if (scan && !scan->has_meta && scan->segments.empty() && scan->problems.empty()) {
    // An empty directory: a new file.
    if (!options.create_if_missing) return Errno(ENOENT);
    if (auto made = CreateStore(io, dir, options.initial_meta, options.durable_create); !made) {
      return std::unexpected(made.error());
    }
    created = true;
    scan = ScanStore(io, dir);
  }
  if (!scan) return std::unexpected(scan.error());

  RecoveryPlan plan = PlanRecovery(*scan);
  std::unique_ptr<HPFile> file(new HPFile(io, dir, std::move(*lock), options));
  file->meta_ = scan->meta.value_or(Meta{});
  file->meta_unsynced_ = created && !options.durable_create;
  if (!plan.damage) {
    if (auto applied = ApplyRecovery(io, dir, file->meta_, plan); !applied) return std::unexpected(applied.error());
  }
  file->meta_.head = plan.head;
  file->damage_ = plan.damage;
  file->recovery_log_ = plan.log;

  uint64_t end = plan.head;
  for (const ScannedSegment& scanned : plan.segments) {
    auto segment = std::make_shared<Segment>(scanned.name.base, scanned.name.capacity);
    // A healthy file's sealed segments are full; a damaged file's may not be,
    // and what lies past a slot belongs to no offset.
    segment->sealed_end = plan.damage ? scanned.name.base + std::min(scanned.length, scanned.name.capacity)
                                      : segment->slot_end();
    end = scanned.name.base + std::min(scanned.length, scanned.name.capacity);
    file->segments_.push_back(std::move(segment));
  }
  // ApplyRecovery made plan.head durable (or found it so), and every pruned
  // segment lies below it.
  file->durable_head_.store(plan.head);
  for (const ScannedSegment& scanned : plan.pruned) file->AddPrunedLocked(scanned.name.base, scanned.name.capacity);
  file->head_.store(std::min(plan.head, end));
  file->size_.store(end);
  file->flushed_size_.store(end);
  // What an earlier process wrote may still sit unsynced in the page cache, so
  // nothing above the head counts as durable until the first Sync covers it.
  file->durable_size_.store(std::min(plan.head, end));
  // So may the directory entries of those segments. The first Sync covers
  // a few with a fdatasync each, many with one syncfs (see SyncSegments).
  if (!plan.damage && file->segments_.size() > kInheritedFdatasyncLimit) {
    file->inherited_unsynced_ = true;
  } else if (!plan.damage) {
    file->dirty_segments_.assign(file->segments_.begin(), file->segments_.end());
    file->dir_dirty_ = true;
  }
  return file;
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

std::optional<uint32_t> HPFile::Mode() const {
  std::lock_guard lock(meta_mu_);
  return meta_.mode;
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
                     FormatSegmentName({segment->base, segment->capacity})});
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
