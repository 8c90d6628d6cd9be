// SPDX-License-Identifier: Apache-2.0
// Filesystem: retention enforcement, on the files the kernel knows and by a
// bounded walk over the rest of the store, and the invalidation of what it
// dropped.
#include "fs/filesystem.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <functional>

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

void Filesystem::VisitStoredFile(const std::string& rel, std::string_view walk,
                                 const std::function<bool(const hpfile::Meta&)>& wanted,
                                 const std::function<void(const std::shared_ptr<Inode>&)>& visit) {
  // Every step may meet a file removed or renamed since the walk listed it:
  // that is logged at debug, anything else at warn, and the file waits for
  // the next round.
  auto skip = [&rel, walk](std::string_view what, const std::error_code& error) {
    const auto level = hpfile::IsErrno(error, ENOENT) ? spdlog::level::debug : spdlog::level::warn;
    spdlog::log(level, "{} walk: '{}': cannot {}: {}", walk, rel, what, error.message());
  };
  const size_t slash = rel.rfind('/');
  const std::string parent_rel = slash == std::string::npos ? "" : rel.substr(0, slash);
  const std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
  auto parent_fd = walk_.OpenDir(parent_rel);
  if (!parent_fd) return skip("open its directory", parent_fd.error());
  auto st = StatAt(parent_fd->get(), name);
  if (!st) return skip("stat", st.error());
  // Files the kernel knows were visited at the start of the pass, unless
  // evicted (fs/descriptor_cache.h): those are visited here like the rest.
  if (auto known = inodes_.FindByBacking(st->st_dev, st->st_ino)) {
    std::lock_guard lock(known->mu);
    if (!known->evicted) return;
  }
  // Most files need nothing: a look at the meta spares opening them.
  auto meta_text = [&]() -> Result<std::string> {
    auto dir_fd = OpenAt(parent_fd->get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!dir_fd) return std::unexpected(dir_fd.error());
    return hpfile::ReadMetaText(hpfile::PosixIo::Default(), ProcFdPath(dir_fd->get()));
  }();
  if (!meta_text) return skip("read its meta", meta_text.error());
  auto meta = hpfile::ParseMeta(*meta_text);
  if (!meta) {
    // hpfsctl check says more; opening the file would find it damaged.
    spdlog::warn("{} walk: '{}': its meta does not parse: {}", walk, rel, meta.error());
    return;
  }
  if (!wanted(*meta)) return;

  // Loaded as a lookup would, so that a lookup meanwhile shares this HPFile
  // instead of opening the directory a second time.
  auto inode = LoadAt(parent_fd->get(), parent_rel.empty(), name);
  if (!inode) return skip("open", inode.error());
  visit(*inode);
  Forget((*inode)->id, 1);
}

void Filesystem::RetainStoredFile(const std::string& rel, int64_t now, RetentionPass& pass) {
  VisitStoredFile(
      rel, "retention", [](const hpfile::Meta& meta) { return !hpfile::RetentionPolicy::FromMeta(meta).empty(); },
      [&](const std::shared_ptr<Inode>& inode) { RetainFile(inode, now, pass); });
}

void Filesystem::RetainFile(const std::shared_ptr<Inode>& inode, int64_t now, RetentionPass& pass) {
  // A known file evicted since its lookup is opened again here.
  auto opened = FileOf(*inode);
  auto file = opened ? *opened : nullptr;
  if (!file || file->Damage()) return;
  ++pass.files_checked;
  if (auto tiered = inode->Tiered()) {
    RetainTiered(inode, *tiered, now, pass);
  } else if (file->ApplyRetention(now).pruned()) {
    ++pass.files_pruned;
  }
  // This thread is the background's: the segment files the prune dropped go
  // now, and the file may close right after.
  deleter_.DeletePrunedNow(*file);
  ChangedWithoutHandle(*inode);
}

