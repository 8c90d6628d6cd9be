// SPDX-License-Identifier: Apache-2.0
// Write-back mode of the Filesystem (the methods declared under "write-back
// mode" in fs/filesystem.h) and its helpers.
//
// Invariant: a held write starts beyond its file's end. Every change that
// moves the end forward drains the held writes it reached, in offset order,
// before it lets go of the file's write_mu.
#include "fs/writeback.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iterator>
#include <utility>

#include <spdlog/spdlog.h>

#include "core/format.h"
#include "fs/filesystem.h"

namespace hpfs {

using hpfile::Errno;

WritebackSplit SplitAtEnd(uint64_t offset, size_t length, uint64_t end) {
  WritebackSplit split;
  if (offset > end) {
    split.starts_past_end = true;
    return split;
  }
  split.compare_length = std::min<uint64_t>(length, end - offset);
  split.append_from = split.compare_length;
  return split;
}

Result<std::optional<uint64_t>> FirstDifference(const hpfile::HPFile& file, uint64_t offset,
                                               std::span<const std::byte> data) {
  const uint64_t head = file.Head();
  const size_t skip = offset < head ? static_cast<size_t>(std::min<uint64_t>(head - offset, data.size())) : 0;
  std::array<std::byte, 64 * 1024> stored;
  for (size_t done = skip; done < data.size();) {
    const size_t want = std::min(stored.size(), data.size() - done);
    auto got = file.ReadAt(offset + done, std::span(stored.data(), want));
    if (!got) {
      // A prune between Head() and the read: those bytes count as equal too.
      if (hpfile::IsErrno(got.error(), ENODATA)) {
        const uint64_t new_head = file.Head();
        done = std::max<size_t>(done, static_cast<size_t>(std::min<uint64_t>(new_head - offset, data.size())));
        continue;
      }
      return std::unexpected(got.error());
    }
    // A truncate came first: what is no longer stored cannot differ.
    if (*got == 0) return std::nullopt;
    if (std::memcmp(stored.data(), data.data() + done, *got) != 0) {
      for (size_t i = 0; i < *got; ++i) {
        if (stored[i] != data[done + i]) return offset + done + i;
      }
    }
    done += *got;
  }
  return std::nullopt;
}

Result<size_t> Filesystem::StoreWriteBackLocked(Inode& inode, hpfile::HPFile& file, uint64_t offset,
                                                std::span<const std::byte> data) {
  const WritebackSplit split = SplitAtEnd(offset, data.size(), file.Size());
  if (split.compare_length > 0) {
    auto differs = FirstDifference(file, offset, data.first(split.compare_length));
    if (!differs) return std::unexpected(differs.error());
    if (*differs) {
      spdlog::error("{}: refused a write of [{}, {}): it would change the stored byte at {} (the file only "
                    "grows at its end)",
                    DisplayName(inode), offset, offset + data.size(), **differs);
      return Errno(EPERM);
    }
  }
  if (split.append_from < data.size()) {
    auto start = file.AppendAt(offset + split.append_from, data.subspan(split.append_from));
    if (!start) return std::unexpected(start.error());
  }
  // The bytes a pending grow was waiting for are all here.
  if (const uint64_t grow = inode.writeback().grow_to.load(); grow != 0 && file.Size() >= grow) {
    inode.writeback().grow_to.store(0);
  }
  return data.size();
}

Result<bool> Filesystem::DeferGrowLocked(Inode& inode, hpfile::HPFile& file, uint64_t size) {
  WritebackQueue& queue = inode.writeback();
  if (size <= file.Size()) {
    queue.grow_to.store(0);
    return false;
  }
  if (size > hpfile::format::kMaxFileSize) return Errno(EFBIG);
  queue.grow_to.store(size);
  queue.grow_commit = commits_started_.load(std::memory_order_relaxed);
  return true;
}

void Filesystem::LandGrowLocked(Inode& inode, hpfile::HPFile& file, Completions& completions) {
  WritebackQueue& queue = inode.writeback();
  const uint64_t target = queue.grow_to.exchange(0);
  if (target == 0) return;
  if (file.Size() < target) {
    if (auto grown = file.Truncate(target); !grown) {
      BreakQueueLocked(inode, grown.error(), completions);
      return;
    }
  }
  DrainHeldLocked(inode, file, completions);
}

void Filesystem::LandGrow(Inode& inode, hpfile::HPFile& file) {
  Completions completions;
  {
    std::lock_guard lock(inode.write_mu);
    LandGrowLocked(inode, file, completions);
  }
  Complete(completions);
}

HeldWrite Filesystem::TakeFirstHeldLocked(WritebackQueue& queue, std::optional<std::error_code>& load_error) {
  auto node = queue.held.extract(queue.held.begin());
  HeldWrite& held = node.mapped();
  load_error.reset();
  if (held.spooled_at) {
    held.data.resize(held.length);
    if (auto got = queue.spool.Get(*held.spooled_at, held.data); !got) load_error = got.error();
  }
  ReleaseHeldLocked(queue, held);
  if (held.direct) --queue.held_direct;
  return std::move(held);
}

void Filesystem::DrainHeldLocked(Inode& inode, hpfile::HPFile& file, Completions& completions) {
  WritebackQueue& queue = inode.writeback();
  while (!queue.held.empty() && queue.held.begin()->first <= file.Size()) {
    const uint64_t end_before = file.Size();
    const uint64_t offset = queue.held.begin()->first;
    std::optional<std::error_code> load_error;
    HeldWrite held = TakeFirstHeldLocked(queue, load_error);
    const bool extends = offset + held.length > end_before;
    if (load_error) {
      // The spool lost them: as if they had failed to land.
      if (held.done) {
        completions.emplace_back(std::move(held.done), std::unexpected(*load_error));
      } else {
        RecordLateErrorLocked(inode, offset, held.length, *load_error);
        if (extends) BreakQueueLocked(inode, *load_error, completions);
      }
      continue;
    }
    if (held.direct) {
      // The rules of a direct write are those of write(2) in the default
      // mode: buffered bytes that reached its offset first won the race, and
      // it fails with EPERM, whatever it holds. Its writer sees that, and the
      // kernel's size never counted it, so no bytes are missing behind it.
      Result<size_t> written = offset < end_before
                                   ? Result<size_t>(Errno(EPERM))
                                   : StoreWriteBackLocked(inode, file, offset, held.data);
      completions.emplace_back(std::move(held.done), written);
      continue;
    }
    Result<size_t> stored = StoreWriteBackLocked(inode, file, offset, held.data);
    if (!stored) RecordLateErrorLocked(inode, offset, held.data.size(), stored.error());
    if (!stored && extends) BreakQueueLocked(inode, stored.error(), completions);
  }
  HeldChangedLocked(queue);
}

void Filesystem::HeldChangedLocked(WritebackQueue& queue) {
  uint64_t end = 0;
  for (const auto& [offset, held] : queue.held) end = std::max<uint64_t>(end, offset + held.length);
  queue.held_end.store(end);
  queue.drained.notify_all();
}

void Filesystem::RecordLateErrorLocked(Inode& inode, uint64_t offset, uint64_t length, std::error_code error) {
  spdlog::error("{}: bytes [{}, {}) written back and acknowledged to the kernel are lost ({}); every fsync and "
                "close of a writer of this file fails from now on, until the daemon restarts",
                DisplayName(inode), offset, offset + length, error.message());
  if (!inode.writeback().late_error) inode.writeback().late_error = error;
}

void Filesystem::BreakQueueLocked(Inode& inode, std::error_code error, Completions& completions) {
  WritebackQueue& queue = inode.writeback();
  if (!queue.broken) {
    spdlog::error("{}: a write-back past the stored end failed ({}); writes past the end of this file fail "
                  "until it is truncated or the daemon restarts",
                  DisplayName(inode), error.message());
  }
  queue.broken = error;
  FailHeldLocked(inode, error, completions);
}

void Filesystem::FailHeldLocked(Inode& inode, std::error_code error, Completions& completions) {
  WritebackQueue& queue = inode.writeback();
  for (auto& [offset, held] : queue.held) {
    ReleaseHeldLocked(queue, held);
    if (held.done) {
      completions.emplace_back(std::move(held.done), std::unexpected(error));
    } else {
      RecordLateErrorLocked(inode, offset, held.length, error);
    }
  }
  queue.held.clear();
  queue.held_direct = 0;
  HeldChangedLocked(queue);
}

void Filesystem::TrimHeldLocked(Inode& inode, uint64_t size) {
  WritebackQueue& queue = inode.writeback();
  // The kernel waits for the write-back in flight before it truncates, and
  // drops its pages past the new size: held bytes of the page cache there
  // are no longer part of the file, as if written and then cut off. (A held
  // direct write keeps its own rules: FinishCommit.)
  for (auto it = queue.held.lower_bound(size); it != queue.held.end();) {
    if (it->second.done) {
      ++it;
      continue;
    }
    ReleaseHeldLocked(queue, it->second);
    it = queue.held.erase(it);
  }
  auto crossing = queue.held.lower_bound(size);
  if (crossing != queue.held.begin()) {
    auto& [offset, held] = *std::prev(crossing);
    if (!held.done && offset + held.length > size) CutHeldLocked(queue, held, size - offset);
  }
  HeldChangedLocked(queue);
}

void Filesystem::ReleaseHeldLocked(WritebackQueue& queue, const HeldWrite& held) {
  queue.held_bytes -= held.length;
  if (held.spooled_at) {
    spooled_bytes_.fetch_sub(held.length, std::memory_order_relaxed);
    queue.spool.Drop(*held.spooled_at, held.length);
  } else {
    held_bytes_.fetch_sub(held.length, std::memory_order_relaxed);
  }
}

void Filesystem::CutHeldLocked(WritebackQueue& queue, HeldWrite& held, uint64_t length) {
  const uint64_t cut = held.length - length;
  queue.held_bytes -= cut;
  if (held.spooled_at) {
    spooled_bytes_.fetch_sub(cut, std::memory_order_relaxed);
    queue.spool.Drop(*held.spooled_at + length, cut);
  } else {
    held.data.resize(length);
    held_bytes_.fetch_sub(cut, std::memory_order_relaxed);
  }
  held.length = length;
}

Result<std::vector<std::byte>> Filesystem::HeldBytesLocked(const WritebackQueue& queue, const HeldWrite& held) {
  if (!held.spooled_at) return held.data;
  std::vector<std::byte> bytes(held.length);
  if (auto got = queue.spool.Get(*held.spooled_at, bytes); !got) return std::unexpected(got.error());
  return bytes;
}

bool Filesystem::WaitForHeldLocked(WritebackQueue& queue, std::unique_lock<std::mutex>& lock,
                                   const std::function<bool()>& held) {
  if (!held()) return true;
  // The commit thread takes no lock of the Filesystem; asked without
  // write_mu all the same, so that nothing can ever wait on it the other way.
  lock.unlock();
  RequestCommit();
  lock.lock();
  // An fsync or close: the kernel has sent every page it had dirty before
  // either, so only pages another writer dirtied since can still fill the
  // gap; the commit brings those, and what is still held after gap_wait
  // never comes.
  return queue.drained.wait_for(lock, std::chrono::seconds(config_.gap_wait_seconds), [&] { return !held(); });
}

void Filesystem::WaitForHeldBelow(Inode& inode, uint64_t end) {
  WritebackQueue& queue = inode.writeback();
  std::unique_lock lock(inode.write_mu);
  // Still held after the wait: the read gets what is stored, and the bytes
  // keep waiting (a read is no sign that the kernel sent everything).
  (void)WaitForHeldLocked(queue, lock, [&queue, end] { return !queue.held.empty() && queue.held.begin()->first < end; });
}

Result<void> Filesystem::SettleHeld(Inode& inode) {
  WritebackQueue& queue = inode.writeback();
  const auto cached_held = [&queue] {
    return std::ranges::any_of(queue.held, [](const auto& entry) { return !entry.second.done; });
  };
  std::unique_lock lock(inode.write_mu);
  if (!WaitForHeldLocked(queue, lock, cached_held)) {
    for (auto it = queue.held.begin(); it != queue.held.end();) {
      if (it->second.done) {
        ++it;
        continue;
      }
      RecordLateErrorLocked(inode, it->first, it->second.length, Errno(EIO).error());
      ReleaseHeldLocked(queue, it->second);
      it = queue.held.erase(it);
    }
    HeldChangedLocked(queue);
  }
  if (queue.late_error) return std::unexpected(*queue.late_error);
  return {};
}

void Filesystem::Complete(Completions& completions) {
  for (auto& [done, result] : completions) done(result);
  completions.clear();
}

Result<void> Filesystem::PlaceHeldLocked(Inode& inode, uint64_t offset, HeldWrite& entry,
                                         std::span<const std::byte> data) {
  WritebackQueue& queue = inode.writeback();
  const uint64_t length = data.size();
  const uint64_t in_memory = held_bytes_.load(std::memory_order_relaxed);
  if (in_memory + length <= config_.reorder_bound) {
    held_bytes_.fetch_add(length, std::memory_order_relaxed);
    entry.data.assign(data.begin(), data.end());
    entry.spooled_at.reset();
  } else {
    // The handler cannot wait for room: the kernel may be waiting for this
    // answer before it sends the bytes that would drain the buffer.
    const uint64_t spooled = spooled_bytes_.load(std::memory_order_relaxed);
    if (spooled + length > config_.spool_bound) {
      ++queue.spool_overflows;
      spdlog::error("{}: the write-back spool is full ({} bytes held on disk, the bound spool_max); a write of "
                    "[{}, {}) fails with ENOSPC{}",
                    DisplayName(inode), spooled, offset, offset + length,
                    entry.direct ? "" : ", and so does every fsync and close of a writer of this file");
      // A direct writer sees its error at write(2); the appenders' bytes
      // are not lost by it.
      if (!entry.direct && !queue.late_error) queue.late_error = Errno(ENOSPC).error();
      return Errno(ENOSPC);
    }
    auto at = queue.spool.Put(trash_fd_.get(), NewTrashName(), data);
    if (!at) {
      spdlog::error("{}: cannot spool the held write of [{}, {}) ({}); it fails", DisplayName(inode), offset,
                    offset + length, at.error().message());
      if (!entry.direct && !queue.late_error) queue.late_error = at.error();
      return std::unexpected(at.error());
    }
    if (!reorder_bound_warned_.exchange(true)) {
      spdlog::info("{}: the write-back reorder buffer's memory is used up ({} bytes); held bytes go to a spool "
                   "file in {} until the gaps in front of them fill",
                   DisplayName(inode), in_memory, hpfile::format::kTrashName);
    }
    spooled_bytes_.fetch_add(length, std::memory_order_relaxed);
    entry.data.clear();
    entry.spooled_at = *at;
  }
  if (in_memory + length <= config_.reorder_bound / 2) reorder_bound_warned_.store(false);
  entry.length = length;
  queue.held_bytes += length;
  return {};
}

Result<void> Filesystem::HoldLocked(Inode& inode, uint64_t offset, std::span<const std::byte> data, bool direct,
                                    WriteDone& done, Completions& completions) {
  WritebackQueue& queue = inode.writeback();
  if (queue.broken && !direct) return std::unexpected(*queue.broken);
  // A direct write and bytes of the page cache for the same range: the
  // kernel writes back (launders) the dirty pages a direct write covers
  // before it sends the write, and keeps appenders out until its answer, so
  // cached bytes there came first and are the kernel's idea of the file. The
  // direct write lost the race, as one below the end does: EPERM.
  const uint64_t end = offset + data.size();
  const auto overlapping = [&queue, offset, end](bool want_direct) {
    auto it = queue.held.lower_bound(end);
    while (it != queue.held.begin()) {
      --it;
      if (it->first + it->second.length <= offset) continue;
      if (it->second.direct == want_direct) return it;
    }
    return queue.held.end();
  };
  if (direct && overlapping(false) != queue.held.end()) return Errno(EPERM);
  if (direct && overlapping(true) != queue.held.end()) return Errno(EPERM);
  if (!direct && queue.held_direct > 0) {
    for (auto lost = overlapping(true); lost != queue.held.end(); lost = overlapping(true)) {
      completions.emplace_back(std::move(lost->second.done), Errno(EPERM));
      ReleaseHeldLocked(queue, lost->second);
      --queue.held_direct;
      queue.held.erase(lost);
      HeldChangedLocked(queue);
    }
  }
  if (auto same = queue.held.find(offset); same != queue.held.end()) {
    // The kernel sends a page once at a time, but an answered page can be
    // dirtied by more appends and come again, longer, while still held.
    HeldWrite& held = same->second;
    auto before = HeldBytesLocked(queue, held);
    if (!before) return std::unexpected(before.error());
    const size_t common = std::min(before->size(), data.size());
    if (std::memcmp(before->data(), data.data(), common) != 0) {
      spdlog::error("{}: refused a write of [{}, {}): it would change bytes written back before", DisplayName(inode),
                    offset, offset + data.size());
      return Errno(EPERM);
    }
    if (data.size() > before->size()) {
      // Placed anew as a whole, and the old bytes let go only once the new
      // ones are safe: a failure leaves the entry as it was.
      HeldWrite longer;
      longer.direct = held.direct;
      if (auto r = PlaceHeldLocked(inode, offset, longer, data); !r) return r;
      ReleaseHeldLocked(queue, held);
      held.data = std::move(longer.data);
      held.length = longer.length;
      held.spooled_at = longer.spooled_at;
      HeldChangedLocked(queue);
    }
    return {};
  }
  HeldWrite entry;
  entry.direct = direct;
  entry.commit_generation = commits_started_.load(std::memory_order_relaxed);
  if (auto r = PlaceHeldLocked(inode, offset, entry, data); !r) return r;
  if (direct) {
    entry.done = std::move(done);
    ++queue.held_direct;
  }
  queue.held.emplace(offset, std::move(entry));
  HeldChangedLocked(queue);
  return {};
}

void Filesystem::WriteBack(FileHandle& handle, uint64_t offset, std::span<const std::byte> data, bool cached,
                           const Caller& writer, WriteDone done) {
  Inode& inode = *handle.inode;
  auto file = inode.File();
  if (!file) return done(Errno(EIO));
  if (data.empty()) return done(size_t{0});
  const bool direct = !cached;
  Completions completions;
  bool held_direct = false;
  bool answered = false;  // `done` is held or in `completions`
  {
    std::unique_lock lock(inode.write_mu);
    // A write reaching past a pending grow comes after the truncate's own
    // write-back finished: nothing else will fill the grown range.
    if (const uint64_t grow = inode.writeback().grow_to.load(); grow != 0 && offset + data.size() > grow) {
      LandGrowLocked(inode, *file, completions);
    }
    if (offset > file->Size()) {
      if (auto held = HoldLocked(inode, offset, data, direct, done, completions); !held) {
        completions.emplace_back(std::move(done), std::unexpected(held.error()));
        answered = true;
      } else {
        answered = true;
        held_direct = direct;
        if (cached) completions.emplace_back(std::move(done), data.size());
      }
    } else if (cached) {
      const uint64_t end_before = file->Size();
      Result<size_t> stored = StoreWriteBackLocked(inode, *file, offset, data);
      const bool extends = offset + data.size() > end_before;
      completions.emplace_back(std::move(done), stored);
      answered = true;
      if (!stored && extends) BreakQueueLocked(inode, stored.error(), completions);
      DrainHeldLocked(inode, *file, completions);
    }
  }
  if (!answered) {
    // At or below the kernel's end of file, which in this mode is also the
    // stored one (the bytes below the offset were written back first): the
    // rules of a direct write are those of the default mode.
    Result<size_t> written = Write(handle, offset, data, /*append=*/false, writer);
    {
      std::lock_guard lock(inode.write_mu);
      completions.emplace_back(std::move(done), written);
      DrainHeldLocked(inode, *file, completions);
    }
  }
  Complete(completions);
  if (held_direct) RequestCommit();
}

uint64_t Filesystem::HeldWriteBytes() const {
  return held_bytes_.load(std::memory_order_relaxed) + spooled_bytes_.load(std::memory_order_relaxed);
}

uint64_t Filesystem::SpooledWriteBytes() const { return spooled_bytes_.load(std::memory_order_relaxed); }

uint64_t Filesystem::BeginCommit() { return commits_started_.fetch_add(1, std::memory_order_relaxed) + 1; }

bool Filesystem::FinishCommit(uint64_t commit) {
  bool direct_still_held = false;
  for (const auto& inode : inodes_.Snapshot()) {
    auto file = inode->File();
    if (!file || !inode->writeback_queue) continue;
    Completions completions;
    {
      std::lock_guard lock(inode->write_mu);
      WritebackQueue& queue = inode->writeback();
      if (queue.grow_to.load() != 0 && queue.grow_commit < commit) LandGrowLocked(*inode, *file, completions);
      while (!queue.held.empty()) {
        const auto& [offset, first] = *queue.held.begin();
        // Only a direct write may have a gap of zeros in front of it, and
        // only once a commit that began after it shows no cached bytes come.
        if (!first.direct || first.commit_generation >= commit) break;
        const uint64_t at = offset;
        std::optional<std::error_code> load_error;
        HeldWrite held = TakeFirstHeldLocked(queue, load_error);
        Result<size_t> written = held.length;
        if (load_error) {
          written = std::unexpected(*load_error);
        } else if (auto start = file->AppendAt(at, held.data, hpfile::HPFile::Gap::kFillZeros); !start) {
          written = std::unexpected(start.error());
        }
        completions.emplace_back(std::move(held.done), written);
        DrainHeldLocked(*inode, *file, completions);
      }
      for (const auto& [offset, held] : queue.held) direct_still_held = direct_still_held || held.direct;
    }
    Complete(completions);
  }
  return direct_still_held;
}

void Filesystem::FailHeldWrites(std::error_code error) {
  for (const auto& inode : inodes_.Snapshot()) {
    if (!inode->writeback_queue) continue;
    Completions completions;
    {
      std::lock_guard lock(inode->write_mu);
      if (auto file = inode->File()) LandGrowLocked(*inode, *file, completions);
      FailHeldLocked(*inode, error, completions);
    }
    Complete(completions);
  }
}

void Filesystem::SetCommitRequester(std::function<void()> request) {
  std::lock_guard lock(commit_request_mu_);
  commit_request_ = std::move(request);
}

void Filesystem::RequestCommit() {
  std::lock_guard lock(commit_request_mu_);
  if (commit_request_) commit_request_();
}

}  // namespace hpfs
