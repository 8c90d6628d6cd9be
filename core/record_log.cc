// SPDX-License-Identifier: Apache-2.0
// RecordLog's reads and writes: Read, Append, Flush, Discard, Rewind,
// PruneHead, and RecordReader's zero-copy reads. Opening and recovery live
// in record_recovery.cc, compaction in record_compaction.cc, snapshots in
// record_snapshot.cc, the on-disk codecs in record_codec.cc.
#include "core/record_log.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "core/record_internal.h"

namespace hpfile {

using namespace record_detail;
namespace rf = record_format;

namespace {

// A read that keeps losing its bytes to concurrent prunes and truncates gives
// up after this many attempts and reports what it last saw.
constexpr int kReadAttempts = 64;

}  // namespace

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
    if (auto pruned = PruneAndDelete(*gen.index, gen.IndexOffset(target)); !pruned) return pruned;
  }
  if (auto kept = PreservePrune(false, *data_offset); !kept) return kept;
  return PruneAndDelete(*gen.data, *data_offset);
}

Result<void> RecordLog::PruneAndDelete(HPFile& file, uint64_t offset) {
  if (auto pruned = file.PruneHead(offset); !pruned) return pruned;
  // A record log has no deleter thread of its own: the segments go now, as
  // they always did here (a failure leaves them for the next prune).
  auto left = file.DeletePrunedSegments(std::numeric_limits<uint64_t>::max());
  if (!left) return std::unexpected(left.error());
  return {};
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
