// SPDX-License-Identifier: Apache-2.0
#include "core/record_log.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <string_view>
#include <thread>
#include <utility>

#include "core/hpfile.h"
#include "core/meta.h"
#include "core/record_format.h"

namespace hpfile {

namespace rf = record_format;

namespace {

constexpr uint64_t kEntrySize = rf::kIndexEntrySize;
// A read that keeps losing its bytes to concurrent prunes and truncates gives
// up after this many attempts and reports what it last saw.
constexpr int kReadAttempts = 64;
// Elements copied per batch by compaction.
constexpr uint64_t kCopyBatchBytes = 1 << 20;
constexpr uint64_t kCopyBatchEntries = 4096;

std::string GenerationName(uint64_t number) {
  char name[64];
  std::snprintf(name, sizeof name, "%.*s%0*" PRIu64, static_cast<int>(rf::kGenerationPrefix.size()),
                rf::kGenerationPrefix.data(), rf::kGenerationDigits, number);
  return name;
}

std::optional<uint64_t> ParseU64(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::optional<uint64_t> ParseGenerationName(std::string_view name) {
  if (!name.starts_with(rf::kGenerationPrefix)) return std::nullopt;
  name.remove_prefix(rf::kGenerationPrefix.size());
  if (name.size() != static_cast<size_t>(rf::kGenerationDigits)) return std::nullopt;
  return ParseU64(name);
}

struct Manifest {
  uint64_t generation = 0;
  uint32_t element_size = 0;
  uint64_t base = 0;
};

std::string SerializeManifest(const Manifest& m) {
  std::string out;
  auto line = [&](std::string_view key, uint64_t value) {
    out.append(key).append("=").append(std::to_string(value)).append("\n");
  };
  line(rf::kKeyFormat, rf::kVersion);
  line(rf::kKeyGeneration, m.generation);
  line(rf::kKeyElementSize, m.element_size);
  line(rf::kKeyBase, m.base);
  return out;
}

std::expected<Manifest, std::string> ParseManifest(std::string_view text) {
  std::map<std::string, uint64_t, std::less<>> values;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) return std::unexpected("line without '=': " + std::string(line));
    auto value = ParseU64(line.substr(eq + 1));
    if (!value) return std::unexpected("bad number in line: " + std::string(line));
    values[std::string(line.substr(0, eq))] = *value;
  }
  for (auto key : {rf::kKeyFormat, rf::kKeyGeneration, rf::kKeyElementSize, rf::kKeyBase}) {
    if (!values.contains(key)) return std::unexpected("missing key " + std::string(key));
  }
  if (values.find(rf::kKeyFormat)->second != static_cast<uint64_t>(rf::kVersion)) {
    return std::unexpected("unknown format " + std::to_string(values.find(rf::kKeyFormat)->second));
  }
  const uint64_t element_size = values.find(rf::kKeyElementSize)->second;
  if (element_size > rf::kMaxElementSize) return std::unexpected("element_size out of range");
  return Manifest{.generation = values.find(rf::kKeyGeneration)->second,
                  .element_size = static_cast<uint32_t>(element_size),
                  .base = values.find(rf::kKeyBase)->second};
}

Result<std::string> ReadSmallFile(Io& io, const std::string& path) {
  auto fd = Fd::Open(io, path, O_RDONLY);
  if (!fd) return std::unexpected(fd.error());
  std::string text;
  std::vector<std::byte> chunk(4096);
  for (uint64_t offset = 0;;) {
    auto n = ReadFull(io, fd->get(), chunk, offset);
    if (!n) return std::unexpected(n.error());
    text.append(reinterpret_cast<const char*>(chunk.data()), *n);
    offset += *n;
    if (*n < chunk.size()) return text;
    if (text.size() > (1 << 20)) return Errno(EFBIG);
  }
}

// Replaces DIR/NAME atomically: temp name, fsync, rename, fsync DIR. `renamed`
// tells the caller whether the new content is in place even when the final
// directory sync failed.
Result<void> WriteFileAtomically(Io& io, const std::string& dir, std::string_view name, std::string_view temp_name,
                                 std::string_view text, bool& renamed) {
  renamed = false;
  const std::string temp = dir + "/" + std::string(temp_name);
  {
    auto fd = Fd::Open(io, temp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!fd) return std::unexpected(fd.error());
    auto bytes = std::as_bytes(std::span(text.data(), text.size()));
    Result<void> done = WriteFull(io, fd->get(), bytes, 0);
    if (done) done = io.Fsync(fd->get());
    if (!done) {
      fd->Reset();
      (void)io.Unlink(temp);
      return done;
    }
  }
  if (auto moved = io.Rename(temp, dir + "/" + std::string(name)); !moved) {
    (void)io.Unlink(temp);
    return moved;
  }
  renamed = true;
  return SyncDir(io, dir);
}

// Deletes PATH and everything under it; a missing PATH is not an error.
Result<void> RemoveTree(Io& io, const std::string& path) {
  auto names = io.ListDir(path);
  if (!names) return IsErrno(names.error(), ENOENT) ? Result<void>{} : std::unexpected(names.error());
  for (const std::string& name : *names) {
    const std::string child = path + "/" + name;
    auto st = io.Stat(child);
    if (!st) {
      if (IsErrno(st.error(), ENOENT)) continue;
      return std::unexpected(st.error());
    }
    auto removed = S_ISDIR(st->st_mode) ? RemoveTree(io, child) : io.Unlink(child);
    if (!removed && !IsErrno(removed.error(), ENOENT)) return removed;
  }
  if (auto gone = io.Rmdir(path); !gone && !IsErrno(gone.error(), ENOENT)) return gone;
  return {};
}

// ---- index entries -----------------------------------------------------------

struct Entry {
  uint64_t offset = 0;
  uint32_t size = 0;
  uint64_t end() const { return offset + size; }
};

// Never 0, so an all-zero entry (a punched or zero-filled range) never passes.
uint32_t EntryCheck(uint64_t offset, uint32_t size, uint64_t position) {
  uint64_t x = (offset + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t{size} + 1) * 0xC2B2AE3D27D4EB4Full ^
               (position + 1) * 0x165667B19E3779F9ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  const auto check = static_cast<uint32_t>(x ^ (x >> 32));
  return check == 0 ? 1 : check;
}

void PutLe(std::byte* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<std::byte>(value >> (8 * i));
}

uint64_t GetLe(const std::byte* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= std::to_integer<uint64_t>(in[i]) << (8 * i);
  return value;
}

void EncodeEntry(std::byte* out, const Entry& entry, uint64_t position) {
  PutLe(out, entry.offset, 8);
  PutLe(out + 8, entry.size, 4);
  PutLe(out + 12, EntryCheck(entry.offset, entry.size, position), 4);
}

enum class EntryState { kValid, kZero, kCorrupt };

EntryState DecodeEntry(const std::byte* in, uint64_t position, Entry& entry) {
  entry.offset = GetLe(in, 8);
  entry.size = static_cast<uint32_t>(GetLe(in + 8, 4));
  const auto check = static_cast<uint32_t>(GetLe(in + 12, 4));
  if (check == EntryCheck(entry.offset, entry.size, position)) return EntryState::kValid;
  if (std::all_of(in, in + kEntrySize, [](std::byte b) { return b == std::byte{0}; })) return EntryState::kZero;
  return EntryState::kCorrupt;
}

std::string PositionText(uint64_t position) { return "position " + std::to_string(position); }

}  // namespace