void Filesystem::RetainTiered(const std::shared_ptr<Inode>& inode, hpfile::TieredFile& tiered, int64_t now,
                              RetentionPass& pass) {
  // The total limit counts the remote segments, which only the TieredFile
  // knows; it deletes the objects it drops here, on the retention thread.
  auto segments = [&tiered] {
    const hpfile::TierStats stats = tiered.Stats();
    return stats.local_segments + stats.remote_segments;
  };
  const uint64_t old_head = tiered.Head();
  const uint64_t segments_before = segments();
  auto applied = tiered.ApplyRetention(now);
  const uint64_t segments_after = segments();
  hpfile::RetentionResult result{.old_head = old_head,
                                 .new_head = tiered.Head(),
                                 .segments = segments_before > segments_after ? segments_before - segments_after : 0};
  if (!applied) {
    result.error = std::error_code(applied.error().err, std::generic_category());
    spdlog::warn("retention: '{}': {}", DisplayName(*inode), applied.error().message);
  }
  if (result.pruned()) {
    ++pass.files_pruned;
    OnRetention(inode, result);
  }
}

RetentionPass Filesystem::EnforceRetention(int64_t now, size_t max_walk) {
  RetentionPass pass;
  // Known files every time: they cost no open, and they are the ones in use.
  for (const auto& inode : inodes_.Snapshot()) {
    if (inode->kind != Kind::kFile) continue;
    auto file = inode->File();
    if (!file || file->Damage()) continue;
    if (hpfile::RetentionPolicy::FromMeta(file->GetMeta()).empty()) continue;
    RetainFile(inode, now, pass);
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

void Filesystem::TierFile(const std::shared_ptr<Inode>& inode, int64_t now, TierPass& pass) {
  // A known file evicted since its lookup is opened again here.
  auto opened = FileOf(*inode);
  auto file = opened ? *opened : nullptr;
  auto tiered = inode->Tiered();
  if (!file || !tiered) return;
  const auto clock = std::chrono::steady_clock::now();
  if (!tiering_->Due(*file, clock)) return;
  ++pass.files_checked;
  bool failed = false;
  if (const hpfile::RetentionPolicy local = tiering_->LocalPolicy(file->GetMeta()); !local.empty()) {
    auto offloaded = tiered->OffloadDue(local, now);
    if (!offloaded) {
      failed = true;
      spdlog::warn("tiered storage: '{}': offload: {}", DisplayName(*inode), offloaded.error().message);
    } else if (*offloaded > 0) {
      pass.segments_offloaded += *offloaded;
      spdlog::debug("tiered storage: '{}': offloaded {} segments", DisplayName(*inode), *offloaded);
    }
  }
  if (tiered->Stats().deleting > 0) {
    auto left = tiered->DeleteDroppedObjects();
    if (!left || *left > 0) {
      failed = true;
      spdlog::warn("tiered storage: '{}': deleting dropped objects: {}", DisplayName(*inode),
                   left ? std::to_string(*left) + " not deleted yet" : left.error().message);
    }
    pass.objects_pending += left ? *left : tiered->Stats().deleting;
  }
  if (failed) {
    tiering_->Failed(*file, clock);
  } else {
    tiering_->Succeeded(*file);
  }
}

TierPass Filesystem::RunTierPass(int64_t now, size_t max_walk) {
  TierPass pass;
  if (!tiering_) return pass;
  for (const auto& inode : inodes_.Snapshot()) {
    if (inode->kind == Kind::kFile) TierFile(inode, now, pass);
  }
  // Stored files the kernel does not know: those tiering has touched (they
  // have an id) or whose local retention lets segments go.
  const StoreWalk::Step step = tier_walk_.Walk(max_walk, [&](const std::string& rel) {
    VisitStoredFile(
        rel, "tiering",
        [this](const hpfile::Meta& meta) { return meta.file_id || !tiering_->LocalPolicy(meta).empty(); },
        [&](const std::shared_ptr<Inode>& inode) { TierFile(inode, now, pass); });
  });
  pass.entries_walked = step.entries_walked;
  pass.round_complete = step.round_complete;
  pass.unlinked_pending = tiering_->DeleteUnlinked(trash_fd_.get(), std::chrono::steady_clock::now());
  return pass;
}

Result<void> Filesystem::StartTiering(std::chrono::milliseconds interval, size_t max_walk) {
  if (!tiering_) return {};
  if (auto started = tiering_->Start(); !started) {
    spdlog::error("{}", started.error());
    return hpfile::Errno(EIO);
  }
  tier_worker_.Start(
      interval, [this, max_walk] { RunTierPass(static_cast<int64_t>(std::time(nullptr)), max_walk); }, [] {});
  return {};
}

void Filesystem::StopTiering() { tier_worker_.Stop(); }

}  // namespace hpfs
