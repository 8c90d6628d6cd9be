// SPDX-License-Identifier: Apache-2.0
// What the files of RecordLog (record_log.h) share, and nothing a user of
// the library calls: the index entry and CURRENT codecs (record_codec.cc),
// a generation's files, and the state behind snapshots and the directory's
// ownership (record_snapshot.cc). Which file holds what: docs/RECORDS.md.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/hpfile.h"
#include "core/io.h"
#include "core/record_format.h"
#include "core/record_log.h"
#include "core/result.h"
#include "core/text_file.h"

namespace hpfile {
namespace record_detail {

constexpr uint64_t kEntrySize = record_format::kIndexEntrySize;

// ---- names and CURRENT (record_codec.cc) --------------------------------------------------

// "gen-NNN...": the directory of generation `number`.
std::string GenerationName(uint64_t number);
// The number of a generation directory's name; nullopt for any other name.
std::optional<uint64_t> ParseGenerationName(std::string_view name);

// What CURRENT says.
struct Manifest {
  uint64_t generation = 0;
  uint32_t element_size = 0;
  uint64_t base = 0;
};

std::string SerializeManifest(const Manifest& m);
// On failure, a sentence saying what is wrong.
[[nodiscard]] std::expected<Manifest, std::string> ParseManifest(std::string_view text);

// ---- index entries (record_codec.cc) ------------------------------------------------------

struct Entry {
  uint64_t offset = 0;
  uint32_t size = 0;
  uint64_t end() const { return offset + size; }
};

// Writes the kEntrySize bytes of `entry`, the entry of `position`, to `out`.
void EncodeEntry(std::byte* out, const Entry& entry, uint64_t position);

enum class EntryState { kValid, kZero, kCorrupt };

// Reads the kEntrySize bytes at `in` as the entry of `position`: kValid when
// its check matches, kZero when all are zero (a punched or zero-filled
// range), kCorrupt otherwise.
EntryState DecodeEntry(const std::byte* in, uint64_t position, Entry& entry);

std::string PositionText(uint64_t position);

}  // namespace record_detail

// One generation directory: the data HPFile and, for variable-size elements,
// the index HPFile. Element p of the log is element p - base of the files.
// Shared by the log and its in-flight readers; when a compaction replaced it,
// the last one to let go deletes its directory.
struct RecordGeneration {
  Io* io = nullptr;
  std::string dir;
  uint64_t number = 0;
  uint64_t base = 0;
  uint32_t element_size = 0;
  std::unique_ptr<HPFile> data;
  std::unique_ptr<HPFile> index;  // null for fixed-size elements
  std::atomic<bool> obsolete{false};

  ~RecordGeneration() {
    data.reset();
    index.reset();
    // Best effort: a leftover is removed by the next Open.
    if (obsolete.load()) {
      if (RemoveTree(*io, dir)) (void)SyncDir(*io, ParentDir(dir));
    }
  }

  bool fixed() const { return element_size != 0; }
  uint64_t IndexOffset(uint64_t position) const { return (position - base) * record_detail::kEntrySize; }
  uint64_t FixedOffset(uint64_t position) const { return (position - base) * element_size; }

  // Positions held by the files: [First, End).
  uint64_t End() const {
    return base + (fixed() ? data->Size() / element_size : index->Size() / record_detail::kEntrySize);
  }
  uint64_t First() const {
    const uint64_t head = fixed() ? data->Head() : index->Head();
    const uint64_t unit = fixed() ? element_size : record_detail::kEntrySize;
    return std::min(End(), base + (head + unit - 1) / unit);
  }

  // The raw entry at `position`, for recovery: kZero and kCorrupt are answers.
  [[nodiscard]] Result<record_detail::EntryState> ProbeEntry(uint64_t position, record_detail::Entry& entry) const {
    std::byte raw[record_detail::kEntrySize];
    auto n = index->ReadAt(IndexOffset(position), raw);
    if (!n) return std::unexpected(n.error());
    if (*n != record_detail::kEntrySize) return Errno(EIO);
    return record_detail::DecodeEntry(raw, position, entry);
  }

  [[nodiscard]] Result<record_detail::Entry> ReadEntry(uint64_t position) const {
    record_detail::Entry entry;
    auto state = ProbeEntry(position, entry);
    if (!state) return std::unexpected(state.error());
    if (*state != record_detail::EntryState::kValid) return Errno(EIO);
    return entry;
  }
};

struct RecordLog::TmpGeneration {
  std::shared_ptr<RecordGeneration> gen;
  uint64_t end = 0;       // one past its last position
  uint64_t data_end = 0;  // its data_end_
  // The log it was written from, for ESTALE.
  uint64_t source_generation = 0;
  uint64_t source_mutations = 0;
};

// A frozen byte range [begin, end) of one HPFile: the backing pieces it had
// when the snapshot was taken (their descriptors keep even deleted segments
// readable), and copies of bytes that a later prune or truncate destroyed in
// place.
struct FrozenFile {
  struct Piece {
    uint64_t begin = 0;  // virtual offset of the piece's first byte
    std::shared_ptr<const Fd> fd;
    uint64_t file_offset = 0;
    uint64_t length = 0;
  };
  uint64_t begin = 0;
  uint64_t end = 0;
  std::vector<Piece> pieces;
  mutable std::shared_mutex mu;
  // Non-overlapping copies keyed by virtual offset. mu.
  std::map<uint64_t, std::vector<std::byte>> overlays;

