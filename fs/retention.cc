// SPDX-License-Identifier: Apache-2.0
// Filesystem: retention enforcement, on the files the kernel knows and by a
// bounded walk over the rest of the store, and the invalidation of what it
// dropped.
#include "fs/filesystem.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>

#include <spdlog/spdlog.h>

#include "core/meta.h"
#include "fs/backing_dir.h"

namespace hpfs {
void Filesystem::OnRetention(const std::weak_ptr<Inode>& weak, const hpfile::RetentionResult& result) {
  auto inode = weak.lock();
  const std::string name = inode ? DisplayName(*inode) : std::string("a closed file");
  if (result.pruned()) {
    spdlog::info("retention: '{}': dropped {} bytes ({} segments), head now {}", name, result.bytes_dropped(),
                 result.segments, result.new_head);
  }
  if (result.error) {
    spdlog::warn("retention: '{}': cannot drop a segment: {}", name, result.error.message());
  }
  if (result.pruned()) {
    retention_.Post(weak, result);
    // A roll inside a write (an open handle's): the deleter takes the files.
    // The retention walk deletes them itself, on its own thread.
    bool open = false;
    if (inode) {
      std::lock_guard lock(inode->mu);
      open = inode->open_handles > 0;
    }
    if (open) deleter_.EnqueuePrunedDeletion(weak);
  }
}

void Filesystem::DrainRetentionEvents() {
  const auto events = retention_.TakeEvents();
  if (events.empty()) return;
  std::function<void(InodeId, uint64_t, uint64_t)> invalidate;
  {
    std::lock_guard lock(invalidator_mu_);
    invalidate = invalidate_;
  }
  if (!invalidate) return;
  for (const auto& [weak, result] : events) {
    // Gone: its last lookup went, so the kernel caches nothing of it.
    auto inode = weak.lock();
    if (inode && inode->id != 0) invalidate(inode->id, result.old_head, result.bytes_dropped());
  }
}

void Filesystem::RetainStoredFile(const std::string& rel, int64_t now, RetentionPass& pass) {
  // Every step may meet a file removed or renamed since the walk listed it:
  // that is logged at debug, anything else at warn, and the file waits for
  // the next round.
  auto skip = [&rel](std::string_view what, const std::error_code& error) {
    const auto level = hpfile::IsErrno(error, ENOENT) ? spdlog::level::debug : spdlog::level::warn;
    spdlog::log(level, "retention walk: '{}': cannot {}: {}", rel, what, error.message());
  };
  const size_t slash = rel.rfind('/');
  const std::string parent_rel = slash == std::string::npos ? "" : rel.substr(0, slash);
  const std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
  auto parent_fd = walk_.OpenDir(parent_rel);
  if (!parent_fd) return skip("open its directory", parent_fd.error());
  auto st = StatAt(parent_fd->get(), name);
  if (!st) return skip("stat", st.error());
  // Files the kernel knows were enforced at the start of the pass, unless
  // evicted (fs/descriptor_cache.h): those are visited here like the rest.
  if (auto known = inodes_.FindByBacking(st->st_dev, st->st_ino)) {
    std::lock_guard lock(known->mu);
    if (!known->evicted) return;
  }
  // Most files have no limit: a look at the meta spares opening them.
  auto meta_text = [&]() -> Result<std::string> {
    auto dir_fd = OpenAt(parent_fd->get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!dir_fd) return std::unexpected(dir_fd.error());
    return hpfile::ReadMetaText(hpfile::PosixIo::Default(), ProcFdPath(dir_fd->get()));
  }();
  if (!meta_text) return skip("read its meta", meta_text.error());
  auto meta = hpfile::ParseMeta(*meta_text);
  if (!meta) {
    // hpfsctl check says more; opening the file would find it damaged.
    spdlog::warn("retention walk: '{}': its meta does not parse: {}", rel, meta.error());
    return;
  }
  if (hpfile::RetentionPolicy::FromMeta(*meta).empty()) return;

  // Loaded as a lookup would, so that a lookup meanwhile shares this HPFile
  // instead of opening the directory a second time.
  auto inode = LoadAt(parent_fd->get(), parent_rel.empty(), name);
  if (!inode) return skip("open", inode.error());
  // A known file evicted since its lookup is opened again here.
  auto opened = FileOf(**inode);
  if (auto file = opened ? *opened : nullptr; file && !file->Damage()) {
    ++pass.files_checked;
    if (file->ApplyRetention(now).pruned()) ++pass.files_pruned;
    // This thread is the background's: the file may close right after.
    deleter_.DeletePrunedNow(*file);
    ChangedWithoutHandle(**inode);
  }
  Forget((*inode)->id, 1);
}

RetentionPass Filesystem::EnforceRetention(int64_t now, size_t max_walk) {
  RetentionPass pass;
  // Known files every time: they cost no open, and they are the ones in use.
  for (const auto& inode : inodes_.Snapshot()) {
    if (inode->kind != Kind::kFile) continue;
    auto file = inode->File();
    if (!file || file->Damage()) continue;
    if (hpfile::RetentionPolicy::FromMeta(file->GetMeta()).empty()) continue;
    ++pass.files_checked;
    if (file->ApplyRetention(now).pruned()) ++pass.files_pruned;
    deleter_.DeletePrunedNow(*file);
  }
  const StoreWalk::Step step =
      walk_.Walk(max_walk, [&](const std::string& rel) { RetainStoredFile(rel, now, pass); });
  pass.entries_walked = step.entries_walked;
  pass.round_complete = step.round_complete;
  DrainRetentionEvents();
  return pass;
}

void Filesystem::StartRetention(std::chrono::milliseconds interval, size_t max_walk) {
  retention_.Start(
      interval, [this, max_walk] { EnforceRetention(static_cast<int64_t>(std::time(nullptr)), max_walk); },
      [this] { DrainRetentionEvents(); });
}

void Filesystem::StopRetention() { retention_.Stop(); }

}  // namespace hpfs