// ---- generations -----------------------------------------------------------------

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
  uint64_t IndexOffset(uint64_t position) const { return (position - base) * kEntrySize; }
  uint64_t FixedOffset(uint64_t position) const { return (position - base) * element_size; }

  // Positions held by the files: [First, End).
  uint64_t End() const {
    return base + (fixed() ? data->Size() / element_size : index->Size() / kEntrySize);
  }
  uint64_t First() const {
    const uint64_t head = fixed() ? data->Head() : index->Head();
    const uint64_t unit = fixed() ? element_size : kEntrySize;
    return std::min(End(), base + (head + unit - 1) / unit);
  }

  // The raw entry at `position`, for recovery: kZero and kCorrupt are answers.
  Result<EntryState> ProbeEntry(uint64_t position, Entry& entry) const {
    std::byte raw[kEntrySize];
    auto n = index->ReadAt(IndexOffset(position), raw);
    if (!n) return std::unexpected(n.error());
    if (*n != kEntrySize) return Errno(EIO);
    return DecodeEntry(raw, position, entry);
  }

  Result<Entry> ReadEntry(uint64_t position) const {
    Entry entry;
    auto state = ProbeEntry(position, entry);
    if (!state) return std::unexpected(state.error());
    if (*state != EntryState::kValid) return Errno(EIO);
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

// ---- snapshots ---------------------------------------------------------------------

namespace {

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

  Result<void> Map(const HPFile& file, uint64_t from, uint64_t to) {
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

  Result<void> Read(Io& io, uint64_t offset, std::span<std::byte> out) const {
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

}  // namespace

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

namespace {

// The owners alive in this process, by directory identity.
struct OwnerRegistry {
  std::mutex mu;
  std::map<std::pair<dev_t, ino_t>, std::weak_ptr<RecordLogOwner>> owners;  // mu

  static OwnerRegistry& Get() {
    // Never destroyed: snapshots may outlive the statics.
    static OwnerRegistry* const registry = [] {
      auto* made = new OwnerRegistry;
      // A forked child inherits the descriptors, not the ownership: its
      // opens must find the logs locked, as any other process does.
      ::pthread_atfork([] { Get().mu.lock(); }, [] { Get().mu.unlock(); },
                       [] {
                         Get().owners.clear();
                         Get().mu.unlock();
                       });
      return made;
    }();
    return *registry;
  }

  // The owner of DIR for a RecordLog about to open it: the one a closed log
  // of this process left to its snapshots, or a new one holding the lock.
  // EBUSY when a RecordLog object has it open, or another process holds it.
  Result<std::shared_ptr<RecordLogOwner>> Acquire(Io& io, const std::string& dir) {
    auto fd = Fd::Open(io, dir, O_RDONLY | O_DIRECTORY);
    if (!fd) return std::unexpected(fd.error());
    auto st = io.Fstat(fd->get());
    if (!st) return std::unexpected(st.error());
    const std::pair<dev_t, ino_t> key{st->st_dev, st->st_ino};
    std::unique_lock lock(mu);
    for (auto it = owners.find(key); it != owners.end(); it = owners.find(key)) {
      if (auto owner = it->second.lock()) {
        if (owner->log_open) return Errno(EBUSY);
        owner->log_open = true;
        return owner;
      }
      // Its last holder is letting go: once its destructor has closed the
      // descriptor (and erased the entry) the lock is free.
      lock.unlock();
      std::this_thread::yield();
      lock.lock();
    }
    if (auto locked = io.TryLockExclusive(fd->get()); !locked) return std::unexpected(locked.error());
    auto owner = std::make_shared<RecordLogOwner>();
    owner->lock = std::move(*fd);
    owner->key = key;
    owner->log_open = true;
    owners[key] = owner;
    return owner;
  }

  void Release(RecordLogOwner& owner) {
    std::lock_guard lock(mu);
    owner.log_open = false;
  }
};

}  // namespace

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

  Result<void> ReadInto(uint64_t position, std::vector<std::byte>& out) const {
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
    std::byte raw[kEntrySize];
    if (auto got = index.Read(*io, (position - base) * kEntrySize, raw); !got) return got;
    Entry entry;
    if (DecodeEntry(raw, position, entry) != EntryState::kValid) return Errno(EIO);
    out.resize(entry.size);
    return data.Read(*io, entry.offset, out);
  }
};

Result<std::vector<std::byte>> RecordSnapshot::Read(uint64_t position) const {
  std::vector<std::byte> out;
  if (auto got = ReadInto(position, out); !got) return std::unexpected(got.error());
  return out;
}

Result<void> RecordSnapshot::ReadInto(uint64_t position, std::vector<std::byte>& out) const {
  return state_->ReadInto(position, out);
}

uint64_t RecordSnapshot::First() const { return state_->first; }
uint64_t RecordSnapshot::Size() const { return state_->end; }

// ---- opening -------------------------------------------------------------------------

RecordLog::RecordLog(Io& io, std::string dir, const RecordLogOptions& options)
    : io_(io), dir_(std::move(dir)), options_(options), element_size_(options.element_size) {}

RecordLogOwner::~RecordLogOwner() {
  OwnerRegistry& registry = OwnerRegistry::Get();
  std::lock_guard guard(registry.mu);
  lock.Reset();
  if (auto it = registry.owners.find(key); it != registry.owners.end() && it->second.expired()) {
    registry.owners.erase(it);
  }
}

std::vector<std::shared_ptr<RecordSnapshotState>> RecordLogOwner::LiveSnapshots(uint64_t generation) {
  std::vector<std::shared_ptr<RecordSnapshotState>> live;
  std::lock_guard lock(mu);
  std::erase_if(snapshots, [](const std::weak_ptr<RecordSnapshotState>& w) { return w.expired(); });
  for (auto& weak : snapshots) {
    if (auto state = weak.lock(); state && state->generation == generation) live.push_back(std::move(state));
  }
  return live;
}

void RecordLogOwner::AddSnapshot(std::weak_ptr<RecordSnapshotState> snapshot) {
  std::lock_guard lock(mu);
  std::erase_if(snapshots, [](const std::weak_ptr<RecordSnapshotState>& w) { return w.expired(); });
  snapshots.push_back(std::move(snapshot));
}

RecordLog::~RecordLog() {
  // An unused compaction result would only be removed by the next Open.
  if (tmp_) tmp_->gen->obsolete.store(true);
  // The files close before the directory can pass to a log opened next.
  tmp_.reset();
  gen_.reset();
  if (owner_) OwnerRegistry::Get().Release(*owner_);
}

Result<std::unique_ptr<RecordLog>> RecordLog::Open(const std::string& dir, const RecordLogOptions& options) {
  Io& io = options.io != nullptr ? *options.io : PosixIo::Default();
  if (!ValidSegmentSize(options.segment_size)) return Errno(EINVAL);
  std::unique_ptr<RecordLog> log(new RecordLog(io, dir, options));

  auto st = io.Stat(dir);
  if (!st && !IsErrno(st.error(), ENOENT)) return std::unexpected(st.error());
  if (st && !S_ISDIR(st->st_mode)) return Errno(ENOTDIR);
  if (!st) {
    if (!options.create_if_missing) return Errno(ENOENT);
    if (auto made = io.Mkdir(dir, 0755); !made && !IsErrno(made.error(), EEXIST)) return std::unexpected(made.error());
    if (auto synced = SyncDir(io, ParentDir(dir)); !synced) return std::unexpected(synced.error());
  }
  // Before recovery, which deletes what it does not recognize, such as a
  // compaction another owner is writing.
  auto owner = OwnerRegistry::Get().Acquire(io, dir);
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
  bool renamed = false;
  return WriteFileAtomically(io_, dir_, rf::kCurrentName, rf::kCurrentTempName,
                             SerializeManifest({.generation = generation, .element_size = element_size_, .base = base}),
                             renamed);
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

// ---- reading ---------------------------------------------------------------------------

uint64_t RecordLog::SizeUnsynced() const {
  std::shared_lock lock(mu_);
  return rewind_.value_or(flushed_end_.load()) + pending_.ends.size();
}

Result<std::vector<std::byte>> RecordLog::Read(uint64_t position) const {
  std::vector<std::byte> out;
  if (auto got = ReadInto(position, out); !got) return std::unexpected(got.error());
  return out;
}

Result<void> RecordLog::ReadInto(uint64_t position, std::vector<std::byte>& out) const {
  Result<void> result;
  for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
    uint64_t seq = 0;
    result = ReadOnce(position, out, seq);
    // A prune or truncate began meanwhile: the bytes may be a mix.
    if (change_seq_.load(std::memory_order_acquire) == seq) return result;
  }
  return result;
}

Result<std::shared_ptr<RecordGeneration>> RecordLog::StartRead(uint64_t position, std::vector<std::byte>& out,
                                                                uint64_t& seq) const {
  std::shared_lock lock(mu_);
  seq = change_seq_.load(std::memory_order_acquire);
  if (position < first_.load()) return Errno(ENODATA);
  const uint64_t from_files = rewind_.value_or(flushed_end_.load());
  if (position >= from_files) {
    const uint64_t i = position - from_files;
    if (i >= pending_.ends.size()) return Errno(ERANGE);
    const uint64_t from = i == 0 ? 0 : pending_.ends[i - 1];
    out.assign(pending_.bytes.begin() + static_cast<std::ptrdiff_t>(from),
               pending_.bytes.begin() + static_cast<std::ptrdiff_t>(pending_.ends[i]));
    return nullptr;
  }
  return gen_;
}

Result<void> RecordLog::ReadOnce(uint64_t position, std::vector<std::byte>& out, uint64_t& seq) const {
  auto started = StartRead(position, out, seq);
  if (!started) return std::unexpected(started.error());
  if (!*started) return {};
  const std::shared_ptr<RecordGeneration>& gen = *started;
  uint64_t offset = 0;
  if (gen->fixed()) {
    out.resize(element_size_);
    offset = gen->FixedOffset(position);
  } else {
    auto entry = gen->ReadEntry(position);
    if (!entry) return std::unexpected(entry.error());
    out.resize(entry->size);
    offset = entry->offset;
  }
  auto n = gen->data->ReadAt(offset, out);
  if (!n) return std::unexpected(n.error());
  if (*n != out.size()) return Errno(EIO);
  return {};
}

// ---- writing -------------------------------------------------------------------------------

Result<uint64_t> RecordLog::Append(std::span<const std::byte> element) {
  std::lock_guard writer(writer_mu_);
  if (auto ok = CheckWritable(); !ok) return std::unexpected(ok.error());
  if (element_size_ != 0 ? element.size() != element_size_ : element.size() > rf::kMaxElementSize) {
    return Errno(EINVAL);
  }
  std::unique_lock lock(mu_);
  const uint64_t position = rewind_.value_or(flushed_end_.load()) + pending_.ends.size();
  pending_.bytes.insert(pending_.bytes.end(), element.begin(), element.end());
  pending_.ends.push_back(pending_.bytes.size());
  return position;
}

void RecordLog::Discard() {
  std::lock_guard writer(writer_mu_);
  std::unique_lock lock(mu_);
  pending_ = {};
  rewind_.reset();
}

Result<void> RecordLog::Rewind(uint64_t position) {
  std::lock_guard writer(writer_mu_);
  if (auto ok = CheckWritable(); !ok) return ok;
  std::unique_lock lock(mu_);
  const uint64_t from_files = rewind_.value_or(flushed_end_.load());
  if (position < first_.load() || position > from_files + pending_.ends.size()) return Errno(EINVAL);
  if (position >= from_files) {
    const size_t keep = position - from_files;
    pending_.ends.resize(keep);
    pending_.bytes.resize(keep == 0 ? 0 : pending_.ends.back());
  } else {
    pending_ = {};
    rewind_ = position;
  }
  return {};
}

Result<uint64_t> RecordLog::DataOffsetOf(const RecordGeneration& gen, uint64_t position, uint64_t end) const {
  if (gen.fixed()) return gen.FixedOffset(position);
  if (position < end) {
    auto entry = gen.ReadEntry(position);
    if (!entry) return std::unexpected(entry.error());
    return entry->offset;
  }
  return data_end_;
}

Result<void> RecordLog::PreserveForSnapshots(bool index, const std::string& segment_path, uint64_t begin,
                                             uint64_t end) {
  if (begin >= end) return {};
  std::vector<std::shared_ptr<RecordSnapshotState>> live = owner_->LiveSnapshots(gen_->number);
  if (live.empty()) return {};
  // A snapshot may see other files at these offsets (a truncate deleted the
  // ones it holds and appends made new ones): only the segment about to be
  // changed in place is copied from.
  auto target = io_.Stat(segment_path);
  if (!target) return std::unexpected(target.error());
  const HPFile& file = index ? *gen_->index : *gen_->data;
  for (auto& state : live) {
    FrozenFile& frozen = index ? state->index : state->data;
    const uint64_t lo = std::max({begin, frozen.begin, file.Head()});
    const uint64_t hi = std::min(end, frozen.end);
    if (lo >= hi) continue;
    auto piece = std::upper_bound(frozen.pieces.begin(), frozen.pieces.end(), lo,
                                  [](uint64_t value, const FrozenFile::Piece& p) { return value < p.begin; });
    if (piece != frozen.pieces.begin()) --piece;
    for (; piece != frozen.pieces.end() && piece->begin < hi; ++piece) {
      const uint64_t from_piece = std::max(lo, piece->begin);
      const uint64_t to_piece = std::min(hi, piece->begin + piece->length);
      if (from_piece >= to_piece) continue;
      auto st = io_.Fstat(piece->fd->get());
      if (!st) return std::unexpected(st.error());
      if (st->st_dev != target->st_dev || st->st_ino != target->st_ino) continue;
      // Only this writer adds overlays, so reading them unlocked is safe here.
      for (auto [from, to] : frozen.Uncovered(from_piece, to_piece)) {
        std::vector<std::byte> bytes(to - from);
        auto n = file.ReadAt(from, bytes);
        if (!n) return std::unexpected(n.error());
        if (*n != bytes.size()) return Errno(EIO);
        std::unique_lock lock(frozen.mu);
        frozen.overlays.emplace(from, std::move(bytes));
      }
    }
  }
  return {};
}

// Segments wholly past `n` are deleted (the snapshots' descriptors keep them);
// only the one holding `n` is cut in place.
Result<void> RecordLog::PreserveTruncate(bool index, uint64_t n) {
  const HPFile& file = index ? *gen_->index : *gen_->data;
  for (const SegmentInfo& s : file.Segments()) {
    if (s.base <= n && n < s.base + s.capacity) {
      return PreserveForSnapshots(index, file.dir() + "/" + s.file_name, n,
                                  std::min(s.base + s.capacity, file.Size()));
    }
  }
  return {};
}

// Segments wholly below `n` are deleted; the first one kept is punched below
// `n` (a full tail ending at `n` may be kept, and punched whole).
Result<void> RecordLog::PreservePrune(bool index, uint64_t n) {
  const HPFile& file = index ? *gen_->index : *gen_->data;
  for (const SegmentInfo& s : file.Segments()) {
    if (s.base < n && n <= s.base + s.capacity) {
      if (auto kept = PreserveForSnapshots(index, file.dir() + "/" + s.file_name, s.base, n); !kept) return kept;
    }
  }
  return {};
}

Result<void> RecordLog::CutTo(uint64_t end) {
  RecordGeneration& gen = *gen_;
  auto cut = [&](bool index, uint64_t n) -> Result<void> {
    HPFile& file = index ? *gen.index : *gen.data;
    if (file.Size() <= n) return {};
    change_seq_.fetch_add(1, std::memory_order_acq_rel);
    if (auto kept = PreserveTruncate(index, n); !kept) return kept;
    if (auto done = file.Truncate(n); !done) return done;
    // Durable before anything is appended in their place: otherwise a power
    // loss could bring back cut segments beside new bytes (a fixed-size log)
    // or index entries pointing at new bytes (a variable-size one). The data
    // of a variable-size log needs no sync: its index was cut first.
    if (index || gen.fixed()) return file.Sync();
    return {};
  };
  if (gen.fixed()) return cut(false, gen.FixedOffset(end));
  const uint64_t files_end = gen.End();
  uint64_t data_end = data_end_;
  if (end < files_end) {
    if (end > first_.load()) {
      auto last = gen.ReadEntry(end - 1);
      if (!last) return std::unexpected(last.error());
      data_end = last->end();
    } else {
      auto offset = DataOffsetOf(gen, end, files_end);
      if (!offset) return std::unexpected(offset.error());
      data_end = *offset;
    }
  }
  if (auto done = cut(true, gen.IndexOffset(end)); !done) return done;
  if (auto done = cut(false, data_end); !done) return done;
  data_end_ = data_end;
  return {};
}

Result<void> RecordLog::Flush() {
  std::lock_guard writer(writer_mu_);
  if (auto ok = CheckWritable(); !ok) return ok;
  RecordGeneration& gen = *gen_;
  // pending_ and rewind_ change only under writer_mu_, which this holds.
  const uint64_t keep = std::min(rewind_.value_or(flushed_end_.load()), flushed_end_.load());
  if (auto cut = CutTo(keep); !cut) return cut;
  if (keep != flushed_end_.load() || rewind_) {
    std::unique_lock lock(mu_);
    flushed_end_.store(keep, std::memory_order_release);
    rewind_.reset();
    ++mutation_count_;
  }
  const size_t count = pending_.ends.size();
  uint64_t data_at = data_end_;
  if (count > 0) {
    auto at = gen.data->Append(pending_.bytes);
    if (!at) return std::unexpected(at.error());
    data_at = *at;
  }
  if (auto synced = gen.data->Sync(); !synced) return synced;
  if (!gen.fixed()) {
    if (count > 0) {
      std::vector<std::byte> entries(count * kEntrySize);
      uint64_t from = 0;
      for (size_t i = 0; i < count; ++i) {
        const Entry entry{.offset = data_at + from, .size = static_cast<uint32_t>(pending_.ends[i] - from)};
        EncodeEntry(entries.data() + i * kEntrySize, entry, keep + i);
        from = pending_.ends[i];
      }
      auto at = gen.index->Append(entries);
      if (!at) return std::unexpected(at.error());
    }
    if (auto synced = gen.index->Sync(); !synced) return synced;
  }
  if (count > 0) {
    std::unique_lock lock(mu_);
    data_end_ = data_at + pending_.bytes.size();
    flushed_end_.store(keep + count, std::memory_order_release);
    pending_ = {};
    ++mutation_count_;
  }
  return {};
}

Result<void> RecordLog::PruneHead(uint64_t position) {
  std::lock_guard writer(writer_mu_);
  if (auto ok = CheckWritable(); !ok) return ok;
  RecordGeneration& gen = *gen_;
  const uint64_t files_end = gen.End();
  const uint64_t first = first_.load();
  const uint64_t target = std::min({std::max(first, position), rewind_.value_or(flushed_end_.load()),
                                    flushed_end_.load()});
  if (target <= first) return {};
  auto data_offset = DataOffsetOf(gen, target, files_end);
  if (!data_offset) return std::unexpected(data_offset.error());
  {
    std::unique_lock lock(mu_);
    change_seq_.fetch_add(1, std::memory_order_acq_rel);
    first_.store(target, std::memory_order_release);
    ++mutation_count_;
  }
  if (!gen.fixed()) {
    if (auto kept = PreservePrune(true, gen.IndexOffset(target)); !kept) return kept;
    if (auto pruned = gen.index->PruneHead(gen.IndexOffset(target)); !pruned) return pruned;
  }
  if (auto kept = PreservePrune(false, *data_offset); !kept) return kept;
  return gen.data->PruneHead(*data_offset);
}

// ---- compaction ---------------------------------------------------------------------------

Result<void> RecordLog::WriteTmpPruned(std::span<const uint64_t> positions) {
  std::lock_guard writer(writer_mu_);
  if (auto ok = CheckWritable(); !ok) return ok;
  if (!pending_.ends.empty() || rewind_) return Errno(EBUSY);
  const RecordGeneration& gen = *gen_;
  const uint64_t first = first_.load();
  const uint64_t end = flushed_end_.load();
  std::vector<uint64_t> removed(positions.begin(), positions.end());
  std::sort(removed.begin(), removed.end());
  removed.erase(std::unique(removed.begin(), removed.end()), removed.end());
  if (!removed.empty() && removed.back() >= end) return Errno(EINVAL);
  removed.erase(removed.begin(), std::lower_bound(removed.begin(), removed.end(), first));

  if (tmp_) {
    tmp_->gen->obsolete.store(true);
    tmp_.reset();
  }
  const uint64_t number = gen.number + 1;
  if (auto cleared = RemoveTree(io_, dir_ + "/" + GenerationName(number)); !cleared) return cleared;
  auto made = OpenGeneration(number, first, /*create=*/true);
  if (!made) return std::unexpected(made.error());
  std::shared_ptr<RecordGeneration> out = std::move(*made);
  // Until it is complete the new generation goes if anything fails.
  out->obsolete.store(true);

  uint64_t out_position = first;
  uint64_t out_data = 0;
  auto next_removed = removed.begin();
  std::vector<std::byte> in_bytes;
  std::vector<std::byte> out_bytes;
  std::vector<std::byte> raw_entries;
  std::vector<std::byte> out_entries;
  const uint64_t unit = gen.fixed() ? element_size_ : kEntrySize;
  const uint64_t batch = std::max<uint64_t>(1, gen.fixed() ? kCopyBatchBytes / unit : kCopyBatchEntries);
  for (uint64_t at = first; at < end;) {
    const uint64_t stop = std::min(end, at + batch);
    out_bytes.clear();
    out_entries.clear();
    if (gen.fixed()) {
      in_bytes.resize((stop - at) * unit);
      auto n = gen.data->ReadAt(gen.FixedOffset(at), in_bytes);
      if (!n) return std::unexpected(n.error());
      if (*n != in_bytes.size()) return Errno(EIO);
      for (uint64_t p = at; p < stop; ++p) {
        if (next_removed != removed.end() && *next_removed == p) {
          ++next_removed;
          continue;
        }
        const auto* from = in_bytes.data() + (p - at) * unit;
        out_bytes.insert(out_bytes.end(), from, from + unit);
      }
    } else {
      raw_entries.resize((stop - at) * kEntrySize);
      auto n = gen.index->ReadAt(gen.IndexOffset(at), raw_entries);
      if (!n) return std::unexpected(n.error());
      if (*n != raw_entries.size()) return Errno(EIO);
      std::vector<Entry> entries(stop - at);
      for (uint64_t p = at; p < stop; ++p) {
        if (DecodeEntry(raw_entries.data() + (p - at) * kEntrySize, p, entries[p - at]) != EntryState::kValid) {
          return Errno(EIO);
        }
      }
      const uint64_t data_from = entries.front().offset;
      in_bytes.resize(entries.back().end() - data_from);
      auto got = gen.data->ReadAt(data_from, in_bytes);
      if (!got) return std::unexpected(got.error());
      if (*got != in_bytes.size()) return Errno(EIO);
      for (uint64_t p = at; p < stop; ++p) {
        if (next_removed != removed.end() && *next_removed == p) {
          ++next_removed;
          continue;
        }
        const Entry& entry = entries[p - at];
        if (entry.offset < data_from || entry.end() > data_from + in_bytes.size()) return Errno(EIO);
        const Entry moved{.offset = out_data + out_bytes.size(), .size = entry.size};
        const auto* from = in_bytes.data() + (entry.offset - data_from);
        out_bytes.insert(out_bytes.end(), from, from + entry.size);
        out_entries.resize(out_entries.size() + kEntrySize);
        EncodeEntry(out_entries.data() + out_entries.size() - kEntrySize, moved,
                    out_position + out_entries.size() / kEntrySize - 1);
      }
      out_position += out_entries.size() / kEntrySize;
    }
    if (gen.fixed()) out_position += out_bytes.size() / unit;
    if (!out_bytes.empty()) {
      if (auto appended = out->data->Append(out_bytes); !appended) return std::unexpected(appended.error());
    }
    if (!out_entries.empty()) {
      if (auto appended = out->index->Append(out_entries); !appended) return std::unexpected(appended.error());
    }
    out_data += out_bytes.size();
    at = stop;
  }
  if (auto synced = out->data->Sync(); !synced) return synced;
  if (out->index) {
    if (auto synced = out->index->Sync(); !synced) return synced;
  }
  out->obsolete.store(false);
  tmp_ = std::make_unique<TmpGeneration>(TmpGeneration{.gen = std::move(out),
                                                       .end = out_position,
                                                       .data_end = out_data,
                                                       .source_generation = gen.number,
                                                       .source_mutations = mutation_count_});
  return {};
}

Result<void> RecordLog::ReplaceWithTmp() {
  std::lock_guard writer(writer_mu_);
  if (auto ok = CheckWritable(); !ok) return ok;
  if (!tmp_) return Errno(ENOENT);
  if (!pending_.ends.empty() || rewind_) return Errno(EBUSY);
  if (tmp_->source_generation != gen_->number || tmp_->source_mutations != mutation_count_) {
    tmp_->gen->obsolete.store(true);
    tmp_.reset();
    return Errno(ESTALE);
  }
  bool renamed = false;
  Result<void> written =
      WriteFileAtomically(io_, dir_, rf::kCurrentName, rf::kCurrentTempName,
                          SerializeManifest({.generation = tmp_->gen->number,
                                             .element_size = element_size_,
                                             .base = tmp_->gen->base}),
                          renamed);
  if (!renamed) return written;
  // CURRENT names the new generation now (durably unless `written` failed, in
  // which case a power loss may still bring back the old one, complete).
  std::shared_ptr<RecordGeneration> old;
  {
    std::unique_lock lock(mu_);
    old = std::exchange(gen_, std::move(tmp_->gen));
    flushed_end_.store(tmp_->end, std::memory_order_release);
    first_.store(gen_->First(), std::memory_order_release);
    data_end_ = tmp_->data_end;
    ++mutation_count_;
  }
  tmp_.reset();
  old->obsolete.store(true);
  return written;
}

Result<void> RecordLog::Compact(std::span<const uint64_t> positions) {
  if (auto written = WriteTmpPruned(positions); !written) return written;
  return ReplaceWithTmp();
}

// ---- snapshots -------------------------------------------------------------------------------

Result<RecordSnapshot> RecordLog::Snapshot() const {
  auto state = std::make_shared<RecordSnapshotState>();
  state->io = &io_;
  state->owner = owner_;
  state->element_size = element_size_;
  // Held shared throughout: the figures, the generation and the pending
  // elements stay put, and a prune cannot start destroying bytes before this
  // snapshot is registered to receive them.
  std::shared_lock lock(mu_);
  const RecordGeneration& gen = *gen_;
  state->generation = gen.number;
  state->base = gen.base;
  state->first = first_.load();
  state->flushed_end = std::max(state->first, rewind_.value_or(flushed_end_.load()));
  state->end = state->flushed_end + pending_.ends.size();
  state->pending_bytes = pending_.bytes;
  state->pending_ends = pending_.ends;
  if (state->first < state->flushed_end) {
    if (gen.fixed()) {
      if (auto mapped = state->data.Map(*gen.data, gen.FixedOffset(state->first), gen.FixedOffset(state->flushed_end));
          !mapped) {
        return std::unexpected(mapped.error());
      }
    } else {
      auto first_entry = gen.ReadEntry(state->first);
      if (!first_entry) return std::unexpected(first_entry.error());
      auto last_entry = gen.ReadEntry(state->flushed_end - 1);
      if (!last_entry) return std::unexpected(last_entry.error());
      if (auto mapped = state->index.Map(*gen.index, gen.IndexOffset(state->first), gen.IndexOffset(state->flushed_end));
          !mapped) {
        return std::unexpected(mapped.error());
      }
      if (auto mapped = state->data.Map(*gen.data, first_entry->offset, last_entry->end()); !mapped) {
        return std::unexpected(mapped.error());
      }
    }
  }
  owner_->AddSnapshot(state);
  return RecordSnapshot(std::move(state));
}

// ---- zero-copy reads -------------------------------------------------------------------

RecordReader::RecordReader(const RecordLog& log, size_t buffer_size)
    : log_(log), buffer_size_(std::max<size_t>(buffer_size, kEntrySize)) {}

Result<RecordView> RecordReader::Read(uint64_t position) {
  Result<RecordView> result = Errno(EIO);
  for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
    uint64_t seq = 0;
    result = ReadOnce(position, seq);
    // As in RecordLog::ReadInto: bytes read while a prune or truncate ran
    // may be a mix. The buffers go too, for the same reason.
    if (log_.change_seq_.load(std::memory_order_acquire) == seq) return result;
    gen_.reset();
  }
  return result;
}

Result<RecordView> RecordReader::ReadOnce(uint64_t position, uint64_t& seq) {
  std::vector<std::byte> pending;  // allocates only for a pending element
  auto started = log_.StartRead(position, pending, seq);
  if (!started) return std::unexpected(started.error());
  if (!*started) {
    auto buffer = std::make_shared<const std::vector<std::byte>>(std::move(pending));
    return RecordView{.buffer = buffer, .bytes = *buffer};
  }
  if (*started != gen_ || seq != seq_) {
    // Bytes may have changed in place since the buffers were filled.
    gen_ = std::move(*started);
    seq_ = seq;
    data_.filled = 0;
    index_.filled = 0;
  }
  const RecordGeneration& gen = *gen_;
  if (gen.fixed()) return View(data_, *gen.data, gen.FixedOffset(position), gen.element_size);
  auto raw = View(index_, *gen.index, gen.IndexOffset(position), kEntrySize);
  if (!raw) return std::unexpected(raw.error());
  Entry entry;
  if (DecodeEntry(raw->bytes.data(), position, entry) != EntryState::kValid) return Errno(EIO);
  return View(data_, *gen.data, entry.offset, entry.size);
}

Result<RecordView> RecordReader::View(ReadAhead& ahead, const HPFile& file, uint64_t offset, uint64_t length) const {
  if (offset < ahead.start || offset + length > ahead.start + ahead.filled) {
    // A buffer a caller still holds a view of is left to it.
    if (!ahead.buffer || ahead.buffer.use_count() > 1) ahead.buffer = std::make_shared<std::vector<std::byte>>();
    ahead.buffer->resize(std::max<uint64_t>(buffer_size_, length));
    ahead.filled = 0;
    auto n = file.ReadAt(offset, *ahead.buffer);
    if (!n) return std::unexpected(n.error());
    ahead.start = offset;
    ahead.filled = *n;
    if (*n < length) return Errno(EIO);
  }
  return RecordView{.buffer = ahead.buffer,
                    .bytes = std::span<const std::byte>(*ahead.buffer).subspan(offset - ahead.start, length)};
}

}  // namespace hpfile