  [[nodiscard]] Result<void> Map(const HPFile& file, uint64_t from, uint64_t to) {
    begin = from;
    end = to;
    if (from >= to) return {};
    auto extents = file.MapRange(from, to - from);
    if (!extents) return std::unexpected(extents.error());
    uint64_t at = from;
    for (Extent& e : *extents) {
      pieces.push_back({.begin = at, .fd = std::move(e.fd), .file_offset = e.file_offset, .length = e.length});
      at += e.length;
    }
    if (at != to) return Errno(EIO);
    return {};
  }

  // The parts of [from, to) no overlay covers yet. Caller: the log's writer.
  std::vector<std::pair<uint64_t, uint64_t>> Uncovered(uint64_t from, uint64_t to) const {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    uint64_t at = from;
    auto it = overlays.upper_bound(at);
    if (it != overlays.begin()) {
      auto prev = std::prev(it);
      at = std::max(at, prev->first + prev->second.size());
    }
    for (; at < to && it != overlays.end() && it->first < to; ++it) {
      if (it->first > at) out.emplace_back(at, it->first);
      at = std::max(at, it->first + it->second.size());
    }
    if (at < to) out.emplace_back(at, to);
    return out;
  }

  [[nodiscard]] Result<void> Read(Io& io, uint64_t offset, std::span<std::byte> out) const {
    if (offset < begin || offset + out.size() > end) return Errno(EIO);
    std::shared_lock lock(mu);
    uint64_t at = offset;
    const uint64_t stop = offset + out.size();
    while (at < stop) {
      std::byte* dest = out.data() + (at - offset);
      auto it = overlays.upper_bound(at);
      if (it != overlays.begin()) {
        auto prev = std::prev(it);
        const uint64_t prev_end = prev->first + prev->second.size();
        if (prev_end > at) {
          const uint64_t n = std::min(prev_end, stop) - at;
          std::memcpy(dest, prev->second.data() + (at - prev->first), n);
          at += n;
          continue;
        }
      }
      const uint64_t limit = std::min(stop, it == overlays.end() ? stop : it->first);
      auto piece = std::upper_bound(pieces.begin(), pieces.end(), at,
                                    [](uint64_t value, const Piece& p) { return value < p.begin; });
      if (piece == pieces.begin()) return Errno(EIO);
      --piece;
      const uint64_t n = std::min(limit, piece->begin + piece->length) - at;
      if (n == 0) return Errno(EIO);
      auto got = ReadFull(io, piece->fd->get(), std::span(dest, n), piece->file_offset + (at - piece->begin));
      if (!got) return std::unexpected(got.error());
      if (*got != n) return Errno(EIO);
      at += n;
    }
    return {};
  }
};

// A log directory's ownership in this process: the descriptor holding its
// lock, held by the open RecordLog and by every snapshot taken through it,
// so that no other process can open the log (and change bytes in place)
// while a snapshot may read them; a RecordLog opened again in this process
// takes it over, snapshots included, and protects them as its own.
struct RecordLogOwner {
  ~RecordLogOwner();

  Fd lock;
  std::pair<dev_t, ino_t> key;  // of the directory
  // A RecordLog object has the directory open. Guarded by OwnerRegistry::mu.
  bool log_open = false;
  std::mutex mu;
  std::vector<std::weak_ptr<RecordSnapshotState>> snapshots;  // mu

  // The live snapshots of generation `generation`.
  std::vector<std::shared_ptr<RecordSnapshotState>> LiveSnapshots(uint64_t generation);
  void AddSnapshot(std::weak_ptr<RecordSnapshotState> snapshot);
};

// The owner of DIR for a RecordLog about to open it: the one a closed log of
// this process left to its snapshots, or a new one holding the lock. EBUSY
// when a RecordLog object has it open, or another process holds it.
[[nodiscard]] Result<std::shared_ptr<RecordLogOwner>> AcquireRecordLogOwner(Io& io, const std::string& dir);
// The RecordLog object that had the owner closes; its snapshots keep it.
void ReleaseRecordLogOwner(RecordLogOwner& owner);

struct RecordSnapshotState {
  Io* io = nullptr;
  // Keeps the log's directory locked while the snapshot lives.
  std::shared_ptr<RecordLogOwner> owner;
  uint64_t generation = 0;
  uint32_t element_size = 0;
  uint64_t base = 0;
  uint64_t first = 0;
  uint64_t flushed_end = 0;  // positions below come from the files, the rest from `pending`
  uint64_t end = 0;
  FrozenFile data;
  FrozenFile index;
  std::vector<std::byte> pending_bytes;
  std::vector<uint64_t> pending_ends;

  [[nodiscard]] Result<void> ReadInto(uint64_t position, std::vector<std::byte>& out) const {
    if (position < first) return Errno(ENODATA);
    if (position >= end) return Errno(ERANGE);
    if (position >= flushed_end) {
      const size_t i = position - flushed_end;
      const uint64_t from = i == 0 ? 0 : pending_ends[i - 1];
      out.assign(pending_bytes.begin() + static_cast<std::ptrdiff_t>(from),
                 pending_bytes.begin() + static_cast<std::ptrdiff_t>(pending_ends[i]));
      return {};
    }
    if (element_size != 0) {
      out.resize(element_size);
      return data.Read(*io, (position - base) * element_size, out);
    }
    std::byte raw[record_detail::kEntrySize];
    if (auto got = index.Read(*io, (position - base) * record_detail::kEntrySize, raw); !got) return got;
    record_detail::Entry entry;
    if (record_detail::DecodeEntry(raw, position, entry) != record_detail::EntryState::kValid) return Errno(EIO);
    out.resize(entry.size);
    return data.Read(*io, entry.offset, out);
  }
};

}  // namespace hpfile
