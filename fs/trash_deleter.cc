// SPDX-License-Identifier: Apache-2.0
#include "fs/trash_deleter.h"

#include <utility>

#include <spdlog/spdlog.h>

#include "core/format.h"
#include "fs/filesystem.h"

namespace hpfs {

TrashDeleter::TrashDeleter(int trash_fd) : trash_fd_(trash_fd) {}

TrashDeleter::~TrashDeleter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TrashDeleter::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { Run(); });
}

void TrashDeleter::Enqueue(std::string name, std::shared_ptr<hpfile::HPFile> file,
                           std::shared_ptr<const Inode> inode) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(Item{std::move(name), std::move(inode), std::move(file)});
    ++queued_;
  }
  work_cv_.notify_one();
}

void TrashDeleter::EnqueueHeadPunch(std::shared_ptr<hpfile::HPFile> file, std::shared_ptr<const Inode> inode) {
  EnqueueFileItem(Item::Kind::kHeadPunch, std::move(file), std::move(inode));
}

void TrashDeleter::EnqueuePrunedDeletion(std::shared_ptr<hpfile::HPFile> file, std::shared_ptr<const Inode> inode) {
  EnqueueFileItem(Item::Kind::kPruned, std::move(file), std::move(inode));
}

void TrashDeleter::EnqueueFileItem(Item::Kind kind, std::shared_ptr<hpfile::HPFile> file,
                                   std::shared_ptr<const Inode> inode) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(Item{.inode = std::move(inode), .file = std::move(file), .kind = kind});
    ++queued_;
  }
  work_cv_.notify_one();
}

void TrashDeleter::EnqueuePrunedDeletion(std::weak_ptr<const Inode> inode) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(Item{.kind = Item::Kind::kPruned, .weak_inode = std::move(inode)});
    ++queued_;
  }
  work_cv_.notify_one();
}

void TrashDeleter::SetOnPrunedDeleted(std::function<void(const Inode&)> deleted) {
  on_pruned_deleted_ = std::move(deleted);
}

void TrashDeleter::SetTakeOver(std::function<bool(const std::string& name)> take) { take_over_ = std::move(take); }

void TrashDeleter::DeletePrunedNow(hpfile::HPFile& file) {
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
    }
    auto left = file.DeletePrunedSegments(kPrunedBatch);
    if (!left) {
      spdlog::warn("{}: deleting pruned segments: {} (retried at the next prune or open)", file.dir(),
                   left.error().message());
      return;
    }
    if (*left == 0) return;
  }
}

void TrashDeleter::Wait() {
  std::unique_lock lock(mu_);
  const uint64_t target = queued_;
  if (!thread_.joinable()) {
    while (done_ < target && DeleteOne(lock)) {
    }
  }
  // Another thread may still be finishing an item queued before the call.
  done_cv_.wait(lock, [&] { return done_ >= target; });
}

size_t TrashDeleter::Pending() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(queued_ - done_);
}

void TrashDeleter::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    // Stopping finishes the queue first: a clean unmount leaves no trash.
    if (!DeleteOne(lock)) return;
  }
}

bool TrashDeleter::DeleteOne(std::unique_lock<std::mutex>& lock) {
  if (queue_.empty()) return false;
  Item item = std::move(queue_.front());
  queue_.pop_front();
  lock.unlock();
  Delete(item);
  lock.lock();
  ++done_;
  done_cv_.notify_all();
  return true;
}

void TrashDeleter::Delete(Item& item) {
  if (item.kind == Item::Kind::kHeadPunch) {
    if (auto r = item.file->PunchBelowHead(); !r) {
      spdlog::warn("{}: releasing the space below the head: {}", item.file->dir(), r.error().message());
    }
  }
  if (item.kind == Item::Kind::kPruned && !item.file) {
    if (auto inode = item.weak_inode.lock()) {
      item.file = inode->File();
      item.inode = std::move(inode);
    }
  }
  if (item.kind != Item::Kind::kTrashEntry && item.file) {
    DeletePrunedNow(*item.file);
    if (item.inode && on_pruned_deleted_) on_pruned_deleted_(*item.inode);
  }
  // The HPFile may write its meta on close; it must do so while the inode's
  // descriptor, through which it names its directory, is still open.
  item.file.reset();
  item.inode.reset();
  if (item.kind != Item::Kind::kTrashEntry) return;
  if (take_over_ && take_over_(item.name)) return;
  if (auto r = hpfile::RemoveTreeAt(trash_fd_, item.name); !r) {
    spdlog::warn("cannot delete {}/{}: {} (retried at the next mount)", hpfile::format::kTrashName, item.name,
                 r.error().message());
    return;
  }
  spdlog::debug("deleted {}/{}", hpfile::format::kTrashName, item.name);
}

}  // namespace hpfs
