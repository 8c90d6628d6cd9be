// SPDX-License-Identifier: Apache-2.0
// RecordLog's compaction: WriteTmpPruned copies the flushed elements, less
// the removed ones, into a new generation; ReplaceWithTmp switches CURRENT
// to it atomically.
#include <algorithm>
#include <memory>
#include <utility>

#include "core/record_internal.h"

namespace hpfile {

using namespace record_detail;
namespace rf = record_format;

namespace {

// Elements copied per batch.
constexpr uint64_t kCopyBatchBytes = 1 << 20;
constexpr uint64_t kCopyBatchEntries = 4096;

}  // namespace

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
  // Whether `p` is removed; asked of every position in order.
  auto removed_next = [&](uint64_t p) {
    if (next_removed == removed.end() || *next_removed != p) return false;
    ++next_removed;
    return true;
  };
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
        if (removed_next(p)) continue;
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
        if (removed_next(p)) continue;
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
  Result<void> written = ReplaceFileAtomically(io_, dir_, rf::kCurrentName, rf::kCurrentTempName,
                                               SerializeManifest({.generation = tmp_->gen->number,
                                                                  .element_size = element_size_,
                                                                  .base = tmp_->gen->base}),
                                               &renamed);
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

}  // namespace hpfile
