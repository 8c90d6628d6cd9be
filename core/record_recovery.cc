// SPDX-License-Identifier: Apache-2.0
// Opening a RecordLog: creating one, or reading CURRENT, removing the
// generations and temp files a crash left, opening the generation's HPFiles
// and recovering their contents (docs/RECORDS.md, "Recovery on open").
#include <string>
#include <utility>

#include "core/meta.h"
#include "core/record_internal.h"

namespace hpfile {

using namespace record_detail;
namespace rf = record_format;

// ---- opening -------------------------------------------------------------------------

RecordLog::RecordLog(Io& io, std::string dir, const RecordLogOptions& options)
    : io_(io), dir_(std::move(dir)), options_(options), element_size_(options.element_size) {}

RecordLog::~RecordLog() {
  // An unused compaction result would only be removed by the next Open.
  if (tmp_) tmp_->gen->obsolete.store(true);
  // The files close before the directory can pass to a log opened next.
  tmp_.reset();
  gen_.reset();
  if (owner_) ReleaseRecordLogOwner(*owner_);
}

Result<std::unique_ptr<RecordLog>> RecordLog::Open(const std::string& dir, const RecordLogOptions& options) {
  Io& io = options.io != nullptr ? *options.io : PosixIo::Default();
  if (!ValidSegmentSize(options.segment_size)) return Errno(EINVAL);
  std::unique_ptr<RecordLog> log(new RecordLog(io, dir, options));

  auto made = EnsureDirectory(io, dir, options.create_if_missing);
  if (!made) return std::unexpected(made.error());
  if (*made) {
    if (auto synced = SyncDir(io, ParentDir(dir)); !synced) return std::unexpected(synced.error());
  }
  // Before recovery, which deletes what it does not recognize, such as a
  // compaction another owner is writing.
  auto owner = AcquireRecordLogOwner(io, dir);
  if (!owner) return std::unexpected(owner.error());
  log->owner_ = std::move(*owner);
  auto current = io.Stat(dir + "/" + std::string(rf::kCurrentName));
  if (!current && !IsErrno(current.error(), ENOENT)) return std::unexpected(current.error());
  Result<void> opened = current ? log->OpenExisting() : Result<void>{};
  if (!current) {
    if (!options.create_if_missing) return Errno(ENOENT);
    opened = log->Create();
  }
  if (!opened) return std::unexpected(opened.error());
  return log;
}

Result<std::shared_ptr<RecordGeneration>> RecordLog::OpenGeneration(uint64_t number, uint64_t base, bool create) {
  auto gen = std::make_shared<RecordGeneration>();
  gen->io = &io_;
  gen->dir = dir_ + "/" + GenerationName(number);
  gen->number = number;
  gen->base = base;
  gen->element_size = element_size_;
  if (create) {
    if (auto made = io_.Mkdir(gen->dir, 0755); !made) return std::unexpected(made.error());
  }
  Options file_options;
  file_options.io = &io_;
  file_options.create_if_missing = create;
  file_options.initial_meta.segment_size = options_.segment_size;
  file_options.max_open_segments = options_.max_open_segments;
  auto data = HPFile::Open(gen->dir + "/" + std::string(rf::kDataName), file_options);
  if (!data) return std::unexpected(data.error());
  gen->data = std::move(*data);
  if (element_size_ == 0) {
    auto index = HPFile::Open(gen->dir + "/" + std::string(rf::kIndexName), file_options);
    if (!index) return std::unexpected(index.error());
    gen->index = std::move(*index);
  }
  if (create) {
    // The new entries must be on disk before CURRENT can name the generation.
    if (auto synced = SyncDir(io_, gen->dir); !synced) return std::unexpected(synced.error());
    if (auto synced = SyncDir(io_, dir_); !synced) return std::unexpected(synced.error());
  }
  return gen;
}

Result<void> RecordLog::WriteCurrent(uint64_t generation, uint64_t base) {
  return ReplaceFileAtomically(
      io_, dir_, rf::kCurrentName, rf::kCurrentTempName,
      SerializeManifest({.generation = generation, .element_size = element_size_, .base = base}));
}

Result<void> RecordLog::Create() {
  // Whatever is here was never named by a CURRENT: a creation that crashed.
  auto names = io_.ListDir(dir_);
  if (!names) return std::unexpected(names.error());
  for (const std::string& name : *names) {
    if (ParseGenerationName(name)) {
      if (auto removed = RemoveTree(io_, dir_ + "/" + name); !removed) return removed;
    } else if (name == rf::kCurrentTempName) {
      if (auto removed = io_.Unlink(dir_ + "/" + name); !removed) return removed;
    }
  }
  auto gen = OpenGeneration(1, 0, /*create=*/true);
  if (!gen) return std::unexpected(gen.error());
  if (auto written = WriteCurrent(1, 0); !written) return written;
  gen_ = std::move(*gen);
  return {};
}

Result<void> RecordLog::OpenExisting() {
  auto text = ReadSmallFile(io_, dir_ + "/" + std::string(rf::kCurrentName));
  if (!text) return std::unexpected(text.error());
  auto manifest = ParseManifest(*text);
  // Without a readable CURRENT there is no generation to read from at all.
  if (!manifest) return Errno(EIO);
  if (manifest->element_size != options_.element_size) return Errno(EINVAL);
  element_size_ = manifest->element_size;

  // Other generations are the old side of a finished compaction or the new
  // side of an unfinished one; a temp CURRENT is a switch that never happened.
  auto names = io_.ListDir(dir_);
  if (!names) return std::unexpected(names.error());
  bool removed_any = false;
  for (const std::string& name : *names) {
    const std::string path = dir_ + "/" + name;
    if (name == rf::kCurrentTempName) {
      if (auto gone = io_.Unlink(path); !gone) return gone;
      recovery_log_.push_back("removed " + name + " (an unfinished switch of generations)");
      removed_any = true;
    } else if (auto number = ParseGenerationName(name); number && *number != manifest->generation) {
      if (auto gone = RemoveTree(io_, path); !gone) return gone;
      recovery_log_.push_back("removed " + name + (*number < manifest->generation
                                                       ? " (replaced by a compaction)"
                                                       : " (written by an unfinished compaction)"));
      removed_any = true;
    }
  }
  if (removed_any) {
    if (auto synced = SyncDir(io_, dir_); !synced) return synced;
  }

  auto gen = OpenGeneration(manifest->generation, manifest->base, /*create=*/false);
  // CURRENT names a generation that is not there: no crash does that.
  if (!gen) return IsErrno(gen.error(), ENOENT) ? Errno(EIO) : std::unexpected(gen.error());
  gen_ = std::move(*gen);
  for (const std::string& line : gen_->data->RecoveryLog()) recovery_log_.push_back("data: " + line);
  if (gen_->index) {
    for (const std::string& line : gen_->index->RecoveryLog()) recovery_log_.push_back("index: " + line);
  }
  if (gen_->data->Damage()) {
    damage_ = "data: " + *gen_->data->Damage();
  } else if (gen_->index && gen_->index->Damage()) {
    damage_ = "index: " + *gen_->index->Damage();
  } else if (auto recovered = Recover(); !recovered) {
    return recovered;
  }
  first_.store(gen_->First());
  flushed_end_.store(gen_->End());
  return {};
}

Result<void> RecordLog::Recover() {
  RecordGeneration& gen = *gen_;
  HPFile& data = *gen.data;
  if (gen.fixed()) {
    if (const uint64_t torn = data.Size() % element_size_; torn != 0) {
      recovery_log_.push_back("cut a torn element of " + std::to_string(torn) + " bytes at the end");
      if (auto cut = data.Truncate(data.Size() - torn); !cut) return cut;
      if (auto synced = data.Sync(); !synced) return synced;
    }
    return {};
  }

  HPFile& index = *gen.index;
  if (const uint64_t torn = index.Size() % kEntrySize; torn != 0) {
    recovery_log_.push_back("cut a torn index entry of " + std::to_string(torn) + " bytes at the end");
    if (auto cut = index.Truncate(index.Size() - torn); !cut) return cut;
    if (auto synced = index.Sync(); !synced) return synced;
  }
  auto damaged = [&](std::string why) -> Result<void> {
    damage_ = std::move(why);
    return {};
  };
  auto valid_entry = [&](uint64_t position) -> Result<std::optional<Entry>> {
    Entry entry;
    auto state = gen.ProbeEntry(position, entry);
    if (!state) return std::unexpected(state.error());
    if (*state != EntryState::kValid) return std::optional<Entry>();
    return std::optional<Entry>(entry);
  };

  uint64_t first = gen.First();
  uint64_t end = gen.End();
  if (first < end) {
    // An unflushed prune to the end punched every entry, the last one too.
    Entry entry;
    auto at_last = gen.ProbeEntry(end - 1, entry);
    if (!at_last) return std::unexpected(at_last.error());
    auto at_first = gen.ProbeEntry(first, entry);
    if (!at_first) return std::unexpected(at_first.error());
    if (*at_last == EntryState::kZero && *at_first == EntryState::kZero) {
      recovery_log_.push_back("finished an interrupted prune: first position " + std::to_string(first) + " -> " +
                              std::to_string(end));
      if (auto pruned = index.PruneHead(gen.IndexOffset(end)); !pruned) return pruned;
      if (auto pruned = data.PruneHead(data.Size()); !pruned) return pruned;
      first = end;
    }
  }
  if (first < end) {
    // The index may point past the data only by the entries a lost data sync
    // left behind: cut back to the last element whose bytes exist.
    auto last = valid_entry(end - 1);
    if (!last) return std::unexpected(last.error());
    if (!*last) return damaged("index entry at " + PositionText(end - 1) + " is corrupt");
    if ((*last)->end() > data.Size()) {
      uint64_t lo = first, hi = end - 1;  // answer in [lo, hi]: first entry past the data
      while (lo < hi) {
        const uint64_t mid = lo + (hi - lo) / 2;
        auto entry = valid_entry(mid);
        if (!entry) return std::unexpected(entry.error());
        if (!*entry) return damaged("index entry at " + PositionText(mid) + " is corrupt");
        if ((*entry)->end() > data.Size()) {
          hi = mid;
        } else {
          lo = mid + 1;
        }
      }
      recovery_log_.push_back("cut the index from " + std::to_string(end) + " to " + std::to_string(lo) +
                              " elements: the rest pointed past the data");
      if (auto cut = index.Truncate(gen.IndexOffset(lo)); !cut) return cut;
      if (auto synced = index.Sync(); !synced) return synced;
      end = lo;
    }
  }
  if (first < end) {
    // An unflushed prune can come back after a power loss with its entries
    // punched to zeros, or with its index head behind the data's: finish it.
    auto behind = [&](uint64_t position) -> Result<bool> {
      Entry entry;
      auto state = gen.ProbeEntry(position, entry);
      if (!state) return std::unexpected(state.error());
      if (*state == EntryState::kZero) return true;
      if (*state == EntryState::kCorrupt) return Errno(EBADMSG);
      return entry.offset < data.Head();
    };
    auto at_first = behind(first);
    if (!at_first && IsErrno(at_first.error(), EBADMSG)) {
      return damaged("index entry at " + PositionText(first) + " is corrupt");
    }
    if (!at_first) return std::unexpected(at_first.error());
    if (*at_first) {
      uint64_t lo = first + 1, hi = end;  // first position not behind, in [lo, hi]
      while (lo < hi) {
        const uint64_t mid = lo + (hi - lo) / 2;
        auto b = behind(mid);
        if (!b && IsErrno(b.error(), EBADMSG)) return damaged("index entry at " + PositionText(mid) + " is corrupt");
        if (!b) return std::unexpected(b.error());
        if (*b) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      recovery_log_.push_back("finished an interrupted prune: first position " + std::to_string(first) + " -> " +
                              std::to_string(lo));
      if (auto pruned = index.PruneHead(gen.IndexOffset(lo)); !pruned) return pruned;
      if (lo < end) {
        auto entry = gen.ReadEntry(lo);
        if (!entry) return std::unexpected(entry.error());
        if (auto pruned = data.PruneHead(entry->offset); !pruned) return pruned;
      }
      first = lo;
    }
  }
  if (first < end) {
    auto last = gen.ReadEntry(end - 1);
    if (!last) return damaged("index entry at " + PositionText(end - 1) + " is corrupt");
    if (end - 1 > first) {
      auto before = gen.ReadEntry(end - 2);
      if (!before || before->end() != last->offset) {
        return damaged("index entries at " + PositionText(end - 2) + " and " + PositionText(end - 1) +
                       " are not contiguous");
      }
    }
    // Data flushed whose index never made it (a crash between the two).
    if (data.Size() > last->end()) {
      recovery_log_.push_back("cut " + std::to_string(data.Size() - last->end()) +
                              " bytes of data that no index entry reached");
      if (auto cut = data.Truncate(last->end()); !cut) return cut;
      if (auto synced = data.Sync(); !synced) return synced;
    }
    data_end_ = last->end();
  } else {
    // No entry says where the last element ended; later ones start at the end.
    data_end_ = data.Size();
  }
  return {};
}

Result<void> RecordLog::CheckWritable() const {
  if (damage_) return Errno(EIO);
  return {};
}

}  // namespace hpfile
